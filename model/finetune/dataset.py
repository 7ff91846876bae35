"""Which labeled clips a run trains and validates on: a folder ``train/<label>/*.mp4`` + ``val/<label>/*.mp4``
(the layout of torchvision's folder datasets), or a CSV of ``path,label[,start_s,end_s]`` rows.

A CSV's paths are relative to the CSV's folder; ``start_s``/``end_s`` cut a long video. Without a
validation CSV, a share of each label's rows (chosen by a hash of the path, so the same rows on
every run and every seed) is held out.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

from model.errors import ConfigError

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v")


@dataclass(frozen=True)
class Clip:
    """One labeled video, or the ``[start_s, end_s)`` part of one."""

    path: Path
    label: str
    start_s: float | None = None
    end_s: float | None = None


@dataclass(frozen=True)
class Splits:
    labels: tuple[str, ...]  # class id = index, sorted by name
    train: tuple[Clip, ...]
    val: tuple[Clip, ...]


def discover(data: Path, val_csv: Path | None = None, val_share: float = 0.1) -> Splits:
    """The clips of ``data`` (a folder or a CSV), checked: every label has training clips."""
    if data.is_dir():
        if val_csv is not None:
            raise ConfigError("--val is for a CSV --data; a folder has its own val/ split")
        train, val = _folder_split(data, "train"), _folder_split(data, "val")
    elif data.is_file() and data.suffix.lower() == ".csv":
        rows = _read_csv(data)
        if val_csv is not None:
            train, val = rows, _read_csv(val_csv)
        else:
            train = [c for c in rows if not _held_out(c, val_share)]
            val = [c for c in rows if _held_out(c, val_share)]
    else:
        raise ConfigError(f"--data {data}: not a folder with train/<label>/ videos or a .csv of path,label rows")
    labels = tuple(sorted({c.label for c in train}))
    if len(labels) < 2:
        raise ConfigError(f"--data {data}: found {len(labels)} label(s) with training videos; a classifier needs "
                          "at least 2 (train/<label>/*.mp4)")
    unknown = sorted({c.label for c in val} - set(labels))
    if unknown:
        raise ConfigError(f"--data {data}: validation labels {', '.join(unknown)} have no training videos")
    if not val:
        raise ConfigError(f"--data {data}: no validation videos; add val/<label>/*.mp4 (or --val for a CSV)")
    return Splits(labels, tuple(train), tuple(val))


def _folder_split(data: Path, split: str) -> list[Clip]:
    root = data / split
    if not root.is_dir():
        raise ConfigError(f"--data {data}: no {split}/ folder; expected {split}/<label>/*.mp4")
    clips = [Clip(path, label_dir.name) for label_dir in sorted(p for p in root.iterdir() if p.is_dir())
             for path in sorted(label_dir.iterdir()) if path.suffix.lower() in VIDEO_SUFFIXES]
    if not clips and split == "train":
        raise ConfigError(f"--data {data}: {root} holds no videos ({', '.join(VIDEO_SUFFIXES)}) in label folders")
    return clips


def _read_csv(path: Path) -> list[Clip]:
    if not path.is_file():
        raise ConfigError(f"{path}: no such CSV file")
    clips = []
    with path.open(newline="", encoding="utf-8") as f:
        for number, row in enumerate(csv.reader(f), start=1):
            if not row or row[0].startswith("#") or (number == 1 and row[:2] == ["path", "label"]):
                continue
            clips.append(_row(path, number, [cell.strip() for cell in row]))
    if not clips:
        raise ConfigError(f"{path}: no rows; expected path,label[,start_s,end_s]")
    return clips


def _row(csv_path: Path, number: int, row: list[str]) -> Clip:
    where = f"{csv_path}:{number}"
    if len(row) not in (2, 4) or not row[0] or not row[1]:
        raise ConfigError(f"{where}: expected path,label or path,label,start_s,end_s, got {len(row)} fields")
    video = (csv_path.parent / row[0]).resolve()
    if not video.is_file():
        raise ConfigError(f"{where}: video {row[0]} not found (paths are relative to the CSV's folder)")
    if len(row) == 2:
        return Clip(video, row[1])
    try:
        start, end = float(row[2]), float(row[3])
    except ValueError:
        raise ConfigError(f"{where}: start_s and end_s must be seconds, got {row[2]!r}, {row[3]!r}") from None
    if not 0.0 <= start < end:
        raise ConfigError(f"{where}: need 0 <= start_s < end_s, got {start}, {end}")
    return Clip(video, row[1], start, end)


def _held_out(clip: Clip, share: float) -> bool:
    key = f"{clip.path.name}|{clip.label}|{clip.start_s}|{clip.end_s}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") / 2**64 < share


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def split_hash(clips: tuple[Clip, ...], root: Path, file_hashes: dict[Path, str]) -> str:
    """One sha256 over every clip's content hash, label and range (relative names, so the same data in
    another folder hashes alike)."""
    digest = hashlib.sha256()
    for clip in sorted(clips, key=lambda c: (str(c.path), c.start_s or 0.0)):
        name = clip.path.relative_to(root) if clip.path.is_relative_to(root) else clip.path.name
        digest.update(f"{name}|{clip.label}|{clip.start_s}|{clip.end_s}|{file_hashes[clip.path]}\n".encode())
    return digest.hexdigest()

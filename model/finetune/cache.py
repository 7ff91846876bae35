"""Decode once: every clip's windows, sampled as the streamer samples them, kept as uint8 on disk.

A split's cache is a folder named by a hash of everything that decides its content (the clips'
content hashes and labels, the preprocessing, the sampling, windows per clip), so a second run, a
resumed run or another seed reads it back instead of decoding again. ``windows.u8`` holds
``(W, T, 3, h, w)`` uint8 RGB frames (raw, memory-mapped when read; the shape is in ``meta.json``),
``labels.npy`` and ``clips.npy`` the label and clip index of each window.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from model.config import Sampling
from model.errors import ConfigError
from model.finetune.dataset import Clip
from model.preprocess import PreprocessConfig
from model.sampling import file_windows

log = logging.getLogger(__name__)

FORMAT = "finetune-cache/1"


@dataclass(frozen=True)
class WindowSet:
    """One split's windows: ``frames[i]`` uint8 ``(T, 3, h, w)`` with label ``labels[i]`` from clip ``clips[i]``."""

    frames: np.ndarray
    labels: np.ndarray
    clips: np.ndarray
    skipped: tuple[str, ...]  # clips shorter than one window

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class CacheSpec:
    """What a split's windows depend on, besides the clips."""

    pre: PreprocessConfig
    sampling: Sampling
    per_clip: int

    def key(self, split_hash: str, labels: tuple[str, ...]) -> str:
        raw = json.dumps({"format": FORMAT, "data": split_hash, "labels": labels, "pre": self.pre.to_hf_dict(),
                          "sampling": self.sampling.to_hf_dict(), "per_clip": self.per_clip}, sort_keys=True)
        return hashlib.sha256(raw.encode()).hexdigest()[:24]


def clip_windows(clip: Clip, spec: CacheSpec) -> np.ndarray:
    """The windows of one clip, uint8 ``(k, T, 3, h, w)`` (k = 0 when the clip is shorter than a window)."""
    import cv2
    import torch

    from model.finetune.decode import decode
    from model.preprocess import Preprocessor

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    frames, ts = decode(clip, Preprocessor(spec.pre, input_order="BGR"))
    s = spec.sampling
    windows = file_windows(ts, s.num_frames, spec.per_clip, span_s=s.span_s, stride=s.stride)
    if not windows:
        return np.zeros((0, s.num_frames, *frames.shape[1:]), np.uint8)
    return frames[torch.tensor(windows)].numpy()  # (k, T, 3, h, w)


def _one(job: tuple[Clip, CacheSpec]) -> np.ndarray:
    return clip_windows(*job)


def load_or_build(clips: tuple[Clip, ...], labels: tuple[str, ...], spec: CacheSpec, folder: Path,
                  workers: int, desc: str) -> WindowSet:
    """The split's windows from ``folder`` if complete, else decoded now (``workers`` processes) and stored."""
    if not (folder / "meta.json").is_file():
        _build(clips, labels, spec, folder, workers, desc)
    else:
        log.info("%s: reading decoded windows from %s", desc, folder)
    meta = json.loads((folder / "meta.json").read_text())
    frames = np.memmap(folder / "windows.u8", dtype=np.uint8, mode="r", shape=tuple(meta["shape"]))
    return WindowSet(frames, np.load(folder / "labels.npy"), np.load(folder / "clips.npy"), tuple(meta["skipped"]))


def _build(clips: tuple[Clip, ...], labels: tuple[str, ...], spec: CacheSpec, folder: Path, workers: int,
           desc: str) -> None:
    """Decode every clip, append its windows to ``windows.u8``, then move the finished folder into place."""
    from tqdm import tqdm

    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    index = {name: i for i, name in enumerate(labels)}
    shape, got_labels, got_clips, skipped = None, [], [], []
    jobs = [(clip, spec) for clip in clips]
    pool = get_context("spawn").Pool(workers) if workers > 1 else None
    try:
        results = pool.imap(_one, jobs, chunksize=4) if pool else map(_one, jobs)
        with (tmp / "windows.u8").open("wb") as out:
            for i, windows in enumerate(tqdm(results, total=len(jobs), desc=desc, unit="clip", mininterval=2.0)):
                if len(windows) == 0:
                    skipped.append(str(clips[i].path))
                    continue
                shape = windows.shape[1:]
                out.write(np.ascontiguousarray(windows).tobytes())
                got_labels += [index[clips[i].label]] * len(windows)
                got_clips += [i] * len(windows)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    if shape is None:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ConfigError(f"{desc}: none of the {len(clips)} videos is as long as one window "
                          f"({spec.sampling.describe()}); use longer clips or a shorter --span-s")
    np.save(tmp / "labels.npy", np.asarray(got_labels, np.int64))
    np.save(tmp / "clips.npy", np.asarray(got_clips, np.int64))
    meta = {"format": FORMAT, "shape": [len(got_labels), *shape], "skipped": skipped}
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)

"""One fine-tuning run from validated settings to a checkpoint folder (the CLI, tests and benchmarks call it)."""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from model.errors import ConfigError
from model.finetune import bases, cache, dataset, report
from model.finetune.augment import Symmetries, read_symmetries
from model.finetune.loop import History, Trainer, remove_state
from model.finetune.settings import FinetuneSettings

log = logging.getLogger(__name__)

SYMMETRIES_FILE = "symmetries.json"
LABELS_FILE = "labels.txt"


@dataclass(frozen=True)
class Result:
    out: Path
    history: History
    labels: tuple[str, ...]


def default_cache_root() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "timesformer-stream" / "finetune"


def finetune(s: FinetuneSettings, argv: list[str]) -> Result:
    """Train ``s.base`` on ``s.data`` and save the checkpoint, its preprocessing and training.json to ``s.out``."""
    started = time.monotonic()
    if s.threads:
        torch.set_num_threads(s.threads)
    splits = dataset.discover(s.data, s.val, s.val_share)
    labels = _label_order(s.data, splits.labels)
    torch.manual_seed(s.seed)
    begin = bases.start(s.base, labels, s.sampling, s.freeze, s.prior, s.domain)
    model = begin.model
    symmetries = _symmetries(s, labels, begin.square)
    if s.reverse_pairs and "reverse" not in symmetries.perms:
        raise ConfigError("--reverse-pairs: the symmetries declare no reverse map (how labels change when a clip "
                          "plays backwards); add one to symmetries.json or drop --reverse-pairs")
    model.config = dataclasses.replace(model.config, label_symmetries=symmetries.spatial)
    log.info("start: %s; window %s; %d of %d weights trained", begin.description, model.config.sampling.describe(),
             int(sum(int(m.sum()) for m in begin.masks.values())), sum(p.numel() for p in model.parameters()))
    hashes = {clip.path: dataset.file_sha256(clip.path) for clip in (*splits.train, *splits.val)}
    spec = cache.CacheSpec(begin.preprocess, model.config.sampling, s.windows_per_video)
    sets, data = {}, {}
    for name, clips in (("train", splits.train), ("val", splits.val)):
        digest = dataset.split_hash(clips, s.data if s.data.is_dir() else s.data.parent, hashes)
        folder = (s.cache or default_cache_root()) / spec.key(digest, labels)
        sets[name] = cache.load_or_build(clips, labels, spec, folder, s.workers, f"decode {name}")
        data[name] = {"videos": len(clips), "windows": len(sets[name]), "skipped_short": len(sets[name].skipped),
                      "sha256": digest}
        if sets[name].skipped:
            log.warning("%s: %d of %d videos are shorter than one window (%s) and are left out, e.g. %s", name,
                        len(sets[name].skipped), len(clips), spec.sampling.describe(), sets[name].skipped[0])
    data["symmetries"] = symmetries.maps
    from model.preprocess import Preprocessor

    normalize = Preprocessor(begin.preprocess, device=s.device).normalize
    lr = s.lr or (1e-3 if begin.scratch else 1e-4)
    trainer = Trainer(model, begin.masks, normalize, sets["train"], sets["val"], symmetries, s, lr)
    if s.resume:
        trainer.restore()
    history = trainer.run(started)
    return _save(s, argv, model, begin, history, labels, data, lr, started)


def _save(s: FinetuneSettings, argv, model, begin: bases.Start, history: History, labels, data, lr,
          started: float) -> Result:
    from model.checkpoint import save_pretrained

    model.eval().to("cpu")
    save_pretrained(model, s.out, preprocess=begin.preprocess, license=s.license or begin.license)
    settings = {**s.fingerprint(), "lr": lr, "sampling": model.config.sampling.to_hf_dict(),
                "time_budget_min": s.time_budget_min, "resumed": s.resume}
    path = report.write(s.out, argv=argv, settings=settings, data=data, history=history, labels=labels,
                        minutes=(time.monotonic() - started) / 60.0, base=begin.description)
    if history.stopped_early is None:
        remove_state(s.out)
    log.info("saved %s (%s)", s.out, path.name)
    return Result(s.out, history, labels)


def _label_order(data: Path, found: tuple[str, ...]) -> tuple[str, ...]:
    """The class order of DATA/labels.txt (one label a line) when present, else sorted names."""
    listing = data / LABELS_FILE if data.is_dir() else None
    if listing is None or not listing.is_file():
        return found
    order = tuple(line.strip() for line in listing.read_text(encoding="utf-8").splitlines() if line.strip())
    if sorted(order) != sorted(found) or len(set(order)) != len(order):
        raise ConfigError(f"{listing}: must list each training label once ({', '.join(found)})")
    return order


def _symmetries(s: FinetuneSettings, labels: tuple[str, ...], square: bool) -> Symmetries:
    path = s.symmetries
    if path is None and s.data.is_dir() and (s.data / SYMMETRIES_FILE).is_file():
        path = s.data / SYMMETRIES_FILE
    return read_symmetries(path, labels, square)

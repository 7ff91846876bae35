"""Training throughput of ``python -m model.finetune`` on CPU: clips per second for new networks of the tiny
and base geometries, fp32 against bf16 autocast.

Each row runs the tool's own training loop (``model.finetune.loop.Trainer``: augmentation, normalization,
forward, backward, AdamW step) over in-memory uint8 windows at the geometry's input size (8 frames), for
``--steps`` steps per timed run after one untimed run; fp32 and bf16 runs alternate so that load on a
shared machine hits both alike. Clips/s is the median over ``--repeats`` runs.

    python -m benchmarks.bench_finetune [--sizes tiny base] [--threads 2] [--repeats 3] [--steps N] [--no-write]

Prints a table and replaces its own section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.report import machine, write_section
from model.config import Sampling
from model.finetune import bases
from model.finetune.augment import Symmetries
from model.finetune.cache import WindowSet
from model.finetune.loop import Trainer
from model.finetune.settings import FinetuneSettings, Freeze
from model.preprocess import Preprocessor

SECTION = "bench_finetune"
BATCH = {"tiny": 32, "small": 32, "base": 4}
STEPS = {"tiny": 20, "small": 10, "base": 3}
LABELS = tuple(f"class_{i}" for i in range(5))


def trainer(size: str, precision: str, threads: int, steps: int, folder: Path) -> Trainer:
    torch.manual_seed(0)
    begin = bases.start(f"scratch:{size}", LABELS, Sampling(8, span_s=2.0), Freeze(), None, None)
    side = begin.model.config.image_size
    count = BATCH[size] * steps
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(count, 8, 3, side, side), dtype=np.uint8)
    windows = WindowSet(frames, rng.integers(0, len(LABELS), count), np.arange(count), ())
    settings = FinetuneSettings(data=folder, base=f"scratch:{size}", out=folder / "out", epochs=1000,
                                batch=BATCH[size], precision=precision, threads=threads)
    normalize = Preprocessor(begin.preprocess).normalize
    return Trainer(begin.model, begin.masks, normalize, windows, windows, Symmetries({}, {}), settings, 1e-4)


def clips_per_second(run: Trainer, epoch: int) -> float:
    tick = time.perf_counter()
    run._epoch(epoch)
    return len(run.train_set) / (time.perf_counter() - tick)


def measure(size: str, threads: int, repeats: int, steps: int | None, folder: Path) -> dict[str, float]:
    runs = {p: trainer(size, p, threads, steps or STEPS[size], folder) for p in ("fp32", "bf16")}
    for p, run in runs.items():
        clips_per_second(run, 0)  # untimed: first-touch allocations, oneDNN kernel choice
    rates: dict[str, list[float]] = {p: [] for p in runs}
    for r in range(repeats):
        for p, run in runs.items():
            rates[p].append(clips_per_second(run, r + 1))
    return {p: statistics.median(v) for p, v in rates.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_finetune", description=__doc__.splitlines()[0])
    p.add_argument("--sizes", nargs="+", default=["tiny", "base"], choices=sorted(BATCH))
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per row (median)")
    p.add_argument("--steps", type=int, help="steps per timed run (default: tiny 20, small 10, base 3)")
    p.add_argument("--no-write", action="store_true", help="print only")
    args = p.parse_args(argv)
    os.environ["TQDM_DISABLE"] = "1"  # the table is the output
    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            got = measure(size, args.threads, args.repeats, args.steps, Path(tmp))
            cfg = bases.SIZES[size]
            rows.append(f"| {size} ({cfg['image_size']} px, hidden {cfg['hidden_size']}, {cfg['num_hidden_layers']} "
                        f"blocks) | {BATCH[size]} | {got['fp32']:.2f} | {got['bf16']:.2f} | {got['bf16'] / got['fp32']:.2f} |")
            print(rows[-1], flush=True)
    body = ("## Fine-tuning throughput on CPU (`python -m benchmarks.bench_finetune`)\n\n"
            f"{machine()}; {args.threads} torch threads; training clips (8 frames) per second through the tool's "
            f"loop, median of {args.repeats} runs of {args.steps or 'the default'} steps, fp32 and bf16 autocast "
            "alternating.\n\n"
            "| geometry | batch | fp32 clips/s | bf16 clips/s | bf16 / fp32 |\n|---|---|---|---|---|\n" + "\n".join(rows))
    if not args.no_write:
        write_section(SECTION, body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

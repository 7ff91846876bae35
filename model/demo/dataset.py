"""Write the motion-demo's training data: a folder that ``python -m model.finetune`` reads.

    python -m model.demo.dataset --out demo-data --train 12000 --val 900 --seed 0 --workers 2

``train/<label>/NNNNN.mp4`` and ``val/<label>/NNNNN.mp4``: one action per short video, labels in
turn (so every class has the same count), drawn by :func:`model.demo.render.clips.render_clip` with
domain randomization (busy and photo-like backgrounds, lighting, many shape kinds and paints,
documented and wider motion ranges, blur, noise, JPEG and video compression). Also ``labels.txt``
(the class order), ``symmetries.json`` (how labels change under mirror, transpose and time
reversal: the augmentations fine-tuning may use) and ``dataset.json`` (what wrote it). Video ``i``
of a split depends only on ``(seed, split, i)``: any number of workers writes the same files.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from multiprocessing import get_context
from pathlib import Path

import cv2
import numpy as np

from model.demo.render.actions import CLASSES, HFLIP, RANDOMIZED, REVERSED, TRANSPOSE, VFLIP
from model.demo.render.clips import ClipPlan, render_clip

log = logging.getLogger(__name__)

SPLITS = {"train": 1, "val": 2}  # split -> its code in the seed
MJPG_SHARE = 0.15  # videos written as MJPG .avi at a random quality; the rest MPEG-4 .mp4


def symmetries() -> dict[str, dict[str, str]]:
    """``symmetries.json``: the label maps of the image symmetries and of time reversal."""
    return {"hflip": HFLIP, "vflip": VFLIP, "transpose": TRANSPOSE,
            "reverse": {k: v for k, v in REVERSED.items() if k != v}}


def write_clip(job: tuple[Path, int, int, int]) -> str:
    """Render and write video ``index`` of a split; returns its path relative to the dataset folder."""
    out, seed, code, index = job
    cv2.setNumThreads(1)
    rng = np.random.default_rng([seed, code, index])
    label = CLASSES[index % len(CLASSES)]
    frames, fps = render_clip(rng, label, ClipPlan(), RANDOMIZED)
    mjpg = rng.uniform() < MJPG_SHARE
    split = next(name for name, c in SPLITS.items() if c == code)
    path = out / split / label / f"{index:05d}{'.avi' if mjpg else '.mp4'}"
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*("MJPG" if mjpg else "mp4v")), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"cannot write {path}: OpenCV has no {'MJPG' if mjpg else 'mp4v'} encoder")
    try:
        if mjpg:
            writer.set(cv2.VIDEOWRITER_PROP_QUALITY, float(rng.uniform(30, 95)))
        for frame in frames:
            writer.write(frame)
    finally:
        writer.release()
    return str(path.relative_to(out))


def write_dataset(out: Path, counts: dict[str, int], seed: int, workers: int) -> dict:
    """Write every split's videos and the metadata files; returns ``dataset.json``'s content."""
    from tqdm import tqdm

    for split in counts:
        for label in CLASSES:
            (out / split / label).mkdir(parents=True, exist_ok=True)
    (out / "labels.txt").write_text("\n".join(CLASSES) + "\n")
    (out / "symmetries.json").write_text(json.dumps(symmetries(), indent=1) + "\n")
    jobs = [(out, seed, SPLITS[split], i) for split, n in counts.items() for i in range(n)]
    pool = get_context("spawn").Pool(workers) if workers > 1 else None
    try:
        done = pool.imap_unordered(write_clip, jobs, chunksize=8) if pool else map(write_clip, jobs)
        for _ in tqdm(done, total=len(jobs), desc="render", unit="video", mininterval=2.0):
            pass
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    meta = {"writer": "python -m model.demo.dataset", "seed": seed, "counts": counts, "classes": list(CLASSES),
            "plan": ClipPlan().__dict__, "ranges": RANDOMIZED.to_dict()}
    (out / "dataset.json").write_text(json.dumps(meta, indent=1) + "\n")
    return meta


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m model.demo.dataset", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="dataset folder to write")
    p.add_argument("--train", type=int, default=12000, help="training videos (default 12000)")
    p.add_argument("--val", type=int, default=900, help="validation videos (default 900)")
    p.add_argument("--seed", type=int, default=0, help="seed of every video (default 0)")
    p.add_argument("--workers", type=int, default=1, help="rendering processes (default 1)")
    args = p.parse_args(argv)
    if args.train < len(CLASSES) or args.val < len(CLASSES) or args.workers < 1:
        p.error(f"--train and --val need at least {len(CLASSES)} videos (one per class), --workers at least 1")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    meta = write_dataset(args.out, {"train": args.train, "val": args.val}, args.seed, args.workers)
    print(f"{args.out}: {meta['counts']['train']} training and {meta['counts']['val']} validation videos",
          file=sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

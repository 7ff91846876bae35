"""Render a labeled synthetic action video plus its JSON sidecar of per-frame ground truth.

    python -m model.demo.render --seed 1234 --seconds 60 --out demo.mp4
    # writes demo.mp4 and demo.json (per-frame labels, segments, fps, size, seed)
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from model.demo.render import PARAMS, Scene, write_video
from model.errors import RecognizerError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model.demo.render", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="video file to write (.mp4 or .avi)")
    parser.add_argument("--seed", type=int, default=0, help="scene seed (same seed, same video)")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the video in seconds")
    parser.add_argument("--fps", type=float, default=25.0, help="frame rate")
    parser.add_argument("--width", type=int, default=160, help="frame width in pixels")
    parser.add_argument("--height", type=int, default=120, help="frame height in pixels")
    parser.add_argument("--quality", type=int, default=95, help="encoder quality 0-100 (MJPG only)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for name in ("fps", "width", "height"):
        _, _, low, high = PARAMS[name]
        if not low <= getattr(args, name) <= high:
            parser.error(f"--{name} must be within {low}..{high}")
    if args.seconds <= 0:
        parser.error("--seconds must be positive")
    try:
        scene = Scene(args.seed, args.width, args.height, args.fps)
        truth = write_video(args.out, scene, int(round(args.seconds * args.fps)), args.quality)
    except RecognizerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    counts: dict[str, int] = {}
    for seg in truth["segments"]:
        counts[seg["label"]] = counts.get(seg["label"], 0) + 1
    print(f"{args.out}: {truth['num_frames']} frames, segments {counts}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

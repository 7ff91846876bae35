"""Render one labeled held-out video: ``python -m model.demo.heldout --renderer sdf --seed 3 --out v.mp4``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from model.demo.heldout import RENDERERS, write_heldout


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m model.demo.heldout", description=__doc__.splitlines()[0])
    p.add_argument("--renderer", choices=sorted(RENDERERS), required=True, help="which held-out renderer")
    p.add_argument("--out", type=Path, required=True, help="video to write (.mp4, or .avi for MJPG)")
    p.add_argument("--seed", type=int, default=0, help="scene seed")
    p.add_argument("--seconds", type=float, default=40.0, help="length in seconds")
    p.add_argument("--fps", type=float, default=25.0, help="frame rate (documented: 15-30)")
    p.add_argument("--width", type=int, default=320, help="frame width")
    p.add_argument("--height", type=int, default=240, help="frame height")
    args = p.parse_args(argv)
    if args.seconds <= 0 or not 1 <= args.fps <= 120 or min(args.width, args.height) < 32:
        p.error("--seconds must be positive, --fps within 1..120, --width and --height at least 32")
    codec = "MJPG" if args.out.suffix.lower() == ".avi" else "mp4v"
    truth = write_heldout(args.out, RENDERERS[args.renderer](args.seed, args.width, args.height), args.seed,
                          args.seconds, args.fps, codec)
    print(f"{args.out}: {truth['num_frames']} frames, {len(truth['segments'])} segments", file=sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

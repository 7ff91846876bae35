"""The demo model's window accuracy through the real pipeline, per renderer: its own training renderer's
documented look and the two held-out renderers it never trained on (model/demo/heldout).

Each renderer draws a fixed set of labeled videos (sizes 160x120 to 640x360, 15 to 30 fps, MPEG-4 and
MJPG); one ``run_stream.py`` run per renderer, precision and view setting plays them in file mode
(the default config's window), and every window whose frames lie in one action segment is scored.

    python -m benchmarks.demo_accuracy [--model motion-demo] [--precision fp32 int8] [--views single auto]
                                       [--renderers training sdf studio] [--no-write]

Prints the tables and replaces the ``demo_accuracy`` section of docs/DEMO_MODEL.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from streamer.sources.cvenv import prepare_opencv_environment

prepare_opencv_environment()  # before cv2 is imported
from benchmarks.report import machine, write_section  # noqa: E402
from model.demo.render.actions import CLASSES  # noqa: E402
from streamer.testing.scoring import Score, Truth, confusion_table, run_file_mode, score  # noqa: E402

DOC = Path(__file__).resolve().parents[1] / "docs" / "DEMO_MODEL.md"
SECTION = "demo_accuracy"
# (seed, width, height, fps, container): every renderer draws the same variety of files
VIDEOS = ((1, 320, 240, 25, ".mp4"), (2, 480, 270, 30, ".mp4"), (3, 160, 120, 15, ".mp4"),
          (4, 640, 360, 24, ".avi"), (5, 256, 256, 20, ".mp4"), (6, 400, 300, 30, ".mp4"))
SECONDS = 40.0
SEED_BASE = {"training": 70000, "sdf": 80000, "studio": 90000}  # far from any seed training draws


def render(renderer: str, folder: Path) -> dict[str, Path]:
    """The renderer's videos (and sidecars) in ``folder``, by stream id."""
    out = {}
    for seed, width, height, fps, suffix in VIDEOS:
        path = folder / f"{renderer}-{seed}{suffix}"
        seed = SEED_BASE[renderer] + seed
        if renderer == "training":
            from model.demo.render import Scene, write_video

            write_video(path, Scene(seed, width, height, fps), int(SECONDS * fps), quality=80)
        else:
            from model.demo.heldout import RENDERERS, write_heldout

            write_heldout(path, RENDERERS[renderer](seed, width, height), seed, SECONDS, fps,
                          "MJPG" if suffix == ".avi" else "mp4v", quality=80)
        out[path.stem] = path
    return out


def measure(videos: dict[str, Path], model: str, precision: str, views: str) -> tuple[Score, dict[str, Score]]:
    results = run_file_mode(videos, "--model", model, "--precision", precision, "--views", views, "--threads", "2")
    per_video = {sid: score(results[sid], Truth.read(path)) for sid, path in videos.items()}
    total = Score()
    for s in per_video.values():
        total = total.add(s)
    return total, per_video


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.demo_accuracy", description=__doc__.splitlines()[0])
    p.add_argument("--model", default="motion-demo", help="checkpoint to score (default: the built-in demo)")
    p.add_argument("--precision", nargs="+", default=["fp32", "int8"], help="precisions to run")
    p.add_argument("--views", nargs="+", default=["single"], help="model.views settings to run (single, auto)")
    p.add_argument("--renderers", nargs="+", default=["training", "sdf", "studio"], choices=sorted(SEED_BASE))
    p.add_argument("--no-write", action="store_true", help="print only; leave docs/DEMO_MODEL.md as it is")
    args = p.parse_args(argv)
    rows, tables = [], []
    with tempfile.TemporaryDirectory(prefix="demo-accuracy-") as tmp:
        for renderer in args.renderers:
            videos = render(renderer, Path(tmp))
            for precision in args.precision:
                for views in args.views:
                    total, per_video = measure(videos, args.model, precision, views)
                    each = ", ".join(f"{s.accuracy:.3f}" for s in per_video.values())
                    rows.append(f"| {renderer} | {precision} | {views} | {total.total} | **{total.accuracy:.3f}** | {each} |")
                    print(rows[-1], flush=True)
                    if precision == args.precision[0] and views == args.views[0]:
                        tables.append(f"**{renderer}** ({precision}, {views} view{'s' if views != 'single' else ''}):"
                                      f"\n\n{confusion_table(total, CLASSES)}")
    body = (f"Measured with `python -m benchmarks.demo_accuracy --model {args.model}` ({machine()}): "
            f"{len(VIDEOS)} videos of {SECONDS:g} s per renderer (160x120 to 640x360, 15-30 fps), windows inside "
            "one action segment.\n\n| renderer | precision | views | windows | accuracy | per video |\n"
            "|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n\n" + "\n\n".join(tables))
    print("\n" + "\n\n".join(tables))
    if not args.no_write:
        write_section(SECTION, body, DOC)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How well an ideal version of the demo's turn detector reads rotation direction, by the size of the
region it sums edge orientation over: the question behind the ``studio`` misses (docs/DEMO_MODEL.md).

The shipped detector (:mod:`model.demo.turn_prior`) samples colour gradients at the 3x3 inner corners
of a 4x4 grid on each 16-pixel patch of the 64-pixel input, sums their orientation (double angle) per
patch and takes the cross product of consecutive frames' sums. Here the same is computed exactly
(``atan2``, no GELU approximations, no int8) for other geometries: input size, region size (the patch),
grid and Gaussian width. For each rotation window of the renderers' videos (8 frames over 1.28 s, as
the demo samples; every frame in one ``rotate_cw`` or ``rotate_ccw`` segment), a geometry scores
right when the sign of the mean turn is the rotation's direction. ``--step-cost`` also times one
training step (batch 32, fp32) of the small network, of one with a wider token and of one at 128 px
(4x the tokens).

``--front-end`` measures the real front ends instead (their weights, GELU pairs, LayerNorms; fp32 and
int8) on the same windows: the sign of the cls token's mean turn after block 2 for the shipped
checkpoint, the recipe's ``motion-demo`` prior on a new ``scratch:small`` network and the
``motion-demo-regions`` prior (8-pixel regions, grey) on a new ``scratch:small-wide`` one, beside the
exact idea of both geometries.

    python -m benchmarks.demo_turn_reading [--renderers training sdf studio] [--step-cost] [--front-end]
                                           [--videos DIR] [--no-write]

Prints the table and replaces the ``demo_turn_reading`` (``demo_turn_front_end`` with ``--front-end``)
section of docs/DEMO_MODEL.md and of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from streamer.sources.cvenv import prepare_opencv_environment

prepare_opencv_environment()  # before cv2 is imported
import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.demo_accuracy import VIDEOS, render  # noqa: E402
from benchmarks.report import machine, write_section  # noqa: E402
from model.demo.circuits import corner_windows  # noqa: E402
from model.preprocess import PreprocessConfig, Preprocessor  # noqa: E402
from model.sampling import file_windows  # noqa: E402
from streamer.testing.processes import read_frames  # noqa: E402

DOC = Path(__file__).resolve().parents[1] / "docs" / "DEMO_MODEL.md"
SECTION = "demo_turn_reading"
FRAMES, SPAN_S, WINDOWS_PER_S = 8, 1.28, 1 / 0.32  # the demo's window; a window end every 0.32 s
ROTATIONS = ("rotate_cw", "rotate_ccw")


class Geometry:
    """Input ``size`` px, orientation summed over ``region`` x ``region`` px, gradients at the inner
    corners of a ``grid`` x ``grid`` cut of a region, Gaussian ``sigma`` in region widths."""

    def __init__(self, size: int, region: int, grid: int, sigma: float, shipped: bool = False,
                 grey: bool = False) -> None:
        self.size, self.region, self.grid, self.sigma, self.shipped = size, region, grid, sigma, shipped
        self.grey = grey  # gradients of the sum of the colour channels
        _, dx, dy = corner_windows(region, sigma, grid)
        self.dx, self.dy = dx.float(), dy.float()
        self.pre = Preprocessor(PreprocessConfig(shortest_edge=None, size=(size, size), crop_size=None))

    @property
    def name(self) -> str:
        points = (self.grid - 1) ** 2 * (self.size // self.region) ** 2
        tag = " (shipped)" if self.shipped else ""
        grey = ", grey" if self.grey else ""
        return f"{self.size} px, {self.region} px regions, {points} points{grey}{tag}"

    def turn(self, frames: list[np.ndarray]) -> float:
        """Mean over regions and frame pairs of the cross product of consecutive orientation sums."""
        x = torch.stack([self.pre(f) for f in frames])  # (T, 3, size, size)
        if self.grey:
            x = x.sum(dim=1, keepdim=True)  # (T, 1, size, size)
        r = self.region
        tiles = x.unfold(2, r, r).unfold(3, r, r)  # (T, 3, rows, cols, r, r)
        gx = torch.einsum("tcijyx,kyx->tcijk", tiles, self.dx)
        gy = torch.einsum("tcijyx,kyx->tcijk", tiles, self.dy)
        # double angle, weighted by gradient magnitude: (gx^2 - gy^2, 2 gx gy) / |g|
        mag = torch.hypot(gx, gy).clamp_min(1e-6)
        orient = torch.complex((gx * gx - gy * gy) / mag, 2 * gx * gy / mag).sum(dim=(1, 4))  # (T, rows, cols)
        return float((orient[:-1].conj() * orient[1:]).imag.mean())


GEOMETRIES = (
    Geometry(64, 16, 4, 0.12, shipped=True),
    Geometry(64, 16, 5, 0.09),
    Geometry(64, 8, 2, 0.15),
    Geometry(64, 8, 4, 0.12),
    Geometry(64, 8, 5, 0.09),
    Geometry(96, 16, 4, 0.12),
    Geometry(128, 16, 4, 0.12),
    Geometry(128, 32, 4, 0.06),
)


def rotation_windows(path: Path) -> tuple[list[np.ndarray], list[tuple[list[int], bool]]]:
    """The video's frames and its rotation windows: (frame indices, clockwise)."""
    frames = read_frames(path)
    truth = json.loads(path.with_suffix(".json").read_text())
    fps, labels = truth["fps"], truth["labels"]
    ts = np.arange(len(frames)) / fps
    count = int(len(frames) / fps * WINDOWS_PER_S)
    out = []
    for idx in file_windows(ts, FRAMES, count, span_s=SPAN_S):
        inside = {labels[i] for i in range(idx[0], idx[-1] + 1)}
        if len(inside) == 1 and (label := inside.pop()) in ROTATIONS:
            out.append((idx, label == "rotate_cw"))
    return frames, out


#: networks timed by --step-cost: today's small one, a wider token, and 4x the tokens
STEP_GEOMETRIES = {
    "small, 64 px": dict(image_size=64),
    "small with a 192-wide token, 64 px": dict(image_size=64, hidden_size=192, num_attention_heads=12,
                                              intermediate_size=768),
    "small, 128 px": dict(image_size=128),
}


def step_cost(repeats: int = 5) -> dict[str, float]:
    """Median seconds of one training step (batch 32, fp32, AdamW) of each of STEP_GEOMETRIES."""
    from model.finetune.bases import SIZES
    from model.timesformer import TimeSformer, TimesformerConfig

    torch.manual_seed(0)
    out = {}
    for name, change in STEP_GEOMETRIES.items():
        geometry = dict(SIZES["small"], **change)
        model = TimeSformer(TimesformerConfig(**geometry, num_frames=FRAMES, labels=tuple("abcdefghi")))
        opt = torch.optim.AdamW(model.parameters())
        size = geometry["image_size"]
        x, y = torch.randn(32, FRAMES, 3, size, size), torch.randint(0, 9, (32,))
        times = []
        for _ in range(repeats + 1):
            t0 = time.perf_counter()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
            opt.zero_grad()
            times.append(time.perf_counter() - t0)
        out[name] = statistics.median(times[1:])
    return out


FRONT_END_SECTION = "demo_turn_front_end"
#: the exact idea (as above) next to the real front ends: the shipped geometry and the regions' (grey)
IDEAL = (Geometry(64, 16, 4, 0.12, shipped=True), Geometry(64, 8, 4, 0.12, grey=True))
#: front ends measured by --front-end: (column, --base, --prior); base None: the shipped checkpoint
FRONT_ENDS = (("shipped checkpoint", None, "motion-demo"),
              ("recipe motion-demo (scratch:small)", "scratch:small", "motion-demo"),
              ("recipe motion-demo-regions (scratch:small-wide)", "scratch:small-wide", "motion-demo-regions"))
#: fp32; int8 as the pipeline runs it on CPU (int8-x86, motion-demo's front-end layers kept in fp32);
#: int8-bnb on every layer but the head (as tests/demo/test_turn_prior.py checks: GELU pairs in 8 bit)
FRONT_END_PRECISIONS = ("fp32", "int8", "int8-bnb all")


def front_end(base: str | None, prior: str, precision: str):
    """The network (eval) and the turn channel: the shipped weights, or a fresh network seeded 0 with ``prior``."""
    from model.checkpoint import load_model
    from model.config import Sampling
    from model.demo import turn_prior
    from model.demo.motion_prior import motion_prior_units
    from model.demo.render import CLASSES
    from model.finetune import bases
    from model.finetune.settings import Freeze
    from model.quantize import apply_precision, quantize

    if base is None:
        model = load_model("motion-demo").network
    else:
        torch.manual_seed(0)
        model = bases.start(base, CLASSES, Sampling(FRAMES, span_s=SPAN_S), Freeze(), prior, "synthetic-shapes").model
    model = model.eval().requires_grad_(False)
    design = turn_prior.REGIONS if prior == "motion-demo-regions" else turn_prior.PATCH
    layout = turn_prior.layout_of(model, motion_prior_units(model), design)
    if precision == "int8":
        model, _ = apply_precision(model, "int8", "cpu", name="motion-demo")
    elif precision == "int8-bnb all":
        quantize(model, "int8-bnb")
    return model, layout.turn


def front_end_rows(videos: dict[str, Path], batch: int = 64) -> list[tuple[str, int, list[int]]]:
    """Per video: rotation windows and, per IDEAL geometry and per front end x precision, how many read right."""
    from model.demo.circuits import cls_after

    nets = [front_end(base, prior, precision) for _, base, prior in FRONT_ENDS for precision in FRONT_END_PRECISIONS]
    pre = Preprocessor(PreprocessConfig(shortest_edge=None, size=(64, 64), crop_size=None))  # bases._scratch's
    rows = []
    for sid, path in videos.items():
        frames, windows = rotation_windows(path)
        if not windows:
            continue
        right = [sum((g.turn([frames[i] for i in idx]) > 0) == cw for idx, cw in windows) for g in IDEAL]
        x = torch.stack([pre(f) for f in frames])  # (frames, 3, 64, 64)
        cw = torch.tensor([c for _, c in windows])
        for model, turn in nets:
            with torch.no_grad():
                t = torch.cat([cls_after(model, x[torch.tensor([idx for idx, _ in windows[k:k + batch]])])[:, turn]
                               for k in range(0, len(windows), batch)])
            right.append(int(((t > 0) == cw).sum()))
        rows.append((sid, len(windows), right))
        print(sid, len(windows), right, flush=True)
    return rows


def share_table(rows: list[tuple[str, int, list[int]]], names: list[str], renderers: list[str]) -> list[str]:
    """Markdown rows: per video its windows and how many each column read right, then each renderer's share."""
    lines = ["| video | rotation windows | " + " | ".join(names) + " |", "|" + "---|" * (len(names) + 2)]
    lines += [f"| {sid} | {n} | " + " | ".join(str(r) for r in right) + " |" for sid, n, right in rows]
    for renderer in renderers:
        mine = [r for r in rows if r[0].startswith(renderer + "-")]
        n = sum(r[1] for r in mine)
        if n:
            share = [sum(r[2][k] for r in mine) / n for k in range(len(names))]
            lines.append(f"| **{renderer}** | {n} | " + " | ".join(f"**{x:.2f}**" for x in share) + " |")
    return lines


def front_end_table(rows: list[tuple[str, int, list[int]]], renderers: list[str]) -> str:
    names = [f"exact: {g.name}" for g in IDEAL] + [f"{name}, {precision}" for name, _, _ in FRONT_ENDS
                                                   for precision in FRONT_END_PRECISIONS]
    return "\n".join([f"Windows whose cls token's mean turn after block 2 has the rotation's sign, real front ends "
                      f"(weights, GELU pairs; {machine()}):", "", *share_table(rows, names, renderers)])


def videos_of(renderer: str, tmp: Path, keep: Path | None) -> dict[str, Path]:
    """``demo_accuracy``'s videos of ``renderer``: drawn into ``tmp``, or kept in ``keep`` and drawn once."""
    folder = (keep or tmp) / renderer
    found = sorted(folder.glob(f"{renderer}-*.mp4")) + sorted(folder.glob(f"{renderer}-*.avi")) if keep else []
    if len(found) == len(VIDEOS):
        return {path.stem: path for path in sorted(found)}
    folder.mkdir(parents=True, exist_ok=True)
    return render(renderer, folder)


def publish(section: str, title: str, text: str) -> None:
    """The table into its section of docs/DEMO_MODEL.md (with what it means) and of BENCHMARKS.md."""
    write_section(section, text, DOC)
    write_section(section, f"## Demo turn detector, {title}\n\n{text}\n\nAlso in docs/DEMO_MODEL.md, with what it means.")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--renderers", nargs="+", default=["training", "sdf", "studio"])
    p.add_argument("--step-cost", action="store_true", help="also time a training step of today's network, a wider one and one at 128 px")
    p.add_argument("--front-end", action="store_true", help="measure the real front ends (shipped, recipe motion-demo, "
                   "recipe motion-demo-regions; fp32 and int8) instead of the exact geometries")
    p.add_argument("--videos", type=Path, help="keep the rendered videos in this folder and reuse them next time")
    p.add_argument("--no-write", action="store_true", help="print only; leave docs/DEMO_MODEL.md as it is")
    args = p.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.front_end:
            for renderer in args.renderers:
                rows += front_end_rows(videos_of(renderer, Path(tmp), args.videos))
            text = front_end_table(rows, args.renderers)
            print(text)
            if not args.no_write:
                publish(FRONT_END_SECTION, "real front ends (`benchmarks/demo_turn_reading.py --front-end`)", text)
            return 0
        for renderer in args.renderers:
            for sid, path in videos_of(renderer, Path(tmp), args.videos).items():
                frames, windows = rotation_windows(path)
                if not windows:
                    continue
                right = [sum((g.turn([frames[i] for i in idx]) > 0) == cw for idx, cw in windows) for g in GEOMETRIES]
                rows.append((sid, len(windows), right))
                print(sid, len(windows), right, flush=True)
    lines = share_table(rows, [g.name for g in GEOMETRIES], args.renderers)
    text = [f"Windows whose mean turn has the rotation's sign ({machine()}):", "", *lines]
    if args.step_cost:
        cost = step_cost()
        base = cost["small, 64 px"]
        text += ["", "One training step (batch 32, fp32, median of 5): "
                 + "; ".join(f"{name} {t:.2f} s ({t / base:.1f}x)" for name, t in cost.items()) + "."]
    print("\n".join(text))
    if not args.no_write:
        publish(SECTION, "exact geometries (`benchmarks/demo_turn_reading.py`)", "\n".join(text))
    return 0


if __name__ == "__main__":
    sys.exit(main())

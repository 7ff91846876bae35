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

    python -m benchmarks.demo_turn_reading [--renderers training sdf studio] [--step-cost] [--no-write]

Prints the table and replaces the ``demo_turn_reading`` section of docs/DEMO_MODEL.md.
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

from benchmarks.demo_accuracy import render  # noqa: E402
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

    def __init__(self, size: int, region: int, grid: int, sigma: float, shipped: bool = False) -> None:
        self.size, self.region, self.grid, self.sigma, self.shipped = size, region, grid, sigma, shipped
        _, dx, dy = corner_windows(region, sigma, grid)
        self.dx, self.dy = dx.float(), dy.float()
        self.pre = Preprocessor(PreprocessConfig(shortest_edge=None, size=(size, size), crop_size=None))

    @property
    def name(self) -> str:
        points = (self.grid - 1) ** 2 * (self.size // self.region) ** 2
        tag = " (shipped)" if self.shipped else ""
        return f"{self.size} px, {self.region} px regions, {points} points{tag}"

    def turn(self, frames: list[np.ndarray]) -> float:
        """Mean over regions and frame pairs of the cross product of consecutive orientation sums."""
        x = torch.stack([self.pre(f) for f in frames])  # (T, 3, size, size)
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--renderers", nargs="+", default=["training", "sdf", "studio"])
    p.add_argument("--step-cost", action="store_true", help="also time a training step of today's network, a wider one and one at 128 px")
    p.add_argument("--no-write", action="store_true", help="print only; leave docs/DEMO_MODEL.md as it is")
    args = p.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for renderer in args.renderers:
            folder = Path(tmp) / renderer
            folder.mkdir()
            for sid, path in render(renderer, folder).items():
                frames, windows = rotation_windows(path)
                if not windows:
                    continue
                right = [sum((g.turn([frames[i] for i in idx]) > 0) == cw for idx, cw in windows) for g in GEOMETRIES]
                rows.append((sid, len(windows), right))
                print(sid, len(windows), right, flush=True)
    header = "| video | rotation windows | " + " | ".join(g.name for g in GEOMETRIES) + " |"
    lines = [header, "|" + "---|" * (len(GEOMETRIES) + 2)]
    for sid, n, right in rows:
        lines.append(f"| {sid} | {n} | " + " | ".join(f"{r}" for r in right) + " |")
    for renderer in args.renderers:
        mine = [r for r in rows if r[0].startswith(renderer + "-")]
        n = sum(r[1] for r in mine)
        if n:
            share = [sum(r[2][k] for r in mine) / n for k in range(len(GEOMETRIES))]
            lines.append(f"| **{renderer}** | {n} | " + " | ".join(f"**{s:.2f}**" for s in share) + " |")
    text = [f"Windows whose mean turn has the rotation's sign ({machine()}):", "", *lines]
    if args.step_cost:
        cost = step_cost()
        base = cost["small, 64 px"]
        text += ["", "One training step (batch 32, fp32, median of 5): "
                 + "; ".join(f"{name} {t:.2f} s ({t / base:.1f}x)" for name, t in cost.items()) + "."]
    print("\n".join(text))
    if not args.no_write:
        write_section(SECTION, "\n".join(text), DOC)
    return 0


if __name__ == "__main__":
    sys.exit(main())

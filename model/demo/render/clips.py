"""Labeled training clips: one action each, drawn with far more variety than the documented videos.

:func:`render_clip` renders one short video of one action (the demo's dataset writer,
``python -m model.demo.dataset``, calls it per file): a scene of random resolution and aspect ratio
and frame rate whose scripted segments lead up to the action, so the shapes start where earlier
actions left them (against an edge, clustered, stacked) as in a long video; then degraded the way
real videos are (lossy encoding, blur, resampling, noise, flicker). numpy + cv2 only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from model.demo.render.actions import CLASSES, DOCUMENTED, RANDOMIZED, Ranges
from model.demo.render.scene import Scene


@dataclass(frozen=True)
class ClipPlan:
    """What one clip video varies: its size, rate, length, and how many actions came before it."""

    short: tuple[int, int] = (56, 240)  # shorter side, pixels (log-uniform)
    fps: tuple[float, float] = (12.0, 30.0)
    seconds: tuple[float, float] = (1.5, 2.6)  # clip length, cut from the action's segment
    before: int = 3  # up to this many scripted actions before the clip's own
    documented_share: float = 0.25  # clips in the documented ranges and look (still degraded)


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def frame_size(rng: np.random.Generator, short: tuple[int, int]) -> tuple[int, int]:
    """(width, height): shorter side log-uniform in ``short``, aspect ratio 0.56..1.8 either way."""
    side = int(round(_log_uniform(rng, *short)))
    aspect = _log_uniform(rng, 1.0, 1.8)
    long = int(round(side * aspect))
    return (long, side) if rng.uniform() < 0.8 else (side, long)


def degrade(rng: np.random.Generator, frames: list[np.ndarray]) -> list[np.ndarray]:
    """Lossy-video look, drawn once per clip: JPEG, blur, down-up resampling, noise, flicker."""
    height, width = frames[0].shape[:2]
    ops = []
    if rng.uniform() < 0.2:
        factor = float(rng.uniform(0.3, 0.7))
        small = (max(8, int(width * factor)), max(8, int(height * factor)))
        ops.append(lambda f: cv2.resize(cv2.resize(f, small, interpolation=cv2.INTER_AREA), (width, height),
                                        interpolation=cv2.INTER_LINEAR))
    if rng.uniform() < 0.25:
        sigma = float(rng.uniform(0.4, 1.6)) * min(width, height) / 100.0
        ops.append(lambda f: cv2.GaussianBlur(f, (0, 0), sigma))
    if rng.uniform() < 0.2:
        extra = float(rng.uniform(2.0, 12.0))
        ops.append(lambda f: np.clip(f + extra * rng.standard_normal(f.shape, dtype=np.float32), 0, 255)
                   .astype(np.uint8))
    if rng.uniform() < 0.15:
        ops.append(lambda f: np.clip(f * rng.normal(1.0, 0.03), 0, 255).astype(np.uint8))
    if rng.uniform() < 0.4:
        quality = int(rng.integers(15, 92))
        ops.append(lambda f: cv2.imdecode(cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, quality])[1],
                                          cv2.IMREAD_COLOR))
    out = []
    for frame in frames:
        for op in ops:
            frame = op(frame)
        out.append(frame)
    return out


def script(rng: np.random.Generator, label: str, before: int) -> tuple[str, ...]:
    """``label`` after 0..``before`` random actions, never the same action twice in a row."""
    out: list[str] = []
    for _ in range(int(rng.integers(0, before + 1))):
        out.append(str(rng.choice([c for c in CLASSES if c != label and (not out or c != out[-1])])))
    return (*out, label)


def render_clip(rng: np.random.Generator, label: str, plan: ClipPlan = ClipPlan(),
                ranges: Ranges = RANDOMIZED) -> tuple[list[np.ndarray], float]:
    """One clip of ``label``: uint8 BGR frames and their frame rate."""
    if rng.uniform() < plan.documented_share:
        ranges = DOCUMENTED
    width, height = frame_size(rng, plan.short)
    fps = float(rng.uniform(*plan.fps))
    scene = Scene(int(rng.integers(0, 2**31 - 1)), width, height, fps, ranges, script(rng, label, plan.before))
    segment = scene.segment_for(0)
    for _ in range(len(scene.script) - 1):  # only states are computed on the way, nothing is drawn
        segment = scene.segment_for(segment.end)
    length = min(segment.num_frames, max(2, int(round(rng.uniform(*plan.seconds) * fps))))
    first = segment.start + int(rng.integers(0, segment.num_frames - length + 1))
    frames = [scene.render(i) for i in range(first, first + length)]
    return degrade(rng, frames), fps

"""Training clips: short labeled frame sequences with far more variety than the documented videos.

Each clip is one action, seen through ``num_frames`` frames sampled at a random time step (as a
window scheduler would, from a source of random frame rate), rendered at a random resolution and
aspect ratio, then degraded the way real videos are (lossy encoding, blur, resampling, noise,
flicker). numpy + cv2 only; the caller resizes to the model input.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from model.demo.render.actions import WIDE, Ranges
from model.demo.render.scene import Scene


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def _frame_size(rng: np.random.Generator, short: tuple[int, int]) -> tuple[int, int]:
    """(width, height): shorter side log-uniform in ``short``, aspect ratio 0.56..1.8 either way."""
    side = int(round(_log_uniform(rng, *short)))
    aspect = _log_uniform(rng, 1.0, 1.8)
    long = int(round(side * aspect))
    return (long, side) if rng.uniform() < 0.8 else (side, long)


def sample_times(rng: np.random.Generator, duration: float, num_frames: int,
                 step_s: tuple[float, float]) -> np.ndarray:
    """Frame times (s) of one window inside ``[0, duration)``: a random step, snapped to a random fps grid."""
    step = _log_uniform(rng, *step_s)
    fps = float(rng.uniform(max(8.0, 1.0 / step), 60.0))
    span = step * (num_frames - 1)
    t0 = float(rng.uniform(0.0, max(duration - span - 1.0 / fps, 0.0)))
    times = np.round((t0 + step * np.arange(num_frames)) * fps) / fps  # as a scheduler picks real frames
    return np.clip(times, 0.0, duration)


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


def sample_clip(rng: np.random.Generator, num_frames: int = 8, ranges: Ranges = WIDE,
                step_s: tuple[float, float] = (0.1, 0.24), short: tuple[int, int] = (56, 220),
                augment: bool = True, segment_index: int = 0) -> tuple[np.ndarray, str]:
    """One labeled clip: uint8 ``(T, H, W, 3)`` BGR frames and the action's class name.

    ``segment_index`` picks which of the scene's segments the clip comes from: 0 is the first, where
    shapes start at random places; later ones start where the earlier actions left the shapes
    (against an edge, clustered, stacked), as a long video does.
    """
    width, height = _frame_size(rng, short)
    scene = Scene(int(rng.integers(0, 2**31 - 1)), width, height, 25.0, ranges)
    segment = scene.segment_for(0)  # the first segment's action is uniform over the classes
    for _ in range(segment_index):  # only states are computed on the way, nothing is drawn
        segment = scene.segment_for(segment.end)
    times = sample_times(rng, segment.num_frames / scene.fps, num_frames, step_s)
    frames = [scene.draw(scene.states_at(segment, float(t)), rng, scene.noise_sigma) for t in times]
    if augment:
        frames = degrade(rng, frames)
    return np.stack(frames), segment.label

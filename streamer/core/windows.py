"""Which ring entries make a clip: pure functions for frame-stride and timestamp sampling.

A clip has ``num_frames`` samples. By stride, sample ``i`` of a window ending at ``e`` is
``e - (T-1-i) * stride``. By time, samples are ``dt = span_s / T`` apart: sample ``i`` targets
``t_end - (T-1-i) * dt`` and takes the frame whose timestamp is nearest, so a varying or dropping
frame rate keeps the clip's time span (a source slower than ``1/dt`` repeats its nearest frame).
"""

from __future__ import annotations

import numpy as np


def stride_indices(end: int, num_frames: int, stride: int) -> list[int]:
    """Sequence numbers of a stride window whose newest frame is ``end``."""
    first = end - (num_frames - 1) * stride
    return list(range(first, end + 1, stride))


def time_targets(t_end: float, num_frames: int, span_s: float) -> np.ndarray:
    """Target timestamps, oldest first, of a clip of ``span_s`` seconds ending at ``t_end``."""
    dt = span_s / num_frames
    return t_end - dt * np.arange(num_frames - 1, -1, -1, dtype=np.float64)


def nearest(ts: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """For each target, the index into sorted ``ts`` of the nearest value (ties go to the older frame)."""
    if len(ts) == 1:
        return np.zeros(len(targets), np.int64)
    j = np.searchsorted(ts, targets)  # first index with ts >= target
    j = np.clip(j, 1, len(ts) - 1)
    older = targets - ts[j - 1] <= ts[j] - targets
    return np.where(older, j - 1, j).astype(np.int64)


def frames_needed(num_frames: int, stride: int | None, span_s: float | None, hop: int | None,
                  hop_s: float | None, fps: float) -> int:
    """How many ring slots a source needs so a window and the next hop always fit."""
    if span_s is not None:
        extent = int(np.ceil((span_s + (hop_s or 0.0) + (hop or 0) / fps) * fps))
    else:
        extent = (num_frames - 1) * stride + 1 + (hop or int(np.ceil((hop_s or 0.0) * fps)))
    return extent + max(8, int(np.ceil(fps / 2)))

"""Which frames make a clip: the one implementation the streamer's scheduler and ``model.finetune`` share.

A clip has ``num_frames`` samples. By stride, sample ``i`` of a window ending at frame ``e`` is
``e - (T-1-i) * stride``. By time, samples are ``dt = span_s / T`` apart: sample ``i`` targets
``t_end - (T-1-i) * dt`` and takes the frame whose timestamp is nearest, so a varying or dropping
frame rate keeps the clip's time span (a source slower than ``1/dt`` repeats its nearest frame).
numpy only: the streamer imports this without torch.

:func:`file_windows` picks windows from one decoded video the way ``mode: file`` does (the first
window ends ``span_s * (T-1)/T`` after the first frame, later ones on a grid of window ends), so a
model is trained on exactly the frames the pipeline will give it.
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


def first_window_end(ts: np.ndarray, num_frames: int, span_s: float | None, stride: int | None) -> float | None:
    """Timestamp (span_s) or index (stride) of the earliest window end inside ``ts``; None when even
    one window does not fit."""
    if stride is not None:
        end = (num_frames - 1) * stride
        return float(end) if end < len(ts) else None
    due = float(ts[0]) + span_s * (num_frames - 1) / num_frames
    tol = 0.5 * float(np.median(np.diff(ts))) if len(ts) > 1 else 0.0
    return due if float(ts[-1]) >= due - tol else None


def file_windows(ts: np.ndarray, num_frames: int, count: int, span_s: float | None = None,
                 stride: int | None = None) -> list[list[int]]:
    """Up to ``count`` windows of one video (frame timestamps ``ts``, sorted), as index lists, oldest
    frame first: window ends spread evenly from the first window that fits to the last frame, each end
    the frame nearest its due time, each window's samples as the scheduler takes them. ``[]`` when the
    video is shorter than one window."""
    if (span_s is None) == (stride is None):
        raise ValueError("file_windows needs exactly one of span_s or stride")
    first = first_window_end(ts, num_frames, span_s, stride)
    if first is None or count < 1:
        return []
    if stride is not None:
        ends = np.unique(np.round(np.linspace(first, len(ts) - 1, count)).astype(np.int64))
        return [stride_indices(int(e), num_frames, stride) for e in ends]
    due = np.linspace(first, max(float(ts[-1]), first), count)
    ends = np.unique(nearest(ts, due))
    return [nearest(ts, time_targets(float(ts[e]), num_frames, span_s)).tolist() for e in ends]

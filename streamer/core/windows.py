"""How many ring slots a window needs. The pure sampling functions (stride and timestamp windows) live in
:mod:`model.sampling`, shared with ``model.finetune`` so a model trains on the frames the scheduler takes;
they are re-exported here for the scheduler.
"""

from __future__ import annotations

import numpy as np

from model.sampling import nearest, stride_indices, time_targets

__all__ = ["frames_needed", "nearest", "stride_indices", "time_targets"]


def frames_needed(num_frames: int, stride: int | None, span_s: float | None, hop: int | None,
                  hop_s: float | None, fps: float) -> int:
    """How many ring slots a source needs so a window and the next hop always fit."""
    if span_s is not None:
        extent = int(np.ceil((span_s + (hop_s or 0.0) + (hop or 0) / fps) * fps))
    else:
        extent = (num_frames - 1) * stride + 1 + (hop or int(np.ceil((hop_s or 0.0) * fps)))
    return extent + max(8, int(np.ceil(fps / 2)))

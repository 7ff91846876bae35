"""One video (or part of one) decoded into preprocessed frames and their timestamps, as the streamer sees it.

Timestamps follow the streamer's file mode: the decoder's presentation time (``CAP_PROP_POS_MSEC``)
while it increases, else one nominal frame interval after the previous frame. Frames go through the
checkpoint's own :class:`model.preprocess.Preprocessor` (resize and crop), kept as uint8.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch

from model.errors import SourceError
from model.finetune.dataset import Clip
from model.preprocess import Preprocessor

FPS_HINT = 25.0  # the streamer's fps_hint default, for files that report no frame rate


def decode(clip: Clip, pre: Preprocessor) -> tuple[torch.Tensor, np.ndarray]:
    """uint8 RGB frames ``(N, 3, h, w)`` of ``clip`` and their timestamps in seconds ``(N,)``."""
    cap = cv2.VideoCapture(str(clip.path))
    if not cap.isOpened():
        raise SourceError(f"{clip.path}: OpenCV cannot open this video; re-encode it (e.g. H.264 .mp4)")
    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        interval = 1.0 / (fps if 0.5 <= fps <= 240.0 else FPS_HINT)
        frames, times, last = [], [], -math.inf
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            pts_ms = cap.get(cv2.CAP_PROP_POS_MSEC)
            t = pts_ms / 1000.0 if pts_ms is not None and pts_ms >= 0 else math.nan
            if not math.isfinite(t) or t <= last:
                t = last + interval if math.isfinite(last) else 0.0
            last = t
            if clip.start_s is not None and t < clip.start_s:
                continue
            if clip.end_s is not None and t >= clip.end_s:
                break
            frames.append(pre.pixels(frame))
            times.append(t)
    finally:
        cap.release()
    if not frames:
        raise SourceError(f"{clip.path}: no frames decoded{_range(clip)}; the file is empty or unreadable")
    return torch.stack(frames), np.asarray(times, dtype=np.float64)


def _range(clip: Clip) -> str:
    return f" in [{clip.start_s}, {clip.end_s}) s" if clip.start_s is not None else ""

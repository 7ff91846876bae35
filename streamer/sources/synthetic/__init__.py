"""Synthetic action videos: shapes that move, rotate, grow, shrink or stay still, with ground truth.

numpy + cv2 only (no torch). ``open_capture(params)`` gives a live source with the
``cv2.VideoCapture`` shape; ``write_video`` writes a file plus a JSON sidecar of per-frame labels.
"""

from __future__ import annotations

from streamer.sources.synthetic.actions import CLASSES, DOCUMENTED, REVERSED, WIDE, Ranges
from streamer.sources.synthetic.capture import SyntheticCapture, open_capture, parse_params
from streamer.sources.synthetic.scene import Scene, Segment
from streamer.sources.synthetic.video import ground_truth, sidecar_path, write_video

__all__ = [
    "CLASSES",
    "DOCUMENTED",
    "REVERSED",
    "WIDE",
    "Ranges",
    "Scene",
    "Segment",
    "SyntheticCapture",
    "ground_truth",
    "open_capture",
    "parse_params",
    "sidecar_path",
    "write_video",
]

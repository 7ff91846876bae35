"""The demo's data generator: synthetic action videos of shapes that move, rotate, grow, shrink or
stay still, with per-frame ground truth.

numpy + cv2 only (no torch). :class:`Scene` renders frames on demand (the ``synthetic://`` source in
``streamer.sources.synthetic`` wraps it), ``write_video`` writes a file plus a JSON sidecar of
per-frame labels, ``clips.sample_clip`` draws the wide-variety training clips.
``python -m model.demo.render --out demo.mp4`` renders a labeled video.
"""

from __future__ import annotations

from model.demo.render.actions import CLASSES, DOCUMENTED, DOMAIN, REVERSED, WIDE, Ranges
from model.demo.render.params import PARAMS, parse_params
from model.demo.render.scene import Scene, Segment
from model.demo.render.video import ground_truth, is_rendered, sidecar_path, write_video

__all__ = [
    "CLASSES",
    "DOCUMENTED",
    "DOMAIN",
    "PARAMS",
    "REVERSED",
    "WIDE",
    "Ranges",
    "Scene",
    "Segment",
    "ground_truth",
    "is_rendered",
    "parse_params",
    "sidecar_path",
    "write_video",
]

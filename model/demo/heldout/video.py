"""A held-out renderer's video file plus a sidecar of per-frame labels (the training renderer's layout)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from model.demo.heldout.timeline import LABELS

FORMAT = "heldout-actions/1"


def write_heldout(path: Path, renderer, seed: int, seconds: float, fps: float, codec: str = "mp4v",
                  quality: int = 90) -> dict:
    """Render ``seconds`` of ``renderer`` at ``fps`` to ``path``; writes and returns the sidecar
    (``labels`` per frame, ``segments`` with frame ranges)."""
    timeline = renderer.timeline(seconds)
    count = int(round(seconds * fps))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), fps, (renderer.width, renderer.height))
    if not writer.isOpened():
        raise RuntimeError(f"cannot write {path} with {codec}")
    labels = []
    try:
        writer.set(cv2.VIDEOWRITER_PROP_QUALITY, float(quality))
        for i in range(count):
            t = i / fps
            labels.append(timeline.part(t).label)
            writer.write(renderer.draw(timeline.poses(t), np.random.default_rng([seed, 3, i])))
    finally:
        writer.release()
    segments, start = [], 0
    for i in range(1, count + 1):
        if i == count or labels[i] != labels[start]:
            segments.append({"label": labels[start], "start_frame": start, "end_frame": i,
                             "start_s": start / fps, "end_s": i / fps})
            start = i
    truth = {"format": FORMAT, "renderer": renderer.name, "seed": seed, "fps": fps, "width": renderer.width,
             "height": renderer.height, "num_frames": count, "classes": list(LABELS), "segments": segments,
             "labels": labels}
    Path(path).with_suffix(".json").write_text(json.dumps(truth, indent=1) + "\n")
    return truth

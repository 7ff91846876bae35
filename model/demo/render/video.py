"""Write a synthetic scene to a video file with its per-frame ground truth in a JSON sidecar."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2

from model.errors import SourceError
from model.demo.render.actions import CLASSES
from model.demo.render.scene import Scene

log = logging.getLogger(__name__)

SIDECAR_FORMAT = "synthetic-actions/1"
_FOURCC = {".mp4": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}


def sidecar_path(video: Path) -> Path:
    """``clip.mp4`` -> ``clip.json``."""
    return Path(video).with_suffix(".json")


def is_rendered(video: str | Path) -> bool:
    """Whether ``video`` was written by :func:`write_video` (its sidecar says so)."""
    sidecar = sidecar_path(Path(video))
    try:
        return json.loads(sidecar.read_text(encoding="utf-8")).get("format") == SIDECAR_FORMAT
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):  # no sidecar, or not ours
        return False


def ground_truth(scene: Scene, num_frames: int) -> dict:
    """The sidecar's content: per-frame labels plus the segment list, times in seconds."""
    segments = scene.segments_until(num_frames)
    labels = [seg.label for seg in segments for _ in range(seg.num_frames)]
    return {
        "format": SIDECAR_FORMAT,
        "seed": scene.seed,
        "fps": scene.fps,
        "width": scene.width,
        "height": scene.height,
        "num_frames": num_frames,
        "classes": list(CLASSES),
        "background": scene.background_kind,
        "shapes": list(scene.shape_kinds),
        "segments": [
            {
                "label": seg.label,
                "start_frame": seg.start,
                "end_frame": seg.end,  # exclusive
                "start_s": seg.start / scene.fps,
                "end_s": seg.end / scene.fps,
            }
            for seg in segments
        ],
        "labels": labels,
    }


def write_video(path: Path, scene: Scene, num_frames: int, quality: int = 95) -> dict:
    """Render ``num_frames`` of ``scene`` to ``path`` (.mp4 or .avi) and its sidecar; returns the sidecar."""
    path = Path(path)
    fourcc = _FOURCC.get(path.suffix.lower())
    if fourcc is None:
        raise SourceError(f"cannot write {path}: use a .mp4 or .avi file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), scene.fps, (scene.width, scene.height))
    if not writer.isOpened():
        raise SourceError(f"cannot write {path}: OpenCV has no {fourcc} encoder here; try .avi")
    try:
        writer.set(cv2.VIDEOWRITER_PROP_QUALITY, float(quality))
        for index in range(num_frames):
            writer.write(scene.render(index))
    finally:
        writer.release()
    truth = ground_truth(scene, num_frames)
    sidecar_path(path).write_text(json.dumps(truth, indent=1) + "\n")
    log.info("wrote %s (%d frames, %d segments)", path, num_frames, len(truth["segments"]))
    return truth

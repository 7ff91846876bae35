"""The ``synthetic://`` source: the demo renderer (``model.demo.render``) with the ``cv2.VideoCapture`` shape.

``synthetic://actions?seed=3&fps=25&width=160&height=120`` renders frames on demand: ``read()``
never sleeps (the pipeline paces live sources) and ``label`` names the action of the last frame read.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import cv2
import numpy as np

from model.demo.render import Scene, parse_params

log = logging.getLogger(__name__)


class SyntheticCapture:
    """Renders a :class:`Scene` frame by frame; quacks like ``cv2.VideoCapture``."""

    def __init__(self, seed: int = 0, fps: float = 25.0, width: int = 160, height: int = 120,
                 frames: int | None = None) -> None:
        self.scene = Scene(seed, width, height, fps)
        self.frames = frames
        self.index = 0  # next frame to render
        self.label: str | None = None  # action of the last frame read
        self._open = True
        log.info("synthetic source seed=%d %dx%d at %.1f fps", seed, width, height, fps)

    def isOpened(self) -> bool:  # noqa: N802 (cv2's spelling)
        return self._open

    def read(self) -> tuple[bool, np.ndarray | None]:
        if not self._open or (self.frames is not None and self.index >= self.frames):
            return False, None
        frame = self.scene.render(self.index)
        self.label = self.scene.label(self.index)
        self.scene.forget_before(self.index)
        self.index += 1
        return True, frame

    def get(self, prop: int) -> float:
        if prop == cv2.CAP_PROP_FPS:
            return self.scene.fps
        if prop == cv2.CAP_PROP_FRAME_WIDTH:
            return float(self.scene.width)
        if prop == cv2.CAP_PROP_FRAME_HEIGHT:
            return float(self.scene.height)
        if prop == cv2.CAP_PROP_POS_FRAMES:
            return float(self.index)
        if prop == cv2.CAP_PROP_FRAME_COUNT:
            return float(self.frames) if self.frames is not None else -1.0
        return 0.0

    def set(self, prop: int, value: float) -> bool:
        return False

    def release(self) -> None:
        self._open = False


def open_capture(params: Mapping[str, object]) -> SyntheticCapture:
    """Build a live synthetic source from URL query parameters (``seed``, ``fps``, ``width``, ...)."""
    return SyntheticCapture(**parse_params(params))


__all__ = ["SyntheticCapture", "open_capture"]

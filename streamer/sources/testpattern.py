"""A test-pattern capture with the ``cv2.VideoCapture`` shape: a moving bar over a gradient, no files needed.

URL: ``testpattern://?width=160&height=120&fps=25&frames=100`` (``frames`` 0 = endless).
"""

from __future__ import annotations

import numpy as np

from streamer.sources.props import Prop


class TestPatternCapture:
    """Renders frames on demand; does not pace itself (the capture thread paces live sources)."""

    __test__ = False  # not a pytest test class

    def __init__(self, width: int = 160, height: int = 120, fps: float = 25.0, frames: int = 0) -> None:
        self.width, self.height, self.fps, self.frames = int(width), int(height), float(fps), int(frames)
        x = np.linspace(0, 255, self.width, dtype=np.float32)
        y = np.linspace(0, 255, self.height, dtype=np.float32)[:, None]
        base = np.empty((self.height, self.width, 3), np.uint8)  # (H, W, 3) BGR
        base[..., 0] = x
        base[..., 1] = y
        base[..., 2] = 128
        self._base = base
        self._index = 0
        self._open = True
        self.label: str | None = None

    @classmethod
    def from_params(cls, params: dict[str, str]) -> "TestPatternCapture":
        return cls(width=int(params.get("width", 160)), height=int(params.get("height", 120)),
                   fps=float(params.get("fps", 25.0)), frames=int(params.get("frames", 0)))

    def isOpened(self) -> bool:  # noqa: N802 - cv2.VideoCapture's name
        return self._open

    def read(self) -> tuple[bool, np.ndarray | None]:
        if not self._open or (self.frames and self._index >= self.frames):
            return False, None
        frame = self._base.copy()
        bar = (self._index * 4) % self.width
        frame[:, bar:bar + max(2, self.width // 16)] = 255
        self.label = "bar_right"
        self._index += 1
        return True, frame

    def get(self, prop: int) -> float:
        return {
            Prop.POS_MSEC: 1000.0 * max(self._index - 1, 0) / self.fps,
            Prop.POS_FRAMES: float(self._index),
            Prop.FRAME_WIDTH: float(self.width),
            Prop.FRAME_HEIGHT: float(self.height),
            Prop.FPS: self.fps,
            Prop.FRAME_COUNT: float(self.frames),
        }.get(prop, 0.0)

    def release(self) -> None:
        self._open = False


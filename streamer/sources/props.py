"""The capture property ids this project reads, with OpenCV's numbers (``cv2.CAP_PROP_*``).

One home for them: OpenCV captures, the PyAV file capture and the generated sources all answer
``get(prop)`` with these ids, and this module needs no cv2 import (a test checks the numbers
against cv2's own constants).
"""

from __future__ import annotations

from enum import IntEnum


class Prop(IntEnum):
    POS_MSEC = 0  #: presentation time of the frame last read, in ms
    POS_FRAMES = 1  #: frames read so far
    FRAME_WIDTH = 3
    FRAME_HEIGHT = 4
    FPS = 5  #: the frame rate the stream declares (0 or nonsense for some live streams)
    FRAME_COUNT = 7  #: frames in a file, as its container declares them

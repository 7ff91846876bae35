"""The streaming pipeline: capture threads -> ring buffers -> sliding windows -> batched inference -> ZeroMQ.

Importing this package sets the OpenCV/FFmpeg environment that must be in place before ``cv2`` is
first imported (see :mod:`streamer.cvenv`). Heavy modules (torch, the model) are imported where used.
"""

from __future__ import annotations

from streamer.cvenv import prepare_opencv_environment

prepare_opencv_environment()

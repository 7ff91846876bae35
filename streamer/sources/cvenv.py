"""OpenCV/FFmpeg process settings that only take effect when set before ``cv2`` is imported.

Measured on these machines (OpenCV 4.14 and 5.0): without ``OPENCV_FFMPEG_IS_THREAD_SAFE=1`` OpenCV
serializes every ``open()`` across threads, so a dead camera delays the others by its whole open
timeout. Setting ``OPENCV_FFMPEG_CAPTURE_OPTIONS`` replaces OpenCV's own TCP preference for RTSP,
so ``rtsp_transport;tcp`` is written here explicitly.
"""

from __future__ import annotations

import logging
import os
import sys

log = logging.getLogger(__name__)

#: FFmpeg demuxer options for every OpenCV FFmpeg capture, ``key;value`` pairs joined by ``|``.
FFMPEG_CAPTURE_OPTIONS = "rtsp_transport;tcp"


def prepare_opencv_environment() -> bool:
    """Set the environment OpenCV reads at import; returns False (and warns) if cv2 was imported first."""
    os.environ.setdefault("OPENCV_FFMPEG_IS_THREAD_SAFE", "1")
    os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", FFMPEG_CAPTURE_OPTIONS)
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    if "cv2" in sys.modules:
        log.debug("cv2 was imported before streamer; OPENCV_FFMPEG_IS_THREAD_SAFE may not apply")
        return False
    return True

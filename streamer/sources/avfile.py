"""Video files decoded with PyAV (FFmpeg's libraries), in the ``cv2.VideoCapture`` shape.

Why files do not go through OpenCV: OpenCV's FFmpeg backend converts every frame to the size the
stream had when it was opened, so a file whose resolution changes mid-stream (a concatenated
MPEG-TS, a spliced recording) came out squashed to the first size without a word (R8); and its
``read()`` returns False alike at the end of the file and for a packet that fails to decode, so one
corrupt block looked like the end of the file (R7, R9). Measured here (OpenCV 5.0): a 320x240 ->
1280x544 TS gave 100 frames of 320x240; an mp4 with one 4 KB block zeroed gave 18 failed reads in a
row mid-file, then decoded on. PyAV hands out each frame at its own size, raises for a packet that
does not decode, and its demuxer says when the file is over (:meth:`AvFileCapture.at_end`).
Pixels are the same as OpenCV's (BGR, same conversion: checked equal on bikes.mp4).
"""

from __future__ import annotations

import logging

import numpy as np

from streamer.sources.props import Prop

log = logging.getLogger(__name__)


class AvFileCapture:
    """One video file, read frame by frame; opened in the constructor (``av.FFmpegError`` if it cannot be)."""

    def __init__(self, path: str, open_timeout_s: float, read_timeout_s: float) -> None:
        import av

        self._errors = (av.FFmpegError, ValueError)  # ValueError: PyAV's own for a broken frame
        self._container = av.open(path, timeout=(open_timeout_s, read_timeout_s))
        videos = self._container.streams.video
        if not videos:
            self._container.close()
            raise av.InvalidDataError(0, f"{path} has no video stream")
        self._stream = videos[0]
        self._stream.thread_type = "AUTO"  # frame threads: as fast as OpenCV's decoder
        self._packets = self._container.demux(self._stream)
        self._decoded: list = []  # frames of the current packet not handed out yet
        self._frame = None  # the frame last returned
        self._count = 0
        self._open = True
        self._ended = False  # the demuxer ran out: the end of the file
        self.last_error = ""  # why the last failed read failed

    def isOpened(self) -> bool:  # noqa: N802 - cv2.VideoCapture's name
        return self._open

    def read(self) -> tuple[bool, np.ndarray | None]:
        """The next frame (BGR, its own size); ``(False, None)`` for a corrupt packet or at the end."""
        while self._open and not self._ended:
            if self._decoded:
                self._frame = self._decoded.pop(0)
                self._count += 1
                return True, self._frame.to_ndarray(format="bgr24")
            if not self._decode_next_packet():
                return False, None
        return False, None

    def _decode_next_packet(self) -> bool:
        """Decode one packet into ``_decoded``; False if it failed (or the file ended)."""
        try:
            packet = next(self._packets, None)
            if packet is None:
                self._ended = True
                return False
            self._decoded = list(packet.decode())  # the last (empty) packet flushes the decoder
            return True
        except self._errors as exc:
            self.last_error = str(exc)[:200]
            return False

    def at_end(self) -> bool:
        """True once the whole file was read; a failed read before that was a corrupt packet."""
        return self._ended

    def get(self, prop: int) -> float:
        frame, stream = self._frame, self._stream
        if prop == Prop.POS_MSEC:
            return 1000.0 * frame.time if frame is not None and frame.time is not None else -1.0
        if prop == Prop.POS_FRAMES:
            return float(self._count)
        if prop == Prop.FPS:
            rate = stream.average_rate or stream.guessed_rate
            return float(rate) if rate else 0.0
        if prop == Prop.FRAME_COUNT:
            return float(stream.frames)
        if prop == Prop.FRAME_WIDTH:
            return float(frame.width if frame is not None else stream.codec_context.width)
        if prop == Prop.FRAME_HEIGHT:
            return float(frame.height if frame is not None else stream.codec_context.height)
        return 0.0

    def release(self) -> None:
        if self._open:
            self._open = False
            self._container.close()

"""Native library output (OpenCV, FFmpeg) into our log, once per cause, instead of raw on stderr.

OpenCV's and FFmpeg's C code write straight to file descriptor 2: ``[ WARN:0@0.019] global
cap_v4l.cpp:914 open VIDEOIO(V4L2:/dev/video7): can't open camera by index``, ``[tcp @ 0x55d0...]
Connection to tcp://... failed: Connection refused``, once per retry. This cv2 has no log
callback to hook (``cv2.utils.logging`` only sets the level) and FFmpeg's ``av_log`` inside OpenCV
is out of reach, so :class:`NativeLogCapture` points fd 2 at a pipe and a small thread reads it:
each line is redacted (S6) and logged at WARNING the first time its cause is seen (the line with
its numbers, addresses and timestamps blanked), and at DEBUG after that. Python's own ``sys.stderr``
keeps writing to the real stderr (a duplicate of the old fd 2), so log records never loop back.

The CLI owns the process's stderr, so it starts the capture (``with NativeLogCapture(): ...``).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading

from streamer.redact import redact
from streamer.supervisor import join_or_warn

log = logging.getLogger(__name__)

_NOISE = re.compile(r"0x[0-9a-fA-F]+|\d+(?:\.\d+)?")
_MAX_CAUSES = 512  # distinct causes remembered; beyond this every line goes to DEBUG (bounded memory)
_MAX_LINE = 1000


def cause_of(line: str) -> str:
    """The line with what changes between repeats (numbers, addresses, timestamps) blanked."""
    return _NOISE.sub("#", line.strip())


class NativeLogCapture:
    """Route what native code writes to ``fd`` (default 2) through :mod:`logging`, deduplicated by cause."""

    def __init__(self, fd: int = 2) -> None:
        self.fd = fd
        self.lines = 0  # lines read
        self.causes: set[str] = set()
        self._saved: int | None = None  # the original target of fd
        self._stderr = None  # sys.stderr before start (restored at stop)
        self._thread: threading.Thread | None = None

    def start(self) -> "NativeLogCapture":
        self._saved = os.dup(self.fd)
        if _writes_to(sys.stderr, self.fd):  # Python keeps writing to the real stderr, through a duplicate of it
            sys.stderr.flush()
            self._stderr = sys.stderr
            sys.stderr = os.fdopen(os.dup(self._saved), "w", buffering=1, encoding=self._stderr.encoding,
                                   errors="backslashreplace")
            _repoint_handlers(self._stderr, sys.stderr)
        read_end, write_end = os.pipe()
        os.dup2(write_end, self.fd)
        os.close(write_end)
        self._thread = threading.Thread(target=self._pump, args=(read_end,), name="native-log", daemon=False)
        self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        """Give ``fd`` its old target back; the reader sees the end of the pipe, logs what is left, exits."""
        if self._saved is None:
            return
        os.dup2(self._saved, self.fd)  # the pipe's last write end closes: the reader gets EOF
        os.close(self._saved)
        self._saved = None
        join_or_warn(self._thread, timeout)
        if self._stderr is not None:
            sys.stderr.flush()
            _repoint_handlers(sys.stderr, self._stderr)
            sys.stderr, self._stderr = self._stderr, None

    def __enter__(self) -> "NativeLogCapture":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _pump(self, read_end: int) -> None:
        with os.fdopen(read_end, "r", encoding="utf-8", errors="replace") as pipe:
            for line in pipe:  # ends when every write end is closed (stop)
                try:
                    self._emit(line.rstrip())
                except Exception:  # a broken handler must not end the drain: fd 2 would block
                    pass

    def _emit(self, line: str) -> None:
        if not line.strip():
            return
        self.lines += 1
        line = redact(line[:_MAX_LINE])
        cause = cause_of(line)
        if cause in self.causes or len(self.causes) >= _MAX_CAUSES:
            log.debug("native: %s", line)
            return
        self.causes.add(cause)
        log.warning("native: %s", line)


def _writes_to(stream, fd: int) -> bool:
    """Whether ``stream`` writes to file descriptor ``fd`` (not when a test or an embedding program
    has replaced ``sys.stderr`` with something of its own: that is left alone)."""
    try:
        return stream.fileno() == fd
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both of the last two
        return False


def _repoint_handlers(old, new) -> None:
    """Logging handlers that write to ``old`` (the stderr being replaced) write to ``new`` instead."""
    loggers = [logging.getLogger()] + [v for v in logging.Logger.manager.loggerDict.values()
                                       if isinstance(v, logging.Logger)]
    for logger in loggers:
        for handler in logger.handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream is old:
                handler.setStream(new)

"""One stream's recent raw frames for its event clips: the bounded buffer between capture and the clip writer.

Capture appends (:meth:`PreRoll.add`, never waits); the oldest frame leaves when the buffer passes its
byte bound (``clips.buffer_mb``) or its time bound (``pre_s`` plus the seconds an event takes to be
announced). The clip writer (:mod:`streamer.ops.clips`) reads: a clip with its own encoder the frames
after the last it took (:meth:`PreRoll.after`), a stream's shared encoding the frames up to the
seconds it holds back (:meth:`PreRoll.upto`).
"""

from __future__ import annotations

import bisect
import itertools
import threading
import time
from collections import deque
from typing import NamedTuple

#: clock comparisons (the clip writer's too): frame 15 at 25 fps is 0.6 s, whatever the float rounding
CLOCK_EPS = 1e-6


class Frame(NamedTuple):
    index: int  #: frame number (frames handed to preprocessing)
    t: float  #: the stream's clock: wall time (live) or media time (file)
    wall: float
    image: object  #: the raw BGR frame (numpy), never modified


def _number(frame: Frame) -> int:
    return frame.index


class PreRoll:
    """One stream's recent raw frames, oldest first, bounded in bytes and in seconds (any thread)."""

    def __init__(self, max_bytes: float, horizon_s: float) -> None:
        self.max_bytes, self.horizon_s = max_bytes, horizon_s
        self._frames: deque[Frame] = deque()
        self._bytes = 0
        self._lock = threading.Lock()
        self.touched = time.monotonic()  # when the newest frame came

    def add(self, frame: Frame) -> None:
        self.touched = time.monotonic()
        with self._lock:
            self._frames.append(frame)
            self._bytes += frame.image.nbytes
            while len(self._frames) > 1 and (self._bytes > self.max_bytes
                                            or self._frames[0].t < frame.t - self.horizon_s):
                self._bytes -= self._frames.popleft().image.nbytes

    def after(self, index: int, t_from: float) -> tuple[list[Frame], int]:
        """Frames with a number above ``index`` and ``t >= t_from``, and the oldest number still held.
        Numbers only grow, so the scan runs back from the newest frame and stops at ``index``: a clip
        being written costs its new frames, not the whole buffer, each time."""
        newer = []
        with self._lock:
            oldest = self._frames[0].index if self._frames else index + 1
            for frame in reversed(self._frames):
                if frame.index <= index:
                    break
                newer.append(frame)
        newer.reverse()
        return [f for f in newer if f.t >= t_from], oldest

    def upto(self, index: int, hold_s: float) -> list[Frame]:
        """Frames with a number above ``index``, oldest first, up to ``hold_s`` (the stream's clock) before the
        newest one. A bisection, then only the frames handed out: the shared encoding, seconds behind, asks
        every round."""
        with self._lock:
            if not self._frames:
                return []
            t_to = self._frames[-1].t - hold_s + CLOCK_EPS
            out = []
            for frame in itertools.islice(self._frames, bisect.bisect_right(self._frames, index, key=_number), None):
                if frame.t > t_to:
                    break
                out.append(frame)
        return out

    def first_from(self, t_from: float) -> Frame | None:
        """The oldest frame held with ``t >= t_from`` (a new clip's first frame), None before one came."""
        with self._lock:
            for frame in self._frames:
                if frame.t >= t_from:
                    return frame
        return None

    def capacity_s(self) -> float:
        """About how many seconds of the stream the buffer holds when full: its byte bound at the frames'
        recent size and rate, at most its time bound."""
        with self._lock:
            n = len(self._frames)
            span = self._frames[-1].t - self._frames[0].t if n > 1 else 0.0
            if span <= 0:
                return self.horizon_s
            return min(self.horizon_s, self.max_bytes / self._bytes * span * n / (n - 1))

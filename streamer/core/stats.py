"""Per-stream counters, kept in one place that the publisher, status line and later features read.

Each counter has one writing thread (capture: frames, decode errors, reconnects; inference:
windows, seq; publisher: results; any thread: drops through :meth:`StreamStats.drop`, which locks),
so plain attribute updates are safe under the GIL. The state is the exception: the capture thread
and the main thread's stall watchdog both change it, so every change goes through
:meth:`StreamStats.set_state`, one method under one lock. :meth:`StreamStats.snapshot` gives a
JSON-ready dict.

Every start of a stream gets a new random :attr:`StreamStats.session` (a stream removed and added
again starts ``seq`` at 0 under a new session, so a subscriber tells a new run from a gap); a
removed stream's state is ``removed``, which nothing changes any more.
"""

from __future__ import annotations

import enum
import os
import threading
import time
from collections import deque
from typing import Callable, Iterable


class StreamState(str, enum.Enum):
    """The states a source goes through; the value is what status messages carry on the wire."""

    CONNECTING = "connecting"
    RUNNING = "running"
    STALLED = "stalled"
    BACKOFF = "backoff"
    ENDED = "ended"
    FAILED = "failed"
    STOPPED = "stopped"
    #: cluster mode: the worker serving the stream was lost; the cluster head publishes this until another
    #: worker serves it (streamer/cluster/)
    REASSIGNING = "reassigning"
    REMOVED = "removed"  #: taken out of a running pipeline (control socket, reload); final

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


#: The states' wire values, in order (metrics label values).
STATES = tuple(s.value for s in StreamState)

#: Why a frame or window was dropped (the keys of ``drops``).
DROP_REASONS = ("stale", "gap", "overwritten", "oversize", "rate", "catchup", "preprocess_error", "shape_mismatch",
                "publish_queue_full")


class StreamStats:
    def __init__(self, stream: str, url: str) -> None:
        self.stream = stream
        self.url = url  # already redacted
        self.session = os.urandom(4).hex()  # new for every start of the stream: seq counts from 0 within it
        self.state = StreamState.CONNECTING  # changed only by set_state
        self.reason = ""
        self.state_since = time.time()
        self.state_mono = time.monotonic()  # when the state (or its reason) last changed
        self.frames = 0
        self.decode_errors = 0
        self.reconnects = 0
        self.windows = 0  # windows handed to the model
        self.results = 0  # results published
        self.next_seq = 0  # seq of the next result (assigned by the inference thread)
        self.fps = 0.0
        self.last_frame_mono = 0.0
        self.drops = dict.fromkeys(DROP_REASONS, 0)
        self.latency_ms: deque[float] = deque(maxlen=256)  # recent capture_to_publish
        self.last_result: dict | None = None  # latest published result (for late-joiner snapshots)
        #: side outputs that fall behind or fail (clips, webhook, mqtt): name -> one line; status shows them (R27)
        self.warnings: dict[str, str] = {}
        self._lock = threading.Lock()
        self._state_lock = threading.RLock()  # announce() may read snapshot() under it
        self._announced = False  # the first state is always announced, even if it is the initial one
        self._fps_t0 = time.monotonic()
        self._fps_f0 = 0

    def set_state(self, state: StreamState | str, reason: str = "", *, only_from: Iterable[StreamState] = (),
                  announce: Callable[["StreamStats"], None] | None = None) -> bool:
        """Change the state (any thread); True if it changed.

        Nothing changes when state and reason are what they are already, or when ``only_from`` is
        given and the current state is not in it (the watchdog marks only a *running* source stalled,
        even if the capture thread moved on meanwhile). ``announce(self)`` runs under the lock, so
        announcements (log, status message) go out in the order the changes were made.
        """
        state = StreamState(state)
        with self._state_lock:
            if only_from and self.state not in only_from:
                return False
            if self.state is StreamState.REMOVED:  # final: a capture thread ending late says nothing more
                return False
            if self._announced and self.state is state and self.reason == reason:
                return False
            self._announced = True
            self.state, self.reason = state, reason
            self.state_since, self.state_mono = time.time(), time.monotonic()
            if announce is not None:
                announce(self)
        return True

    def drop(self, reason: str, n: int = 1) -> None:
        with self._lock:
            self.drops[reason] = self.drops.get(reason, 0) + n

    def warn(self, source: str, text: str | None) -> None:
        """Set (``text``) or clear (None) the warning of one side output (any thread)."""
        with self._lock:
            if text:
                self.warnings[source] = text
            else:
                self.warnings.pop(source, None)

    def frame(self, mono: float) -> None:
        """Count one frame that entered the ring (capture thread)."""
        self.frames += 1
        self.last_frame_mono = mono
        if self.frames == 1:
            self._fps_t0, self._fps_f0 = mono, 1
        elif mono - self._fps_t0 >= 1.0:
            self.fps = (self.frames - self._fps_f0) / (mono - self._fps_t0)
            self._fps_t0, self._fps_f0 = mono, self.frames

    def current_fps(self, now: float | None = None) -> float:
        """Frame rate over the last second or so; decays to 0 when frames stop."""
        now = time.monotonic() if now is None else now
        if self.last_frame_mono and now - self.last_frame_mono > 2.0:
            return 0.0
        return self.fps

    def latency_p50(self) -> float | None:
        values = sorted(self.latency_ms)
        return values[len(values) // 2] if values else None

    def snapshot(self) -> dict:
        with self._lock:
            drops = dict(self.drops)
            warnings = sorted(self.warnings.values())
        with self._state_lock:
            state, reason, since = str(self.state), self.reason, self.state_since
        return {
            "session": self.session,
            "state": state,
            "reason": reason,
            "state_since": since,
            "frames": self.frames,
            "windows": self.windows,
            "results": self.results,
            "drops": drops,
            "decode_errors": self.decode_errors,
            "reconnects": self.reconnects,
            "fps": round(self.current_fps(), 2),
            "warnings": warnings,
        }


class StatsRegistry:
    """All streams' counters by id, in source order."""

    def __init__(self) -> None:
        self._streams: dict[str, StreamStats] = {}

    def add(self, stream: str, url: str) -> StreamStats:
        stats = StreamStats(stream, url)
        self._streams = {**self._streams, stream: stats}  # copy-on-write, as remove()
        return stats

    def __getitem__(self, stream: str) -> StreamStats:
        return self._streams[stream]

    def get(self, stream: str) -> StreamStats | None:
        """The stream's counters, or None for a stream that is not (or no longer) here."""
        return self._streams.get(stream)

    def remove(self, stream: str) -> StreamStats | None:
        """Forget a removed stream: heartbeats, the status line and metrics no longer see it."""
        streams = dict(self._streams)
        gone = streams.pop(stream, None)
        self._streams = streams  # copy-on-write: iteration in other threads never sees a dict change size
        return gone

    def __iter__(self):
        return iter(list(self._streams.values()))

    def __len__(self) -> int:
        return len(self._streams)

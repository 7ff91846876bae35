"""One capture thread per source: open, read continuously, stamp, preprocess once, push into the ring.

The thread owns its capture object (opened in ``run``, released in ``finally``) and stops on an
Event. It never waits for a consumer in live mode (the ring overwrites the oldest frame); in file
mode it waits for ring space so every window is seen. The read loop itself (what gets into the
ring, segments, catch-up, decode errors, ring sizing) is :mod:`streamer.sources.readloop`.

States (:class:`StreamState`, published): connecting -> running <-> stalled; lost live sources go
to backoff and reconnect with capped exponential backoff plus jitter; files end with ``ended`` (or
loop); a source that cannot be opened and does not reconnect is ``failed``; ``stopped`` at shutdown.
Every change goes through :meth:`CaptureThread.set_state` (one method, under the stats' lock),
whether the capture thread or the main thread's stall watchdog makes it.

The watchdog (:meth:`CaptureThread.check_stall`) measures from the later of the last (re)connect
and the end of the last wait for ring space: a source that just came back is not judged on the
frames it did not deliver while it was away, and a file waiting for a slow model is waiting on the
consumer, not stalled (R26). With ``options.stall_reopen`` a stalled live source is also reopened
(through the usual backoff), instead of only being labelled.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Callable

from model.errors import SourceError
from streamer.redact import redact
from streamer.core.ring import FrameRing
from streamer.sources.pacing import backoff_delay
from streamer.sources.readloop import FrameReader
from streamer.sources.table import SourcePlan
from streamer.core.stats import StreamState, StreamStats

log = logging.getLogger(__name__)

_STABLE_S = 10.0  # a connection that delivered frames this long resets the backoff
_MIN_FRAMES_PER_STALL = 3  # fewer frames than this within stall_timeout_s counts as a stall
_NOT_STALLED = tuple(s for s in StreamState if s is not StreamState.STALLED)


class CaptureThread(threading.Thread):
    def __init__(self, plan: SourcePlan, ring: FrameRing, preprocess: Callable, stats: StreamStats, *,
                 capacity_for: Callable[[float], int], on_frame: Callable[[], None],
                 on_state: Callable[[StreamStats], None]) -> None:
        super().__init__(name=f"capture-{plan.id}", daemon=False)
        self.plan = plan
        self.ring = ring
        self.stats = stats
        self.stop_event = threading.Event()
        self._reopen = threading.Event()  # set by the watchdog: drop the connection and reconnect
        self.reader = FrameReader(plan, ring, preprocess, stats, capacity_for=capacity_for, on_frame=on_frame,
                                  arrived=self._arrived, stop=self.stop_event, reopen=self._reopen, push=self._push)
        self.on_state = on_state
        self._watch: deque[tuple[float, int]] = deque()  # stall watchdog samples (main thread)
        self._arrivals: deque[float] = deque(maxlen=_MIN_FRAMES_PER_STALL)  # capture thread only
        self._pushing_since: float | None = None  # set while a push may wait for ring space (file mode)
        self._resumed = 0.0  # monotonic end of the last wait for ring space that took longer than a frame
        self._stop_reason = ""  # the reason the final ``stopped`` state carries

    @property
    def interval(self) -> float:
        """Seconds between frames on the sampling clock: the source's measured (or declared) frame rate.
        Events and the annotated video read it (streamer/ops/features.py)."""
        return self.reader.interval

    # ---- control ------------------------------------------------------------------------------
    def stop(self, reason: str = "") -> None:
        """Tell the thread to stop; ``reason`` goes with its final ``stopped`` state (e.g. the pipeline failed)."""
        self._stop_reason = reason
        self.stop_event.set()

    def doing(self) -> str:
        """What the thread may be blocked in (named when shutdown leaves it behind)."""
        if self.stats.state is StreamState.CONNECTING:
            return "opening the source in the capture backend"
        if self._pushing_since is not None:
            return "waiting for ring space"
        return "reading from the capture backend"

    def set_state(self, state: StreamState, reason: str = "", *, only_from: tuple[StreamState, ...] = ()) -> bool:
        """The one way a stream's state changes (capture thread or watchdog); logged and published once."""
        return self.stats.set_state(state, redact(reason), only_from=only_from,  # exception texts may carry the URL (S6)
                                    announce=self._announce)

    def _announce(self, stats: StreamStats) -> None:
        level = logging.WARNING if stats.state in (StreamState.STALLED, StreamState.BACKOFF, StreamState.FAILED) \
            else logging.INFO
        # a stopped stream's reason is the pipeline's failure, logged once where it happened
        shown = stats.reason if stats.reason and stats.state is not StreamState.STOPPED else ""
        log.log(level, "[%s] %s%s", self.plan.id, stats.state, f": {shown}" if shown else "")
        self.on_state(stats)

    def check_stall(self, now: float) -> None:
        """Watchdog (called from the main thread): running, but no frame, or fewer than
        ``_MIN_FRAMES_PER_STALL`` frames, for stall_timeout_s -> stalled (R2).

        The count matters: a frozen RTSP server makes OpenCV hand back a stale buffered frame after
        each read timeout, so "no frame at all" alone would never fire. The capture thread leaves
        ``stalled`` once that many frames arrive within one stall timeout again. The window starts
        again at every (re)connect and after every wait for ring space (see the module docstring).
        """
        stats, samples = self.stats, self._watch  # samples: written by this (main) thread only
        if stats.state is not StreamState.RUNNING or self._pushing_since is not None:
            samples.clear()  # not running, or waiting on the consumer: no stall to judge
            return
        limit = self.plan.config.options.stall_timeout_s
        since = max(stats.state_mono, self._resumed)
        if samples and samples[0][0] < since:
            samples.clear()
        samples.append((now, stats.frames))
        while len(samples) > 1 and samples[1][0] <= now - limit:
            samples.popleft()
        if now - max(stats.last_frame_mono, since) > limit:
            reason = f"no frame for {limit:g} s"
        elif samples[0][0] <= now - limit and stats.frames - samples[0][1] < _MIN_FRAMES_PER_STALL:
            reason = f"fewer than {_MIN_FRAMES_PER_STALL} frames in {limit:g} s"
        else:
            return
        if self.set_state(StreamState.STALLED, reason, only_from=(StreamState.RUNNING,)) and self._may_reopen():
            log.info("[%s] reopening the stalled source", self.plan.id)
            self._reopen.set()

    def _may_reopen(self) -> bool:
        return self.plan.config.options.stall_reopen and self.plan.kind.reconnects

    # ---- the thread ---------------------------------------------------------------------------
    def run(self) -> None:
        try:
            self._connect_loop()
        except Exception as exc:  # a defect or an unexpected backend error: report, do not vanish
            log.exception("[%s] capture thread failed", self.plan.id)
            self.set_state(StreamState.FAILED, f"{type(exc).__name__}: {exc}"[:200])
        finally:
            self.ring.end()
            self.reader.on_frame()  # wake the scheduler so it sees the end
            if self.stats.state not in (StreamState.ENDED, StreamState.FAILED):
                self.set_state(StreamState.STOPPED, self._stop_reason)

    def _connect_loop(self) -> None:
        failures = 0
        while not self.stop_event.is_set():
            self.set_state(StreamState.CONNECTING)
            try:
                outcome, reason, stable = self._open_and_read()
            except SourceError as exc:
                self.set_state(StreamState.FAILED, str(exc))
                return
            if outcome == "stopped" or self.stop_event.is_set():
                return
            if outcome == "ended":
                if self.plan.loop and stable is not None:
                    self.reader.t_offset = self.reader.last_t + self.reader.interval
                    continue
                self.set_state(StreamState.ENDED, reason or "end of stream")
                return
            if not self.plan.kind.reconnects:
                self.set_state(StreamState.FAILED, reason)
                return
            failures = 1 if stable else failures + 1
            self._back_off(failures, reason)

    def _open_and_read(self) -> tuple[str, str, bool | None]:
        """Open, read until done, release: (outcome, reason, stable) where ``stable`` is None when no
        frame arrived, else whether frames came for at least ``_STABLE_S`` (which resets the backoff)."""
        started = time.monotonic()
        cap = self.plan.open()
        opened_at = time.monotonic()
        frames_before = self.stats.frames
        try:
            if cap is None or not cap.isOpened():
                outcome, reason = "lost", f"could not open {self.plan.display_url}"
                if self.plan.kind.finite:
                    reason += " (empty, truncated or not a video); check that the file plays, e.g. with ffprobe"
            else:
                outcome, reason = self.reader.read_until_done(cap, opened_at - started)
        finally:
            if cap is not None:
                cap.release()
        if self.stats.frames == frames_before:
            return outcome, reason, None
        return outcome, reason, time.monotonic() - opened_at >= _STABLE_S

    def _back_off(self, failures: int, reason: str) -> None:
        opts = self.plan.config.options
        delay = backoff_delay(failures, opts.backoff_initial_s, opts.backoff_max_s)
        self.stats.reconnects += 1
        self.set_state(StreamState.BACKOFF, f"{reason}; retry {failures} in {delay:.1f} s")
        self.stop_event.wait(delay)

    def _push(self, x, **where) -> bool:
        """``ring.push``, marked for the watchdog: a wait for ring space (file mode) is not a stall."""
        ring = self.ring
        if not ring.blocking:
            return ring.push(x, **where)
        self._pushing_since = time.monotonic()
        try:
            return ring.push(x, **where)
        finally:
            done = time.monotonic()
            if done - self._pushing_since > self.interval:
                self._resumed = done  # waited on the consumer: the stall window starts again
            self._pushing_since = None

    def _flowing_again(self, limit: float) -> bool:
        """Out of ``stalled`` only when frames come at a pace again, not on one stale frame."""
        a = self._arrivals
        return len(a) == a.maxlen and a[-1] - a[0] <= limit

    def _arrived(self, mono: float, note: str) -> None:
        """A frame entered the ring (capture thread): running, with ``note`` as the reason."""
        self._arrivals.append(mono)
        stats = self.stats
        if stats.state is not StreamState.RUNNING or stats.reason != note:
            # out of stalled only when frames flow again; checked and set under the state lock
            flowing = self._flowing_again(self.plan.config.options.stall_timeout_s)
            self.set_state(StreamState.RUNNING, note, only_from=() if flowing else _NOT_STALLED)

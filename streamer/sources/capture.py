"""One capture thread per source: open, read continuously, stamp, preprocess once, push into the ring.

The thread owns its capture object (opened in ``run``, released in ``finally``) and stops on an
Event. It never waits for a consumer in live mode (the ring overwrites the oldest frame); in file
mode it waits for ring space so every window is seen. The read loop itself (what gets into the
ring, segments, catch-up, decode errors, ring sizing) is :mod:`streamer.sources.readloop`.

States (published): connecting -> running <-> stalled; lost live sources go to backoff and
reconnect with capped exponential backoff plus jitter; files end with ``ended`` (or loop);
a source that cannot be opened and does not reconnect is ``failed``; ``stopped`` at shutdown.
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
from streamer.core.stats import StreamStats

log = logging.getLogger(__name__)

_STABLE_S = 10.0  # a connection that delivered frames this long resets the backoff
_MIN_FRAMES_PER_STALL = 3  # fewer frames than this within stall_timeout_s counts as a stall


class CaptureThread(threading.Thread):
    def __init__(self, plan: SourcePlan, ring: FrameRing, preprocess: Callable, stats: StreamStats, *,
                 capacity_for: Callable[[float], int], on_frame: Callable[[], None],
                 on_state: Callable[[StreamStats], None]) -> None:
        super().__init__(name=f"capture-{plan.id}", daemon=False)
        self.plan = plan
        self.ring = ring
        self.stats = stats
        self.stop_event = threading.Event()
        self.reader = FrameReader(plan, ring, preprocess, stats, capacity_for=capacity_for, on_frame=on_frame,
                                  arrived=self._arrived, stop=self.stop_event)
        self.on_state = on_state
        self._announced = False  # the first state is always announced
        self._watch: deque[tuple[float, int]] = deque()  # stall watchdog samples (main thread)
        self._arrivals: deque[float] = deque(maxlen=_MIN_FRAMES_PER_STALL)  # capture thread only

    @property
    def interval(self) -> float:
        """Seconds between frames on the sampling clock: the source's measured (or declared) frame rate.
        Events and the annotated video read it (streamer/ops/features.py)."""
        return self.reader.interval

    # ---- control ------------------------------------------------------------------------------
    def stop(self) -> None:
        self.stop_event.set()

    def join_or_warn(self, timeout: float) -> None:
        self.join(timeout)
        if self.is_alive():
            log.warning("[%s] capture thread still alive %.1f s after stop (blocked in the capture backend)",
                        self.plan.id, timeout)

    def set_state(self, state: str, reason: str = "") -> None:
        reason = redact(reason)  # exception texts may carry the URL (S6)
        if self._announced and self.stats.state == state and self.stats.reason == reason:
            return
        self._announced = True
        self.stats.state, self.stats.reason, self.stats.state_since = state, reason, time.time()
        level = logging.WARNING if state in ("stalled", "backoff", "failed") else logging.INFO
        log.log(level, "[%s] %s%s", self.plan.id, state, f": {reason}" if reason else "")
        self.on_state(self.stats)

    def check_stall(self, now: float) -> None:
        """Watchdog (called from the main thread): running, but no frame, or fewer than
        ``_MIN_FRAMES_PER_STALL`` frames, for stall_timeout_s -> stalled (R2).

        The count matters: a frozen RTSP server makes OpenCV hand back a stale buffered frame after
        each read timeout, so "no frame at all" alone would never fire. The capture thread leaves
        ``stalled`` once that many frames arrive within one stall timeout again.
        """
        limit = self.plan.config.options.stall_timeout_s
        samples = self._watch  # (monotonic time, frames so far), written by this (main) thread only
        samples.append((now, self.stats.frames))
        while len(samples) > 1 and samples[1][0] <= now - limit:
            samples.popleft()
        if self.stats.state != "running":
            return
        if now - self.stats.last_frame_mono > limit:
            self.set_state("stalled", f"no frame for {limit:g} s")
        elif samples[0][0] <= now - limit and self.stats.frames - samples[0][1] < _MIN_FRAMES_PER_STALL:
            self.set_state("stalled", f"fewer than {_MIN_FRAMES_PER_STALL} frames in {limit:g} s")

    # ---- the thread ---------------------------------------------------------------------------
    def run(self) -> None:
        try:
            self._connect_loop()
        except Exception as exc:  # a defect or an unexpected backend error: report, do not vanish
            log.exception("[%s] capture thread failed", self.plan.id)
            self.set_state("failed", f"{type(exc).__name__}: {exc}"[:200])
        finally:
            self.ring.end()
            self.reader.on_frame()  # wake the scheduler so it sees the end
            if self.stats.state not in ("ended", "failed"):
                self.set_state("stopped")

    def _connect_loop(self) -> None:
        failures = 0
        while not self.stop_event.is_set():
            self.set_state("connecting")
            try:
                outcome, reason, stable = self._open_and_read()
            except SourceError as exc:
                self.set_state("failed", str(exc))
                return
            if outcome == "stopped" or self.stop_event.is_set():
                return
            if outcome == "ended":
                if self.plan.loop and stable is not None:
                    self.reader.t_offset = self.reader.last_t + self.reader.interval
                    continue
                self.set_state("ended", reason or "end of stream")
                return
            if not self.plan.kind.reconnects:
                self.set_state("failed", reason)
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
        self.set_state("backoff", f"{reason}; retry {failures} in {delay:.1f} s")
        self.stop_event.wait(delay)

    def _flowing_again(self, limit: float) -> bool:
        """Out of ``stalled`` only when frames come at a pace again, not on one stale frame."""
        a = self._arrivals
        return len(a) == a.maxlen and a[-1] - a[0] <= limit

    def _arrived(self, mono: float, note: str) -> None:
        """A frame entered the ring (capture thread): running, with ``note`` as the reason."""
        self._arrivals.append(mono)
        stats = self.stats
        if stats.state != "running" or stats.reason != note:
            if stats.state != "stalled" or self._flowing_again(self.plan.config.options.stall_timeout_s):
                self.set_state("running", note)

"""One capture thread per source: open, read continuously, stamp, preprocess once, push into the ring.

The thread owns its capture object (opened in ``run``, released in ``finally``) and stops on an
Event. It never waits for a consumer in live mode (the ring overwrites the oldest frame); in file
mode it waits for ring space so every window is seen. A failed read never inserts a frame; a pause
longer than ``max_gap_intervals`` frame intervals starts a new segment, and windows never span two.

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
import math
import random
import threading
import time
from collections import deque
from typing import Callable

from model.errors import SourceError
from streamer.redact import redact
from streamer.core.ring import FrameRing, reserve
from streamer.sources.table import SourcePlan
from streamer.core.stats import StreamState, StreamStats

log = logging.getLogger(__name__)

_CAP_PROP_POS_MSEC = 0
_CAP_PROP_FPS = 5
_MAX_DECODE_ERRORS_IN_A_ROW = 50
_STABLE_S = 10.0  # a connection that delivered frames this long resets the backoff
_MIN_FRAMES_PER_STALL = 3  # fewer frames than this within stall_timeout_s counts as a stall
_NOT_STALLED = tuple(s for s in StreamState if s is not StreamState.STALLED)


def backoff_delay(failures: int, initial: float, cap: float, rng: random.Random = random) -> float:
    """Capped exponential backoff with jitter: uniform in [d/2, d], d = min(cap, initial * 2**(failures-1))."""
    d = min(cap, initial * (2.0 ** max(0, failures - 1)))
    return rng.uniform(d / 2.0, d)


def nominal_fps(reported: float, hint: float) -> float:
    """The source's frame rate if plausible, else the configured hint (some streams report 0 or 90000)."""
    return reported if 0.5 <= reported <= 240.0 else hint


class CaptureThread(threading.Thread):
    def __init__(self, plan: SourcePlan, ring: FrameRing, preprocess: Callable, stats: StreamStats, *,
                 capacity_for: Callable[[float], int], on_frame: Callable[[], None],
                 on_state: Callable[[StreamStats], None]) -> None:
        super().__init__(name=f"capture-{plan.id}", daemon=False)
        self.plan = plan
        self.ring = ring
        self.preprocess = preprocess
        self.stats = stats
        self.capacity_for = capacity_for
        self.on_frame = on_frame
        self.on_state = on_state
        self.stop_event = threading.Event()
        self.interval = 1.0 / plan.config.options.fps_hint  # nominal seconds between frames
        self._frame_no = -1
        self._segment = 0
        self._last_t = -math.inf
        self._rate = TokenBucket(plan.config.options.max_fps)
        self._t_offset = 0.0  # media-time offset added per loop of a file
        self._shape: tuple[int, int] | None = None  # (H, W) of the last frame read
        self._note = ""  # reason shown while running (a resolution change, R8)
        self._watch: deque[tuple[float, int]] = deque()  # stall watchdog samples (main thread)
        self._arrivals: deque[float] = deque(maxlen=_MIN_FRAMES_PER_STALL)  # capture thread only
        self._pushing_since: float | None = None  # set while a push may wait for ring space (file mode)
        self._resumed = 0.0  # monotonic end of the last wait for ring space that took longer than a frame
        self._reopen = threading.Event()  # set by the watchdog: drop the connection and reconnect
        self._stop_reason = ""  # the reason the final ``stopped`` state carries

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
            self.set_state("failed", f"{type(exc).__name__}: {exc}"[:200])
        finally:
            self.ring.end()
            self.on_frame()  # wake the scheduler so it sees the end
            if self.stats.state not in (StreamState.ENDED, StreamState.FAILED):
                self.set_state(StreamState.STOPPED, self._stop_reason)

    def _connect_loop(self) -> None:
        opts = self.plan.config.options
        failures = 0
        while not self.stop_event.is_set():
            self.set_state("connecting")
            try:
                cap = self.plan.open()
            except SourceError as exc:
                self.set_state("failed", str(exc))
                return
            opened_at = time.monotonic()
            frames_before = self.stats.frames
            try:
                if cap is None or not cap.isOpened():
                    outcome, reason = "lost", f"could not open {self.plan.display_url}"
                    if self.plan.kind.finite:
                        reason += " (empty, truncated or not a video); check that the file plays, e.g. with ffprobe"
                else:
                    outcome, reason = self._read_frames(cap)
            finally:
                if cap is not None:
                    cap.release()
            if outcome == "stopped" or self.stop_event.is_set():
                return
            if outcome == "ended":
                if self.plan.loop and self.stats.frames > frames_before:
                    self._t_offset = self._last_t + self.interval
                    continue
                self.set_state("ended", "end of stream")
                return
            if not self.plan.kind.reconnects:
                self.set_state("failed", reason)
                return
            stable = self.stats.frames > frames_before and time.monotonic() - opened_at >= _STABLE_S
            failures = 1 if stable else failures + 1
            delay = backoff_delay(failures, opts.backoff_initial_s, opts.backoff_max_s)
            self.stats.reconnects += 1
            self.set_state("backoff", f"{reason}; retry {failures} in {delay:.1f} s")
            self.stop_event.wait(delay)

    def _push(self, ring: FrameRing, x, **where) -> bool:
        """``ring.push``, marked for the watchdog: a wait for ring space (file mode) is not a stall."""
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

    def _resolution_changed(self, shape: tuple[int, int]) -> None:
        """A new frame size (R8): frames are still resized to the model input; a new segment starts."""
        if self._shape is not None:
            (h0, w0), (h, w) = self._shape, shape
            self._note = f"resolution changed to {w}x{h} (was {w0}x{h0}); frames are resized to the model input"
            log.warning("[%s] %s", self.plan.id, self._note)
            self._segment += 1  # a window never mixes the two sizes
        self._shape = shape

    def _read_frames(self, cap) -> tuple[str, str]:
        """Read until the source ends, is lost, or we are stopped. Returns (outcome, reason)."""
        plan, opts, ring, stats = self.plan, self.plan.config.options, self.ring, self.stats
        fps = nominal_fps(float(cap.get(_CAP_PROP_FPS) or 0.0), opts.fps_hint)
        self.interval = ring.interval = 1.0 / fps
        reserve(ring, self.capacity_for(fps))
        max_gap = opts.max_gap_intervals * self.interval
        stop = self.stop_event
        live, pace = plan.live, plan.pace
        paced_start, paced_n = time.monotonic(), 0
        errors_in_a_row = 0
        frames_this_open = 0
        self._reopen.clear()
        while not stop.is_set():
            if self._reopen.is_set():  # the watchdog found the source stalled (options.stall_reopen)
                return "lost", "stalled; reopening"
            if pace:
                due = paced_start + paced_n * self.interval
                now = time.monotonic()
                if now < due:
                    if stop.wait(due - now):
                        return "stopped", ""
                elif now - due > 2 * self.interval:  # fell behind: restart the clock, never burst
                    paced_start, paced_n = now, 0
                paced_n += 1
            try:
                ok, frame = cap.read()
            except Exception as exc:  # cv2.error from a corrupt packet (R7)
                stats.decode_errors += 1
                errors_in_a_row += 1
                if errors_in_a_row >= _MAX_DECODE_ERRORS_IN_A_ROW:
                    return ("ended" if plan.kind.finite else "lost"), f"{errors_in_a_row} decode errors in a row: {exc}"
                continue
            mono, wall = time.monotonic(), time.time()
            if not ok:
                return ("ended", "") if plan.kind.finite else ("lost", "read failed or timed out")
            if frame is None or getattr(frame, "ndim", 0) != 3 or frame.shape[2] != 3:
                stats.decode_errors += 1
                errors_in_a_row += 1
                continue
            errors_in_a_row = 0
            self._frame_no += 1
            if frame.shape[:2] != self._shape:
                self._resolution_changed(frame.shape[:2])
            frames_this_open += 1
            if frame.shape[0] * frame.shape[1] > opts.max_pixels:
                stats.drop("oversize")
                continue
            if live and not self._rate.take(mono):  # a flood: at most max_fps on average (S9)
                stats.drop("rate")
                continue
            pts_ms = cap.get(_CAP_PROP_POS_MSEC)
            pts = pts_ms / 1000.0 if pts_ms is not None and pts_ms >= 0 else math.nan
            if live:
                t = mono
            else:
                # media time: the source's PTS while it increases, else one nominal interval on
                t = pts + self._t_offset if math.isfinite(pts) else -math.inf
                if frames_this_open > 1 and t <= self._last_t:
                    t = self._last_t + self.interval
                elif frames_this_open == 1 and not math.isfinite(t):
                    t = self._t_offset
            if t - self._last_t > max_gap and self._last_t != -math.inf:
                self._segment += 1
            self._last_t = t
            try:
                x = self.preprocess(frame)
            except Exception:
                log.exception("[%s] preprocessing frame %d failed", plan.id, self._frame_no)
                stats.drop("preprocess_error")
                continue
            if not self._push(ring, x, t=t, mono=mono, wall=wall, pts=pts, frame_no=self._frame_no,
                              segment=self._segment, label=getattr(cap, "label", None), stop=stop):
                return "stopped", ""
            stats.frame(mono)
            self.on_frame()
            self._arrivals.append(mono)
            if stats.state is not StreamState.RUNNING or stats.reason != self._note:
                # out of stalled only when frames flow again; checked and set under the state lock
                self.set_state(StreamState.RUNNING, self._note, only_from=() if self._flowing_again(
                    opts.stall_timeout_s) else _NOT_STALLED)
        return "stopped", ""


class TokenBucket:
    """At most ``rate`` events a second on average, with bursts of up to one second's worth: a
    camera that delivers a buffered batch at once keeps its frames; a source flooding faster than
    ``rate`` loses the excess."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate)
        self.tokens = self.capacity
        self.last: float | None = None

    def take(self, now: float) -> bool:
        if self.last is not None:
            self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True

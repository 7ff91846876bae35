"""The read loop of one source: read, judge, stamp, preprocess once, push into the ring.

:class:`FrameReader` keeps what lasts across (re)connects of one source (frame numbers, segments,
the sampling clock, the measured frame rate) and :meth:`FrameReader.read_until_done` runs one open
capture until it ends, is lost, or the thread is stopped. The capture thread (capture.py) owns the
capture object, the states and the reconnects; this module never opens or releases anything.

Properties it keeps (the R-numbers the code tags):
- R6 no fake frames: a failed read never inserts a frame. Windows never span two *segments*; a new
  one starts after a pause longer than ``max_gap_intervals`` frame intervals, at every reconnect,
  and at a resolution change.
- Catch-up: a live source's first frames after a (re)connect are what queued while FFmpeg probed
  the stream (about a second for RTSP here: ~22 frames in ~35 ms). They are stale and their arrival
  times are bunched, so windows built on them had uneven frames (``[77, 101, 105, ...]``). They are
  dropped (``drops.catchup``) until reads wait for the source again.
- R7/R9: a finite source's failed read is the end only where the capture says it is at the end
  (:meth:`streamer.sources.avfile.AvFileCapture.at_end`); before that it is a decode error, counted,
  and reading goes on, up to ``_MAX_DECODE_ERRORS_IN_A_ROW``.
- The ring is sized for the frame rate measured on the sampling clock, not the one the stream
  declares, and grown when it changes; status says so when a window cannot fit (issue 19 item 4).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Callable

from streamer.core.ring import FrameRing
from streamer.core.stats import StreamStats
from streamer.sources.pacing import CaptureClock, RateMeter, TokenBucket, nominal_fps
from streamer.sources.props import Prop
from streamer.sources.table import SourcePlan

log = logging.getLogger(__name__)

_MAX_DECODE_ERRORS_IN_A_ROW = 50
_CATCHUP_READ = 0.2  # a read that returns within this many frame intervals handed out a buffered frame
_LIVE_READS = 2  # catch-up ends after this many reads in a row that waited for the source
_RATE_CHANGE = 0.2  # a measured frame rate this far (relative) from the current one re-sizes the ring
_MIN_GAP_S = 0.1  # a pause shorter than this never splits a segment, however fast the source
_LOGGED_DECODE_ERRORS = 3  # decode errors logged at WARNING per stream; the rest at DEBUG (all counted)

Outcome = tuple[str, str]  #: ("ended" | "lost" | "stopped", reason)


@dataclass
class _Link:
    """One open capture: what its read loop keeps between frames."""

    cap: object
    catching_up: bool  #: live: dropping the burst that queued while the capture opened
    catchup_limit_s: float  #: catch-up ends after this long at the latest
    pace_interval: float  #: paced sources: seconds between frames (the declared rate, never the measured)
    frames: int = 0  #: frames of this link that got past catch-up
    failures: int = 0  #: failed reads since the last good frame
    waited: int = 0  #: reads in a row that waited for the source
    first_mono: float = math.nan
    paced_start: float = 0.0
    paced_n: int = 0
    first_frame: bool = True  #: the next frame starts this link's segment
    clock: CaptureClock = field(default_factory=CaptureClock)  #: live: capture times from the source's timestamps


class FrameReader:
    def __init__(self, plan: SourcePlan, ring: FrameRing, preprocess: Callable, stats: StreamStats, *,
                 capacity_for: Callable[[float], int], on_frame: Callable[[], None],
                 arrived: Callable[[float, str], None], stop, reopen=None, push: Callable | None = None) -> None:
        """``stop``: ends the loop; ``reopen`` (an Event): ends this link as lost, to reconnect; ``push``:
        how a frame goes into the ring (``ring.push`` unless the owner wraps it)."""
        self.plan, self.ring, self.preprocess, self.stats = plan, ring, preprocess, stats
        self.capacity_for, self.on_frame, self.arrived, self.stop = capacity_for, on_frame, arrived, stop
        self.reopen, self.push = reopen, push or ring.push
        self.interval = 1.0 / plan.config.options.fps_hint  # seconds between frames on the sampling clock
        self.frame_no = -1
        self.segment = 0
        self.last_t = -math.inf
        self.t_offset = 0.0  # media-time offset added per loop of a file
        self.notes: dict[str, str] = {}  # shown as the reason while running (resolution change, ring too small)
        self._rate = TokenBucket(plan.config.options.max_fps)
        self._meter = RateMeter()
        self._measured: float | None = None  # frames/s measured on the sampling clock
        self._shape: tuple[int, int] | None = None  # (H, W) of the last frame read
        self._logged_errors = 0

    @property
    def note(self) -> str:
        return "; ".join(self.notes.values())

    # ---- one open capture ---------------------------------------------------------------------
    def read_until_done(self, cap, opened_s: float) -> Outcome:
        """Read ``cap`` until the source ends, is lost, or we are stopped."""
        link = self._begin(cap, opened_s)
        if self.reopen is not None:
            self.reopen.clear()
        while not self.stop.is_set():
            if self.reopen is not None and self.reopen.is_set():  # the watchdog found it stalled (stall_reopen)
                return "lost", "stalled; reopening"
            if self.plan.pace and not self._wait_turn(link):
                break
            outcome = self._read_one(link)
            if outcome is not None:
                return outcome
        return "stopped", ""

    def _begin(self, cap, opened_s: float) -> _Link:
        declared = nominal_fps(float(cap.get(Prop.FPS) or 0.0), self.plan.config.options.fps_hint)
        self._use_rate(self._measured or declared)
        self._meter.restart()
        return _Link(cap, catching_up=self.plan.kind.catches_up, catchup_limit_s=max(0.5, opened_s),
                     pace_interval=1.0 / declared)

    def _wait_turn(self, link: _Link) -> bool:
        """Paced sources: sleep until the next frame is due; False if stopped meanwhile."""
        due = link.paced_start + link.paced_n * link.pace_interval
        now = time.monotonic()
        if now < due:
            if self.stop.wait(due - now):
                return False
        elif now - due > 2 * link.pace_interval:  # fell behind: restart the clock, never burst
            link.paced_start, link.paced_n = now, 0
        link.paced_n += 1
        return True

    def _read_one(self, link: _Link) -> Outcome | None:
        """One read: a frame into the ring, or the outcome that ends this link (None: go on)."""
        started = time.monotonic()
        try:
            ok, frame = link.cap.read()
        except Exception as exc:  # cv2.error from a corrupt packet (R7)
            return self._decode_error(link, f"{type(exc).__name__}: {exc}")
        mono, wall = time.monotonic(), time.time()
        if not ok:
            return self._failed_read(link)
        if frame is None or getattr(frame, "ndim", 0) != 3 or frame.shape[2] != 3:
            return self._decode_error(link, "the capture returned something that is not a BGR image")
        self.frame_no += 1
        if link.failures:
            log.info("[%s] decoding again at frame %d after %d failed reads", self.plan.id, self.frame_no,
                     link.failures)
            link.failures = 0
        if not self._admit(link, frame, mono, mono - started):
            return None
        t = self._clock(link, mono)
        wall -= max(0.0, mono - t) if self.plan.live else 0.0  # live: published as the capture time, not the arrival
        try:
            x = self.preprocess(frame)
        except Exception:
            log.exception("[%s] preprocessing frame %d failed", self.plan.id, self.frame_no)
            self.stats.drop("preprocess_error")
            return None
        if not self.push(x, t=t, mono=mono, wall=wall, frame_no=self.frame_no, segment=self.segment,
                              label=getattr(link.cap, "label", None), stop=self.stop):
            return "stopped", ""
        self._pushed(t, mono)
        return None

    # ---- failed reads (R7, R9) ----------------------------------------------------------------
    def _failed_read(self, link: _Link) -> Outcome | None:
        """``read()`` said no frame: a live source is lost; a file is over only if it says it is at its end."""
        if not self.plan.kind.finite:
            return "lost", "read failed or timed out"
        at_end = getattr(link.cap, "at_end", None)
        if at_end is None or at_end():
            return "ended", ""
        return self._decode_error(link, getattr(link.cap, "last_error", "") or "read failed")

    def _decode_error(self, link: _Link, why: str) -> Outcome | None:
        """Count one failed read and go on, unless too many failed in a row."""
        self.stats.decode_errors += 1
        link.failures += 1
        self._logged_errors += 1
        level = logging.WARNING if self._logged_errors <= _LOGGED_DECODE_ERRORS else logging.DEBUG
        if link.failures == 1:
            log.log(level, "[%s] a read failed after frame %d (%s); reading on (decode errors so far: %d)",
                    self.plan.id, self.frame_no, why, self.stats.decode_errors)
        if link.failures < _MAX_DECODE_ERRORS_IN_A_ROW:
            return None
        reason = f"{link.failures} reads failed in a row after frame {self.frame_no}: {why}"
        if self.plan.kind.finite:
            return "ended", f"{reason} (corrupt or truncated file)"
        return "lost", reason

    # ---- frames that get in -------------------------------------------------------------------
    def _admit(self, link: _Link, frame, mono: float, read_s: float) -> bool:
        """Catch-up, resolution change, size and rate caps: False if this frame goes no further."""
        opts, stats = self.plan.config.options, self.stats
        if link.catching_up and not self._caught_up(link, mono, read_s):
            stats.drop("catchup")
            return False
        if frame.shape[:2] != self._shape:
            self._resolution_changed(frame.shape[:2])
        link.frames += 1
        if frame.shape[0] * frame.shape[1] > opts.max_pixels:
            stats.drop("oversize")
            return False
        if self.plan.live and not self._rate.take(mono):  # a flood: at most max_fps on average (S9)
            stats.drop("rate")
            return False
        return True

    def _caught_up(self, link: _Link, mono: float, read_s: float) -> bool:
        """True once reads wait for the source (the queued burst is drained), or the burst lasted too long."""
        if math.isnan(link.first_mono):
            link.first_mono = mono
        link.waited = link.waited + 1 if read_s >= _CATCHUP_READ * self.interval else 0
        if link.waited >= _LIVE_READS or mono - link.first_mono > link.catchup_limit_s:
            link.catching_up = False
        return not link.catching_up

    def _resolution_changed(self, shape: tuple[int, int]) -> None:
        """A new frame size (R8): frames are still resized to the model input; a new segment starts."""
        if self._shape is not None:
            (h0, w0), (h, w) = self._shape, shape
            self.notes["resolution"] = (f"resolution changed to {w}x{h} (was {w0}x{h0}); frames are resized "
                                        "to the model input")
            log.warning("[%s] %s", self.plan.id, self.notes["resolution"])
            self.segment += 1  # a window never mixes the two sizes
        self._shape = shape

    def _clock(self, link: _Link, mono: float) -> float:
        """The frame's time on the sampling clock; starts a segment at a gap or a reconnect.

        Live, self-paced: the capture time (:class:`CaptureClock`: the source's timestamps, so a late
        read does not bunch frames); live, paced by us: the arrival time; files: media time (the
        source's timestamps while they increase, else one interval on)."""
        pts_ms = link.cap.get(Prop.POS_MSEC) if not self.plan.pace else None
        if self.plan.pace:
            t = mono
        elif self.plan.live:
            t = link.clock.time(mono, pts_ms / 1000.0 if pts_ms is not None and pts_ms > 0 else math.nan)
        else:
            t = pts_ms / 1000.0 + self.t_offset if pts_ms is not None and pts_ms >= 0 else -math.inf
        if link.frames > 1 and t <= self.last_t:
            t = self.last_t + self.interval
        elif link.frames == 1 and not math.isfinite(t):
            t = self.t_offset
        reconnected = link.first_frame and self.plan.kind.reconnects and self.ring.head > 0
        gap = t - self.last_t > max(self.plan.config.options.max_gap_intervals * self.interval, _MIN_GAP_S)
        if reconnected or (gap and self.last_t != -math.inf):
            self.segment += 1
            self._meter.restart()
        link.first_frame = False
        self.last_t = t
        return t

    def _pushed(self, t: float, mono: float) -> None:
        self.stats.frame(mono)
        self.on_frame()
        rate = self._meter.add(t)
        if rate is not None and abs(rate * self.interval - 1.0) > _RATE_CHANGE:
            log.info("[%s] frame rate measured %.1f fps (was %.1f); ring and gap rule follow it",
                     self.plan.id, rate, 1.0 / self.interval)
            self._measured = rate
            self._use_rate(rate)
        self.arrived(mono, self.note)

    # ---- the ring follows the frame rate ------------------------------------------------------
    def _use_rate(self, fps: float) -> None:
        """Frames come ``fps`` a second: the gap rule and the ring follow (R10: never past what max_fps needs)."""
        self.interval = self.ring.interval = 1.0 / fps
        opts = self.plan.config.options
        needed = self.capacity_for(fps)
        if opts.ring_capacity is None:
            self.ring.grow(min(needed, self.capacity_for(opts.max_fps)))
        cap = self.ring.capacity
        if needed > cap:
            self.notes["ring"] = (f"the ring holds {cap} frames ({cap / fps:.2f} s at {fps:.0f} fps), fewer than the "
                                  f"{needed} a window and its hop need: windows are lost; "
                                  + (f"set sources[{self.plan.id}].options.ring_capacity to {needed} or more"
                                     if opts.ring_capacity else "lower the source's frame rate or max_fps"))
            log.warning("[%s] %s", self.plan.id, self.notes["ring"])
        else:
            self.notes.pop("ring", None)

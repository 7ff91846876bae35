"""Rates, delays and clocks of a capture thread: backoff between reconnects, the flood cap, the
measured frame rate, the capture time of live frames."""

from __future__ import annotations

import math
import random


def backoff_delay(failures: int, initial: float, cap: float, rng: random.Random = random) -> float:
    """Capped exponential backoff with jitter: uniform in [d/2, d], d = min(cap, initial * 2**(failures-1))."""
    d = min(cap, initial * (2.0 ** min(max(0, failures - 1), 60)))  # 2**1023 overflows after a long outage
    return rng.uniform(d / 2.0, d)


def nominal_fps(reported: float, hint: float) -> float:
    """The source's frame rate if plausible, else the configured hint (some streams report 0 or 90000)."""
    return reported if 0.5 <= reported <= 240.0 else hint


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


class RateMeter:
    """Frames per second of a sampling clock, measured over spans of at least ``span_s`` seconds.

    The clock is the one windows are cut by (arrival time for live sources, media time for files),
    so the rate is the one the ring must be sized for, whatever the stream declares (OpenCV reports
    25 fps for any HTTP MJPEG stream). :meth:`add` returns the new rate at the end of each span,
    else None; :meth:`restart` forgets the current span (after a gap or a reconnect).
    """

    def __init__(self, span_s: float = 1.0) -> None:
        self.span_s = span_s
        self._t0: float | None = None
        self._n = 0

    def restart(self) -> None:
        self._t0, self._n = None, 0

    def add(self, t: float) -> float | None:
        if self._t0 is None:
            self._t0, self._n = t, 0
            return None
        self._n += 1
        if t - self._t0 < self.span_s:
            return None
        rate = self._n / (t - self._t0)
        self._t0, self._n = t, 0
        return rate


class CaptureClock:
    """When live frames were captured, on the monotonic clock, from the source's own timestamps.

    Arrival times carry every delay between the camera and the capture thread: a thread kept off the
    CPU for 60 ms reads the frames it missed in a burst, and windows cut by arrival time then take
    uneven frames. A source's timestamps (RTP for RTSP, V4L2 buffer times) are spaced as the frames
    were captured. Frame i's capture time is ``pts_i + d``, ``d`` the lowest delay (arrival - pts)
    seen on this connection: ``d`` may creep up by ``drift`` seconds per second of stream (the two
    clocks drift apart) and is measured anew when timestamps stop increasing or when a frame would be
    more than ``max_delay_s`` older than its arrival (the source paused, or its clock jumped). A
    frame without an increasing timestamp (MJPEG over HTTP has none) keeps its arrival time.
    """

    def __init__(self, max_delay_s: float = 1.0, drift: float = 1e-3) -> None:
        self.max_delay_s, self.drift = max_delay_s, drift
        self._last_pts = -math.inf
        self._delay = math.inf

    def time(self, arrival: float, pts: float) -> float:
        """The capture time of a frame that arrived at ``arrival`` with timestamp ``pts`` (NaN: none)."""
        if not pts > self._last_pts:  # none, or not increasing: measure the delay anew from the next one
            self._last_pts = pts if math.isfinite(pts) else -math.inf
            self._delay = math.inf
            return arrival
        self._delay = min(arrival - pts, self._delay + self.drift * (pts - self._last_pts))
        self._last_pts = pts
        if arrival - (pts + self._delay) > self.max_delay_s:
            self._delay = arrival - pts
        return pts + self._delay

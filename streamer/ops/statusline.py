"""The live per-stream status line (on a terminal) or a periodic plain log line (otherwise)."""

from __future__ import annotations

import logging
import sys
import time

from streamer.core.stats import StatsRegistry

log = logging.getLogger(__name__)


def format_status(stats: StatsRegistry, now: float | None = None) -> str:
    parts = []
    for s in stats:
        p50 = s.latency_p50()
        drops = sum(s.snapshot()["drops"].values())
        lat = f"{p50:.0f}ms" if p50 is not None else "-"
        parts.append(f"{s.stream}: {s.state} {s.current_fps(now):.1f}fps {s.results}res p50 {lat} drops {drops}")
    return " | ".join(parts)


class StatusLine:
    """Redraws one line on a TTY every ``interval_s``; logs a plain line every ``10 * interval_s`` otherwise."""

    def __init__(self, stats: StatsRegistry, mode: str, interval_s: float, stream=None) -> None:
        self.stats = stats
        self.stream = stream or sys.stderr
        self.tty = mode == "on" or (mode == "auto" and self.stream.isatty())
        self.enabled = mode != "off"
        self.interval = interval_s if self.tty else 10.0 * interval_s
        self._next = time.monotonic() + self.interval
        self._drawn = False

    def tick(self, now: float) -> None:
        if not self.enabled or now < self._next:
            return
        self._next = now + self.interval
        line = format_status(self.stats, now)
        if self.tty:
            self.stream.write("\r\x1b[2K" + line[:300])
            self.stream.flush()
            self._drawn = True
        else:
            log.info("status %s", line)

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()

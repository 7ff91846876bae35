"""The terminal: the live per-stream status line, log lines that never run into it, and printed results.

:class:`Terminal` owns what is drawn on stderr: the status line is redrawn in place (``\\r`` and
erase-line), and every log line (through :class:`TerminalHandler`) and every printed result
(:class:`ResultPrinter`) first erases it, is written on a clean line, and then draws it again below.
Off a terminal there is no status line to erase: a plain ``status ...`` log line comes every
``10 * interval_s`` instead.
"""

from __future__ import annotations

import logging
import shutil
import sys
import threading
from collections import deque

from streamer.core.stats import StatsRegistry

log = logging.getLogger(__name__)

_ERASE = "\r\x1b[2K"


def format_status(stats: StatsRegistry, now: float | None = None) -> str:
    parts = []
    for s in stats:
        p50 = s.latency_p50()
        drops = sum(s.snapshot()["drops"].values())
        lat = f"{p50:.0f}ms" if p50 is not None else "-"
        parts.append(f"{s.stream}: {s.state} {s.current_fps(now):.1f}fps {s.results}res p50 {lat} drops {drops}")
    return " | ".join(parts)


class Terminal:
    """stderr (status line, logs) and stdout (printed results), written under one lock."""

    def __init__(self, err=None, out=None) -> None:
        self.err = err or sys.stderr
        self.out = out or sys.stdout
        self.lock = threading.RLock()
        self._line = ""  # the status line as drawn now ("" when none is)
        self.out_closed = False

    def draw(self, line: str) -> None:
        width = shutil.get_terminal_size((300, 24)).columns - 1  # one row: erase-line clears all of it
        with self.lock:
            self._line = line[:max(20, width)]
            self.err.write(_ERASE + self._line)
            self.err.flush()

    def erase(self) -> None:
        """Clear the status line, if one is drawn, so the next write starts on a clean line."""
        with self.lock:
            if self._line:
                self.err.write(_ERASE)
                self.err.flush()

    def redraw(self) -> None:
        with self.lock:
            if self._line:
                self.err.write(_ERASE + self._line)
                self.err.flush()

    def print_out(self, text: str) -> None:
        """One line on stdout, never run into the status line (nothing once stdout is closed, e.g. ``| head``)."""
        with self.lock:
            if self.out_closed:
                return
            self.erase()
            try:
                self.out.write(text + "\n")
                self.out.flush()
            except (OSError, ValueError):  # a closed pipe: the reader has gone, the run goes on
                self.out_closed = True
            self.redraw()

    def finish(self) -> None:
        """Leave the last status line on screen, followed by a newline."""
        with self.lock:
            if self._line:
                self.err.write("\n")
                self.err.flush()
                self._line = ""


class TerminalHandler(logging.StreamHandler):
    """A log handler on the terminal's stderr that erases the status line before each record."""

    def __init__(self, terminal: Terminal) -> None:
        super().__init__(terminal.err)
        self.terminal = terminal

    def emit(self, record: logging.LogRecord) -> None:
        with self.terminal.lock:
            self.terminal.erase()
            super().emit(record)
            self.terminal.redraw()


class StatusLine:
    """Redraws one line on a TTY every ``interval_s``; logs a plain line every ``10 * interval_s`` otherwise."""

    def __init__(self, stats: StatsRegistry, mode: str, interval_s: float, terminal: Terminal | None = None) -> None:
        self.stats = stats
        self.terminal = terminal or Terminal()
        self.tty = mode == "on" or (mode == "auto" and self.terminal.err.isatty())
        self.enabled = mode != "off"
        self.interval = interval_s if self.tty else 10.0 * interval_s
        self._next: float | None = None

    def tick(self, now: float) -> None:
        if not self.enabled:
            return
        if self._next is None:
            self._next = now + self.interval
        if now < self._next:
            return
        self._next = now + self.interval
        line = format_status(self.stats, now)
        if self.tty:
            self.terminal.draw(line)
        else:
            log.info("status %s", line)

    def close(self) -> None:
        self.terminal.finish()


class ResultPrinter:
    """``--print``: one line per result on stdout, formatted as the subscriber CLI formats it.

    The publisher thread hands results over (:meth:`on_sent`, never blocking: a bounded queue that
    drops the oldest line and counts it); the main thread prints them (:meth:`flush`, every 0.1 s
    and once at the end), so a slow terminal or a full pipe never holds up publishing (R27).
    """

    def __init__(self, terminal: Terminal, max_pending: int = 1000) -> None:
        from streamer.subscribe import format_result

        self.terminal = terminal
        self._format = format_result
        self._pending: deque[dict] = deque(maxlen=max_pending)
        self.dropped = 0

    def on_sent(self, topic: str, payload: dict) -> None:
        if payload.get("type") != "result":
            return
        if len(self._pending) == self._pending.maxlen:
            self.dropped += 1
        self._pending.append(payload)

    def flush(self) -> None:
        while self._pending:
            self.terminal.print_out(self._format(self._pending.popleft()))

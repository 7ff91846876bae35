"""Every long-lived thread of the pipeline watched in one place, and all of them stopped against one deadline.

The pipeline registers each long-lived thread with a :class:`Supervisor`; the main thread calls
:meth:`Supervisor.check` every 0.1 s (it wakes that often anyway, for the stall watchdog and the
status line). A thread that ends while the pipeline runs is handled by its policy:

| thread | policy | when it dies |
|---|---|---|
| ``inference`` | fatal | results would stop for good (its normal end, when every finite source has ended or ``max_windows`` is reached, is no failure) |
| ``publisher`` | fatal | nothing could go out; this one cause cannot be published (the thread owned the socket), so it is in the log and the ``error:`` line |
| ``annotate`` | fatal | a restart would start the video file again and lose what it wrote |
| ``snapshot`` | restart | it holds no state (the cache is fed in the publisher thread): bound again on the same endpoint |
| ``metrics`` | restart | it holds no state (counters are read at scrape time): served again on the same port |
| ``clips``, ``alert-*``, ``console`` | side | side outputs (R27): each catches its own failure, logs it and shows it as a status ``warnings`` line; the pipeline carries on without that output |
| ``capture-<id>`` | stream | its ``run`` turns any failure into the stream's state (``failed``, or ``backoff`` and a reconnect for live sources) and other streams go on; the pipeline ends with exit 1 once every stream has ended and one of them failed |

Fatal: the cause is logged once (with its traceback), the pipeline stops, every stream's final
``stopped`` status carries it as ``reason``, and the process exits 1. Restart: logged; a thread that
needs more than ``max_restarts`` restarts within ``restart_window_s`` is treated as fatal.

Shutdown: every thread is told to stop at once, then joined against one :class:`Deadline`, so the
waits never add up; a thread still alive at the deadline (blocked in OpenCV's open or read, or in a
forward pass that cannot be interrupted) is named with what it is doing and left behind, and the CLI
exits without it (``run_stream.exit_now``).
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Iterable

log = logging.getLogger(__name__)


def join_or_warn(thread: threading.Thread, timeout: float) -> bool:
    """Join ``thread`` for at most ``timeout`` seconds (one that never started counts as ended).

    A thread still alive then is named in one warning, since shutdown goes on without it; returns
    whether it ended.
    """
    if thread.ident is None:
        return True
    thread.join(timeout)
    if thread.is_alive():
        log.warning("%s thread still alive %.1f s after stop", thread.name, timeout)
        return False
    return True


#: how much lower than the pipeline's own threads the side outputs run (clips, the console, its previews)
SIDE_NICE = 10


def lower_priority(increment: int = SIDE_NICE) -> None:
    """Run the calling thread at a lower CPU priority (Linux: its own nice value) so that, on a busy
    machine, capture, inference and the publisher are served first and a side output (R27) waits;
    elsewhere, or where the system refuses, nothing changes."""
    import os

    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + increment)
    except (AttributeError, OSError) as exc:
        log.debug("%s keeps its priority: %s", threading.current_thread().name, exc)


class IdleWhileKeepingUp:
    """The calling thread's CPU class for a side output that may fall behind: Linux's idle class
    (``SCHED_IDLE``) while it keeps up, nice +``SIDE_NICE`` while it is behind.

    Why the idle class: at nice +10 a busy side thread still makes its core look busy, so the capture
    threads waking up are placed on the other core, the one running the forward pass, which then runs
    slower. A core running only idle-class threads counts as free, so they go there and the side
    thread gives way at once. Measured inside one run, 8 streams recording clips on 2 cores, forward
    p50 with the clip writer at nice +10 / in the idle class / clips off: 24.3 / 19.5 / 19.3 ms in a
    first comparison; in two runs of benchmarks/bench_console.py on a busy machine 20.7 / 19.0 / 14.2
    and 29.0 / 27.4 / 15.6 ms.
    But an idle-class thread gets almost nothing while every core is busy (a saturated model), so
    when its owner says it is behind, it goes back to the normal class at nice +10, and to the idle
    class again once it has caught up. Call it from the thread itself; elsewhere than Linux, or where
    the system refuses, the thread keeps what it has.
    """

    def __init__(self) -> None:
        self.idle = False
        self.switches = 0
        self.final = False  # set by finish: normal class from then on, whatever behind() is told

    def start(self) -> None:
        """Nice +SIDE_NICE (kept in the normal class), then the idle class if the thread may leave it again."""
        lower_priority()
        if self._may_leave_idle():
            self._set(idle=True)

    @staticmethod
    def _may_leave_idle() -> bool:
        """Linux lets a thread leave the idle class only with CAP_SYS_NICE (taken as root here) or when its
        nice value is within RLIMIT_NICE (by default it is not): without that it would stay idle for good."""
        import os
        import resource

        try:
            nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
            soft = resource.getrlimit(resource.RLIMIT_NICE)[0]
        except (AttributeError, OSError):
            return False
        return os.geteuid() == 0 or soft == resource.RLIM_INFINITY or 20 - soft <= nice

    def behind(self, behind: bool) -> None:
        """Say whether the thread is behind; switches class when that changed (not after :meth:`finish`)."""
        if behind == self.idle and not self.final:  # idle and behind: to normal; normal and caught up: to idle
            self._set(idle=not behind)

    def finish(self) -> None:
        """The owner is stopping: its last work runs in the normal class, for good. In the idle class it
        would wait for every other busy process on the machine, and the stop would leave it undone."""
        if self.idle:
            self._set(idle=False)
        self.final = True

    def _set(self, idle: bool) -> bool:
        import os

        tid = threading.get_native_id()
        try:
            if idle:
                os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
            else:  # its nice value, set by start, holds again
                os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))
        except (AttributeError, OSError) as exc:
            log.debug("%s stays in its scheduling class: %s", threading.current_thread().name, exc)
            return False
        self.idle = idle
        self.switches += 1
        return True


class Policy(enum.Enum):
    FATAL = "fatal"  #: the pipeline stops with exit status 1
    RESTART = "restart"  #: the component is started again (rate-limited, then fatal)
    STREAM = "stream"  #: a capture thread: its failures are the stream's state, never the pipeline's
    SIDE = "side"  #: a side output (clips, alerts, console): its failures are status warnings, never the pipeline's


@dataclass
class Watched:
    """One long-lived thread as the supervisor sees it (the callables read the component's current thread)."""

    name: str
    thread: Callable[[], threading.Thread | None]
    failure: Callable[[], BaseException | None]  #: what ended the thread, None if it returned normally
    policy: Policy
    restart: Callable[[], None] | None = None  #: Policy.RESTART: start the component again
    may_end: bool = False  #: ends by itself without a failure (the inference thread at the end of the input)
    doing: Callable[[], str] = lambda: ""  #: what it may be blocked in, named when shutdown leaves it behind
    restarts: deque = field(default_factory=deque)  #: monotonic times of its restarts


def describe(exc: BaseException) -> str:
    """``Type: message`` on one line, bounded."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= 300 else text[:297] + "..."


class Deadline:
    """One point in time that every join of a shutdown waits against."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.at = clock() + seconds

    def left(self, reserve: float = 0.0) -> float:
        """Seconds until the deadline, less ``reserve`` (time kept for the steps after this one); >= 0."""
        return max(0.0, self.at - reserve - self._clock())


class Supervisor:
    def __init__(self, *, max_restarts: int = 3, restart_window_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_restarts = max_restarts
        self.restart_window_s = restart_window_s
        self._clock = clock
        self._watched: dict[str, Watched] = {}
        self._watching = True
        self._reported: set[int] = set()  # id() of failures already logged

    def watch(self, watched: Watched) -> None:
        # copy-on-write: streams are added and removed by the control thread while the main thread checks
        self._watched = {**self._watched, watched.name: watched}

    def forget(self, name: str) -> None:
        """Stop watching a thread that was ended on purpose (a removed stream's capture thread)."""
        watched = dict(self._watched)
        watched.pop(name, None)
        self._watched = watched

    def names(self) -> list[str]:
        return list(self._watched)

    def stop_watching(self) -> None:
        """From here on threads end because they were told to: no more checks, no restarts."""
        self._watching = False

    # ---- while running (main thread) -------------------------------------------------------------
    def check(self) -> str | None:
        """Restart what may be restarted; return the cause if a thread died fatally (logged here, once)."""
        if not self._watching:
            return None
        for w in list(self._watched.values()):
            if w.policy in (Policy.STREAM, Policy.SIDE):
                continue
            thread = w.thread()
            if thread is None or thread.ident is None or thread.is_alive():
                continue
            exc = w.failure()
            if exc is None and w.may_end:
                continue
            cause = f"{w.name} thread died: {describe(exc)}" if exc is not None else f"{w.name} thread ended unexpectedly"
            self._reported.add(id(exc))
            if w.policy is Policy.RESTART:
                cause = self._restart(w, cause, exc)
                if cause is None:
                    continue
            else:
                log.error("%s; stopping the pipeline", cause, exc_info=exc)
            self._watching = False
            return cause
        return None

    def _restart(self, w: Watched, cause: str, exc: BaseException | None) -> str | None:
        """Start ``w`` again; None when that worked, else the (logged) fatal cause."""
        now = self._clock()
        while w.restarts and w.restarts[0] < now - self.restart_window_s:
            w.restarts.popleft()
        if len(w.restarts) >= self.max_restarts:
            cause = f"{cause} ({len(w.restarts)} restarts in {self.restart_window_s:g} s already)"
            log.error("%s; stopping the pipeline", cause, exc_info=exc)
            return cause
        w.restarts.append(now)
        log.error("%s; restarting it (restart %d)", cause, len(w.restarts), exc_info=exc)
        try:
            w.restart()
        except Exception as again:  # e.g. the address cannot be bound again
            cause = f"{cause}; restarting it failed: {describe(again)}"
            log.error("%s; stopping the pipeline", cause)
            return cause
        log.info("%s restarted", w.name)
        return None

    # ---- shutdown --------------------------------------------------------------------------------
    def join(self, names: Iterable[str], deadline: Deadline, reserve: float = 0.0) -> None:
        """Join the named threads, all against ``deadline`` (less ``reserve``)."""
        for name in names:
            thread = self._watched[name].thread()
            if thread is not None and thread.ident is not None:
                thread.join(deadline.left(reserve))

    def report_late(self) -> str | None:
        """After the joins: log (once) a failure no check saw, e.g. the annotator failing while it
        finished its file; returns the first such cause."""
        first = None
        for w in self._watched.values():
            exc = w.failure()
            if exc is None or id(exc) in self._reported:
                continue
            self._reported.add(id(exc))
            cause = f"{w.name} thread died: {describe(exc)}"
            log.error("%s", cause, exc_info=exc)
            first = first or cause
        return first

    def left_behind(self) -> list[str]:
        """``name (what it is doing)`` of every watched thread still alive."""
        out = []
        for w in self._watched.values():
            thread = w.thread()
            if thread is not None and thread.is_alive():
                doing = w.doing()
                out.append(f"{w.name} ({doing})" if doing else w.name)
        return out

    def alive(self, name: str) -> bool:
        thread = self._watched[name].thread() if name in self._watched else None
        return thread is not None and thread.is_alive()


def restarted(server, attempts: int = 5):
    """``server.again()`` started on the endpoint ``server`` had bound, the new server returned; ZeroMQ
    releases the old endpoint asynchronously, so a bind that finds it still taken is tried again a few
    times (the snapshot and control sockets; Policy.RESTART)."""
    from model.errors import PublisherError

    for attempt in range(1, attempts):
        new = server.again()
        try:
            new.start_and_wait()
            return new
        except PublisherError:
            time.sleep(0.1 * attempt)
    new = server.again()
    new.start_and_wait()  # the last try: its PublisherError goes to the supervisor
    return new

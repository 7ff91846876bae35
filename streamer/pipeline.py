"""Build the whole pipeline from an AppConfig, run it until told to stop, and shut it down once.

Start order (a mistake fails before the slow parts, and nothing listens before the model is in):
plan sources (config errors) -> check every listening address (all clashes in one error,
streamer/endpoints.py) -> load the model and build the scheduler and runner (a bad checkpoint
fails before any camera opens, R22) -> ``started()`` -> bind the publisher -> snapshot, metrics,
annotator -> the start-up streams (state file written, rings, capture threads) -> inference ->
the control socket -> ``READY=1`` to systemd. Until ``started()`` nothing is bound and no thread
runs, so the CLI may abort that phase at once on a signal (run_stream.py); after it, ``stop`` is
checked before every bind.

The set of streams is dynamic (streamer/streams.py): the control socket (streamer/control/) and
SIGHUP add, remove and replace streams while the rest run on.

While it runs, the main thread only waits on ``stop`` (so SIGINT/SIGTERM act at once, R19) and,
every 0.1 s, runs the stall watchdog, a reload after SIGHUP, systemd's watchdog ping, the status
line, the ``--print`` output and the supervisor (streamer/supervisor.py: every long-lived thread is
watched; a dead one stops the pipeline with exit 1, or is restarted where that is safe).

Shutdown, written once in one ``finally``: control requests are refused from its start (and still
answered); every thread is told to stop, then joined against one deadline (:data:`SHUTDOWN_S` after
a stop request or a failure; :data:`DRAIN_S` when the run ended by itself, so the annotated video is
finished): capture threads and inference first (at most :data:`SOURCES_S`), then the control
socket is told to stop, the open events are closed and the final status of every stream is sent
from the publisher thread after every result queued before it (so its counters count them all),
then the publisher flushes and closes, then the annotator; threads still alive at the deadline are
named and left behind; ``ctx.term()`` last.
"""

from __future__ import annotations

import logging
import threading
import time

from dataclasses import dataclass
from typing import Any, Callable

from model.errors import RecognizerError
from model.loaded import LoadedModel
from streamer.config import AppConfig
from streamer.control.api import reload_on_hangup
from streamer.control.sdnotify import Notifier
from streamer.core.loading import load, resolve_window, warn_outside_domain
from streamer.core.scheduler import Scheduler, WindowPlan
from streamer.core.stats import StatsRegistry, StreamState
from streamer.endpoints import Listen, check_free, pipeline_context
from streamer.ops.features import OperatorFeatures
from streamer.ops.statusline import ResultPrinter, StatusLine, Terminal
from streamer.outputs.publisher import Publisher
from streamer.streams import Runtime, StreamSet
from streamer.supervisor import Deadline, Policy, Supervisor, Watched, restarted

log = logging.getLogger(__name__)

SHUTDOWN_S = 1.5  #: every join after a stop request or a failure, together (SIGTERM -> exit within 3 s, R19)
DRAIN_S = 10.0  #: every join when the run ended by itself (end of files, max_windows, duration)
SOURCES_S = 1.0  #: of which capture threads and inference get at most this (one blocked in OpenCV is left behind)
PUBLISH_RESERVE_S = 0.4  #: kept for the final status, the publisher's flush and the annotator
_OPENCV_KINDS = ("camera", "rtsp", "http", "tcp", "file")


#: How long a Python thread may hold the GIL while another waits (CPython's default is 5 ms, which
#: showed up directly in the p99 of capture-to-publish latency).
SWITCH_INTERVAL_S = 0.001


_tuned = False  # tune_interpreter was called: this process runs for latency


def tune_interpreter() -> None:
    """Process-wide settings for a latency-sensitive run (called by the CLI, which owns the process): the
    switch interval now, and :func:`settle_heap` once a pipeline has started."""
    import sys

    global _tuned
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    _tuned = True


def settle_heap() -> None:
    """In a tuned process, once start-up is over: collect, then freeze what is left (``gc.freeze``), so the
    cyclic collector's full passes no longer walk the model, the modules and the rest of what start-up
    made. Measured with 8 streams and the console on: one full pass over ~215,000 objects held the GIL
    for 151 ms mid-run, long enough that every camera showed a gap (a new segment, windows lost); after
    the freeze a pass walks ~10,000. What start-up made is kept for the life of the process either way."""
    if not _tuned:
        return
    import gc

    gc.collect()
    gc.freeze()


@dataclass(frozen=True)
class Built:
    """What start-up prepares before anything is bound or started."""

    model: LoadedModel
    device: str
    window: WindowPlan
    scheduler: Scheduler
    runner: Any


class Pipeline:
    def __init__(self, config: AppConfig, *, mode_override: str | None = None, terminal: Terminal | None = None,
                 print_results: bool = False, reload_config: Callable[[], AppConfig] | None = None,
                 notifier: Notifier | None = None) -> None:
        """``reload_config()``: the config as its files say now, for ``reload`` and SIGHUP (None: refused);
        ``notifier``: systemd's (readiness, watchdog), from the CLI."""
        self.config = config
        self.stats = StatsRegistry()
        # ConfigError, or a SourceError for a missing camera, before anything opens
        self.streams = StreamSet(config, self.stats, mode_override=mode_override, reload_config=reload_config)
        self.notifier = notifier or Notifier({})
        self.control = None  # streamer.control.server.ControlServer when control.address is set
        self.publisher: Publisher | None = None
        self.inference = None
        self.operate = OperatorFeatures(config, self.stats)  # events, metrics, snapshot, annotated video
        self.supervisor = Supervisor()
        self.terminal = terminal or Terminal()
        self.printer = ResultPrinter(self.terminal) if print_results else None
        self.error: str | None = None
        self._stuck_batch: float | None = None  # busy_since of the batch reported as maybe stuck

    def listens(self) -> list[Listen]:
        """Every address this pipeline will listen on (a later listener, e.g. a control socket, adds its own)."""
        cfg = self.config
        out = [Listen("publisher", cfg.publisher.address, "--publish ADDRESS")]
        if cfg.snapshot.address is not None:
            out.append(Listen("snapshot", cfg.snapshot.address, "--snapshot ADDRESS"))
        if cfg.metrics.enabled:
            out.append(Listen("metrics", f"tcp://{cfg.metrics.host}:{cfg.metrics.port}", "--metrics-port PORT"))
        if cfg.ui.enabled:
            out.append(Listen("console", f"tcp://{cfg.ui.host}:{cfg.ui.port}", "--ui ADDRESS"))
        if cfg.control.address is not None:
            out.append(Listen("control", cfg.control.address, "--control ADDRESS"))
        return out

    def run(self, stop: threading.Event, *, started: Callable[[], None] = lambda: None,
            hangup: threading.Event | None = None) -> int:
        """Run until ``stop`` is set, the run limit is reached, or every finite source has ended.

        ``started()`` is called once start-up is past the model load, just before the first socket
        is bound and the first thread starts (the CLI's signal handler stops aborting there).
        ``hangup`` (SIGHUP): when set, the config file is read again and its sources applied.
        """
        check_free(self.listens())  # every clash in one error, before the (slow) model load
        log.debug("loading model %s", self.config.model.source)  # a bad source is then the only line
        built = self._build()
        started()
        if stop.is_set():
            log.info("stop requested")
            return 0
        ctx = pipeline_context()
        status_line = StatusLine(self.stats, self.config.logging.status_line, self.config.logging.status_interval_s,
                                 self.terminal)
        try:
            if self._start(built, ctx, stop):
                settle_heap()
                self._wait(stop, status_line, hangup or threading.Event())
            else:
                log.info("stop requested")
        finally:
            self._shutdown(ctx, status_line, requested=stop.is_set())
        return 1 if self.error else 0

    # ---- start-up ------------------------------------------------------------------------------
    def _build(self) -> Built:
        """Model, window, rings, scheduler, runner: no socket, no thread (a signal may abort this phase)."""
        from streamer.core.runner import ModelRunner

        cfg = self.config
        model, device = load(cfg)
        window = resolve_window(cfg.window, model)
        warn_outside_domain(model, self.streams.initial)
        log.info("model %s (%s on %s, %d view%s a window), window %s", model.name, model.precision, device,
                 model.views, "" if model.views == 1 else "s", window)
        scheduler = Scheduler([], cfg.batching.max_batch, cfg.batching.max_wait_ms)  # streams join as they start
        runner = ModelRunner(model.network, max_batch=cfg.batching.max_batch, compile=cfg.model.compile,
                             cuda_graphs=cfg.model.cuda_graphs)
        pc = model.preprocess
        if runner.sizes and (pc.crop_size is not None or pc.size is not None):  # the window's shape is known
            runner.prepare((window.num_frames, 3, *pc.output_size(1, 1)), model.input_dtype)
        if cfg.control.address is not None or any(plan.kind.name in _OPENCV_KINDS for plan in self.streams.initial):
            import cv2  # noqa: F401  here, not in the capture threads: its import holds the GIL (signals wait)
        return Built(model, device, window, scheduler, runner)

    def _start(self, built: Built, ctx, stop: threading.Event) -> bool:
        """Bind and start everything, checking ``stop`` before each step; False if it was set."""
        cfg = self.config
        self.publisher = Publisher(cfg.publisher, self.stats, ctx)
        self.supervisor.watch(Watched("publisher", thread=lambda: self.publisher.thread,
                                      failure=lambda: self.publisher.failure, policy=Policy.FATAL,
                                      doing=lambda: "sending"))
        self.publisher.start(stop)
        if stop.is_set():
            return False
        if self.printer is not None:
            self.publisher.listeners.append(self.printer.on_sent)
        try:
            self.operate.start(self.publisher, ctx, model=built.model, device=built.device)
        finally:  # what did start is joined at shutdown, even if a later bind failed
            for watched in self.operate.watched():
                self.supervisor.watch(watched)
        if stop.is_set():
            return False
        self.streams.start(Runtime(built.model, built.device, built.window, built.scheduler, self.publisher,
                                   self.operate, self.supervisor))
        from streamer.core.inference import InferenceWorker

        self.inference = InferenceWorker(built.runner, built.scheduler, self.publisher, model=built.model,
                                         device=built.device, top_k=cfg.model.top_k, max_results=cfg.run.max_windows)
        self.supervisor.watch(Watched("inference", thread=lambda: self.inference,
                                      failure=lambda: self.inference.failure, policy=Policy.FATAL, may_end=True,
                                      doing=self.inference.doing))
        self.inference.start()
        if cfg.control.address is not None:
            self._start_control(ctx)
        self.notifier.ready(f"{len(self.stats)} stream(s)")
        return True

    def _start_control(self, ctx) -> None:
        """The control socket (streamer/control/), answering with the stream set; restarted if it dies."""
        import functools

        from streamer.control import requests
        from streamer.control.server import ControlServer

        cfg, curve = self.config.control, self.publisher.curve  # the publisher's CURVE keys and allow-list, if on
        self.control = ControlServer(cfg.address, functools.partial(requests.handle, self.streams), ctx,
                                     secure=curve.secure if curve is not None else None,
                                     max_request_bytes=cfg.max_request_bytes)

        def restart() -> None:
            self.control = restarted(self.control)

        self.supervisor.watch(Watched("control", thread=lambda: self.control, failure=lambda: self.control.failure,
                                      policy=Policy.RESTART, restart=restart, doing=lambda: "answering"))
        self.control.start_and_wait()

    # ---- running -------------------------------------------------------------------------------
    def _wait(self, stop: threading.Event, status_line: StatusLine, hangup: threading.Event) -> None:
        deadline = None if self.config.run.duration_s is None else time.monotonic() + self.config.run.duration_s
        while not stop.wait(0.1):
            now = time.monotonic()
            self.streams.check_stall(now)
            self.notifier.tick(now)
            if hangup.is_set():
                hangup.clear()
                self._reload()
            status_line.tick(now)
            if self.printer is not None:
                self.printer.flush()
            if self.inference.finished.is_set():
                self.inference.join(1.0)  # it is ending: let the supervisor tell a failure from the end of input
            cause = self.supervisor.check()
            if cause is not None:
                self.error = cause
                return
            if self.inference.finished.is_set():
                self._finished()
                return
            self._watch_batch(now)
            if deadline is not None and now >= deadline:
                log.info("duration reached")
                return
        log.info("stop requested")

    def _reload(self) -> None:
        """SIGHUP: the config's sources applied by id (a refused file is logged once)."""
        reload_on_hangup(self.streams, self.notifier, lambda: len(self.stats))

    def _finished(self) -> None:
        log.info("all windows processed (%d results)", self.inference.results)
        failed = [st for st in self.stats if st.state is StreamState.FAILED]  # the others ran to their end
        if failed:
            self.error = "; ".join(f"source {st.stream} failed: {st.reason}" for st in failed)

    def _watch_batch(self, now: float) -> None:
        """One ERROR when a batch runs far longer than this model's batches do (R11), one INFO if it ends after all."""
        busy = self.inference.busy_since
        if self._stuck_batch is not None:
            if busy != self._stuck_batch:  # that batch is over (another may have started since)
                self._stuck_batch = None
                log.info("the long inference batch has finished; results flow again")
            return
        overdue = self.inference.overdue(now)
        if overdue is not None:
            self._stuck_batch = busy
            slowest = self.inference.slowest_s
            log.error("inference has been running one batch for %.0f s (the slowest batch before took %s); it may "
                      "be stuck", overdue, "nothing: it is the first" if slowest is None else f"{slowest:.1f} s")

    # ---- shutdown ------------------------------------------------------------------------------
    def _shutdown(self, ctx, status_line: StatusLine, *, requested: bool) -> None:
        sup = self.supervisor
        sup.stop_watching()
        self.streams.close()  # control requests are refused from here on (still answered, until the end)
        self.notifier.stopping()
        total = SHUTDOWN_S if requested or self.error else DRAIN_S
        deadline = Deadline(total)  # one deadline for every join below
        reason = f"pipeline stopped: {self.error}" if self.error else ""
        captures = self.streams.captures()
        for thread in captures:
            thread.stop(reason)
        if self.inference is not None:
            self.inference.stop()
        self.operate.request_stop(servers=True)  # snapshot and metrics: nothing more for them to do
        sources = [t.name for t in captures] + (["inference"] if self.inference is not None else [])
        sup.join(sources, deadline, reserve=max(PUBLISH_RESERVE_S, total - SOURCES_S))
        if self.control is not None:
            self.control.request_stop()
        if self.publisher is not None:
            self.operate.close_events(self.publisher)  # after the last result: end the open events
            final_status(self.publisher, self.stats)  # counts every result queued before it
            self.publisher.request_stop()
            sup.join(["publisher"], deadline)
        self.operate.request_stop(servers=False)  # the annotator, once every result has reached it
        sup.join([name for name in sup.names() if name not in sources], deadline)  # the sources had their share
        self.error = self.error or sup.report_late()
        behind = sup.left_behind()
        if behind:
            log.warning("shutdown: not waiting for %s", ", ".join(behind))
        if self.printer is not None:
            self.printer.flush()
        self.operate.finish()
        status_line.close()
        if sup.alive("publisher") or sup.alive("snapshot") or sup.alive("control"):
            ctx.destroy(linger=0)  # a socket is still open in a thread left behind: term() would hang
        else:
            ctx.term()


def final_status(publisher: Publisher, stats: StatsRegistry) -> None:
    """Queue every stream's status, built in the publisher thread after every result queued so far was
    sent (results are counted as they are sent), so ``counters.results`` counts them all."""

    def send() -> None:
        for s in stats:
            publisher.publish_status(s)

    if not publisher.call_soon(send):
        send()  # queue full: the counters may then miss results still queued


__all__ = ["Pipeline", "final_status", "RecognizerError"]

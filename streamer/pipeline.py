"""Build the whole pipeline from an AppConfig, run it until told to stop, and shut it down once.

Start order (a mistake fails before the slow parts, and nothing listens before the model is in):
plan sources (config errors) -> check every listening address (all clashes in one error,
streamer/endpoints.py) -> load the model and build rings, scheduler and runner (a bad checkpoint
fails before any camera opens, R22) -> ``started()`` -> bind the publisher -> snapshot, metrics,
annotator -> capture threads -> inference. Until ``started()`` nothing is bound and no thread runs,
so the CLI may abort that phase at once on a signal (run_stream.py); after it, ``stop`` is checked
before every bind.

While it runs, the main thread only waits on ``stop`` (so SIGINT/SIGTERM act at once, R19) and,
every 0.1 s, runs the stall watchdog, the status line, the ``--print`` output and the supervisor
(streamer/supervisor.py: every long-lived thread is watched; a dead one stops the pipeline with
exit 1, or is restarted where that is safe).

Shutdown, written once in one ``finally``: every thread is told to stop, then joined against one
deadline (:data:`SHUTDOWN_S` after a stop request or a failure; :data:`DRAIN_S` when the run ended
by itself, so the annotated video is finished): capture threads and inference first (at most
:data:`SOURCES_S`), then the open events are closed and the final status of every stream is sent
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
from streamer.core.loading import load, resolve_window, warn_outside_domain
from streamer.core.ring import FrameRing
from streamer.core.scheduler import Scheduler, StreamCursor, WindowPlan
from streamer.core.stats import StatsRegistry, StreamState
from streamer.core.windows import frames_needed
from streamer.endpoints import Listen, check_free
from streamer.ops.features import OperatorFeatures
from streamer.ops.statusline import ResultPrinter, StatusLine, Terminal
from streamer.outputs.publisher import Publisher
from streamer.sources.capture import CaptureThread
from streamer.sources.table import check_available, plan_source
from streamer.supervisor import Deadline, Policy, Supervisor, Watched

log = logging.getLogger(__name__)

SHUTDOWN_S = 1.5  #: every join after a stop request or a failure, together (SIGTERM -> exit within 3 s, R19)
DRAIN_S = 10.0  #: every join when the run ended by itself (end of files, max_windows, duration)
SOURCES_S = 1.0  #: of which capture threads and inference get at most this (one blocked in OpenCV is left behind)
PUBLISH_RESERVE_S = 0.4  #: kept for the final status, the publisher's flush and the annotator
_OPENCV_KINDS = ("camera", "rtsp", "http", "tcp", "file")


#: How long a Python thread may hold the GIL while another waits (CPython's default is 5 ms, which
#: showed up directly in the p99 of capture-to-publish latency).
SWITCH_INTERVAL_S = 0.001


def tune_interpreter() -> None:
    """Process-wide settings for a latency-sensitive run (called by the CLI, which owns the process)."""
    import sys

    sys.setswitchinterval(SWITCH_INTERVAL_S)


@dataclass(frozen=True)
class Built:
    """What start-up prepares before anything is bound or started."""

    model: LoadedModel
    device: str
    window: WindowPlan
    rings: list
    scheduler: Scheduler
    runner: Any


class Pipeline:
    def __init__(self, config: AppConfig, *, mode_override: str | None = None, terminal: Terminal | None = None,
                 print_results: bool = False) -> None:
        self.config = config
        self.plans = [plan_source(s, mode_override) for s in config.sources]  # ConfigError before anything opens
        for plan in self.plans:
            check_available(plan)  # SourceError: a missing camera fails at start, it is not retried forever
        self.stats = StatsRegistry()
        for plan in self.plans:
            self.stats.add(plan.id, plan.display_url)
        self.captures: list[CaptureThread] = []
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
        return out

    def run(self, stop: threading.Event, *, started: Callable[[], None] = lambda: None) -> int:
        """Run until ``stop`` is set, the run limit is reached, or every finite source has ended.

        ``started()`` is called once start-up is past the model load, just before the first socket
        is bound and the first thread starts (the CLI's signal handler stops aborting there).
        """
        import zmq

        check_free(self.listens())  # every clash in one error, before the (slow) model load
        log.debug("loading model %s", self.config.model.source)  # a bad source is then the only line
        built = self._build()
        started()
        if stop.is_set():
            log.info("stop requested")
            return 0
        ctx = zmq.Context()
        status_line = StatusLine(self.stats, self.config.logging.status_line, self.config.logging.status_interval_s,
                                 self.terminal)
        try:
            if self._start(built, ctx, stop):
                self._wait(stop, status_line)
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
        warn_outside_domain(model, self.plans)
        log.info("model %s (%s on %s, %d view%s a window), window %s", model.name, model.precision, device,
                 model.views, "" if model.views == 1 else "s", window)
        rings, cursors = [], []
        for plan in self.plans:
            ring = FrameRing(plan.config.options.ring_capacity or 64, blocking=not plan.live, device=device)
            rings.append(ring)
            cursors.append(StreamCursor(plan.id, ring, self.stats[plan.id], window, plan.live))
        scheduler = Scheduler(cursors, cfg.batching.max_batch, cfg.batching.max_wait_ms)
        runner = ModelRunner(model.network, max_batch=cfg.batching.max_batch, compile=cfg.model.compile,
                             cuda_graphs=cfg.model.cuda_graphs)
        pc = model.preprocess
        if runner.sizes and (pc.crop_size is not None or pc.size is not None):  # the window's shape is known
            runner.prepare((window.num_frames, 3, *pc.output_size(1, 1)), model.input_dtype)
        if any(plan.kind.name in _OPENCV_KINDS for plan in self.plans):
            import cv2  # noqa: F401  here, not in the capture threads: its import holds the GIL (signals wait)
        return Built(model, device, window, rings, scheduler, runner)

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
        self._start_captures(built)
        from streamer.core.inference import InferenceWorker

        self.inference = InferenceWorker(built.runner, built.scheduler, self.publisher, model=built.model,
                                         device=built.device, top_k=cfg.model.top_k, max_results=cfg.run.max_windows)
        self.supervisor.watch(Watched("inference", thread=lambda: self.inference,
                                      failure=lambda: self.inference.failure, policy=Policy.FATAL, may_end=True,
                                      doing=self.inference.doing))
        self.inference.start()
        return True

    def _start_captures(self, built: Built) -> None:
        from model.preprocess import Preprocessor
        from streamer.core.device import DeviceStage

        window, model = built.window, built.model

        def capacity_for(fps: float) -> int:  # each capture thread sizes its ring from this (R10)
            return frames_needed(window.num_frames, window.stride, window.span_s, window.hop, window.hop_s, fps)

        for plan, ring in zip(self.plans, built.rings):
            # frames go up as uint8 and stay on the model's device (CPU too: the same code path)
            stage = DeviceStage(Preprocessor(model.preprocess, device=built.device, input_order="BGR"),
                                model.input_dtype)
            thread = CaptureThread(plan, ring, self.operate.tap(plan, stage), self.stats[plan.id],
                                   capacity_for=capacity_for, on_frame=built.scheduler.notify,
                                   on_state=self.publisher.publish_status)
            self.captures.append(thread)
            # a capture thread's failures are its stream's state (failed, or backoff and a reconnect)
            self.supervisor.watch(Watched(thread.name, thread=lambda t=thread: t, failure=lambda: None,
                                          policy=Policy.STREAM, may_end=True, doing=thread.doing))
        self.operate.attach(self.captures)
        for thread in self.captures:
            thread.start()

    # ---- running -------------------------------------------------------------------------------
    def _wait(self, stop: threading.Event, status_line: StatusLine) -> None:
        deadline = None if self.config.run.duration_s is None else time.monotonic() + self.config.run.duration_s
        while not stop.wait(0.1):
            now = time.monotonic()
            for thread in self.captures:
                thread.check_stall(now)
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
        total = SHUTDOWN_S if requested or self.error else DRAIN_S
        deadline = Deadline(total)  # one deadline for every join below
        reason = f"pipeline stopped: {self.error}" if self.error else ""
        for thread in self.captures:
            thread.stop(reason)
        if self.inference is not None:
            self.inference.stop()
        self.operate.request_stop(servers=True)  # snapshot and metrics: nothing more for them to do
        sources = [t.name for t in self.captures] + (["inference"] if self.inference is not None else [])
        sup.join(sources, deadline, reserve=max(PUBLISH_RESERVE_S, total - SOURCES_S))
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
        if sup.alive("publisher") or sup.alive("snapshot"):
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

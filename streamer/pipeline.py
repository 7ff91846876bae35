"""Build the whole pipeline from an AppConfig, run it until told to stop, and shut it down once.

Start order: plan sources (config errors first) -> load the model (a bad checkpoint fails before any
camera opens, R22) -> bind the publisher -> start capture threads -> start inference.
Shutdown, written once in one ``finally``: stop sources -> stop inference -> final status and
publisher -> ``ctx.term()``. The caller's thread only ever waits on an Event, so SIGINT/SIGTERM act
at once (R19).
"""

from __future__ import annotations

import logging
import threading
import time

from model.errors import ConfigError, RecognizerError
from streamer.sources.capture import CaptureThread
from streamer.config import AppConfig, WindowConfig
from streamer.ops.features import OperatorFeatures
from streamer.outputs.publisher import Publisher
from streamer.core.ring import FrameRing
from streamer.core.scheduler import Scheduler, StreamCursor, WindowPlan
from streamer.sources.table import plan_source
from streamer.core.stats import StatsRegistry
from streamer.ops.statusline import StatusLine
from streamer.core.windows import frames_needed

log = logging.getLogger(__name__)

_STUCK_INFERENCE_S = 30.0
_CAPTURE_JOIN_S = 1.5  # a thread blocked in OpenCV open/read longer is abandoned at exit (run_stream.py)


def resolve_window(cfg: WindowConfig, model_num_frames: int) -> WindowPlan:
    """Fill the window's defaults: num_frames from the model; stride 1; hop = one sample interval."""
    num_frames = cfg.num_frames or model_num_frames
    stride, span_s = cfg.stride, cfg.span_s
    if stride is None and span_s is None:
        stride = 1
    hop, hop_s = cfg.hop, cfg.hop_s
    if hop is None and hop_s is None:
        if stride is not None:
            hop = stride
        else:
            hop_s = span_s / num_frames
    return WindowPlan(num_frames=num_frames, stride=stride, span_s=span_s, hop=hop, hop_s=hop_s,
                      freshness_s=cfg.freshness_s)


def resolve_device(device: str, precision: str, model_source: str | None = None, batch: int = 1) -> tuple[str, str]:
    """``auto`` device: CUDA if present, else CPU; ``auto`` precision: what ``--bench`` measured for this
    device, model and batch, else the rule in streamer/core/precision.py; ``int8``: the fastest 8-bit path
    measured to agree (CUDA), else the device's own (int8-x86 on CPU)."""
    if device == "auto" or device.startswith("cuda"):
        import torch

        has_cuda = torch.cuda.is_available()
        if device == "auto":
            device = "cuda" if has_cuda else "cpu"
        elif not has_cuda:
            raise ConfigError(f"model.device: {device!r} asked for but no CUDA device is present; use --device cpu")
    if precision == "auto":
        from streamer.core import precision as measured

        precision = (measured.choose(device, model_source, batch) if model_source is not None
                     else measured.fallback_precision(device))
    if precision == "int8":
        from streamer.core import precision as measured

        precision = measured.fast_8bit(device, model_source, batch)
    return device, precision


def load(cfg: AppConfig):
    """Load the model as configured; returns (model, device, precision)."""
    import model as model_pkg

    device, precision = resolve_device(cfg.model.device, cfg.model.precision, cfg.model.source, cfg.batching.max_batch)
    if cfg.model.threads:
        import torch

        torch.set_num_threads(cfg.model.threads)
    net = model_pkg.load_model(cfg.model.source, precision=precision, device=device,
                               int8_threshold=cfg.model.int8_threshold)
    if cfg.model.precision == "auto":  # said once the checkpoint loaded, so a bad one still fails first
        from streamer.core import precision as measured

        log.info("precision auto: %s (%s)", net.precision,
                 measured.why(device, cfg.model.source, cfg.batching.max_batch))
    from model.views import with_views

    return with_views(net, cfg.model.views), device, net.precision  # the backend that runs (int8-x86, ...)


#: How long a Python thread may hold the GIL while another waits (CPython's default is 5 ms, which
#: showed up directly in the p99 of capture-to-publish latency).
SWITCH_INTERVAL_S = 0.001


def tune_interpreter() -> None:
    """Process-wide settings for a latency-sensitive run (called by the CLI, which owns the process)."""
    import sys

    sys.setswitchinterval(SWITCH_INTERVAL_S)


class Pipeline:
    def __init__(self, config: AppConfig, *, mode_override: str | None = None) -> None:
        self.config = config
        self.plans = [plan_source(s, mode_override) for s in config.sources]  # ConfigError before anything opens
        self.stats = StatsRegistry()
        for plan in self.plans:
            self.stats.add(plan.id, plan.display_url)
        self.captures: list[CaptureThread] = []
        self.publisher: Publisher | None = None
        self.inference = None
        self.operate = OperatorFeatures(config, self.stats)  # events, metrics, snapshot, annotated video
        self.error: str | None = None

    def run(self, stop: threading.Event) -> int:
        """Run until ``stop`` is set, the run limit is reached, or every finite source has ended."""
        import zmq

        from model.preprocess import Preprocessor
        from model.views import view_count
        from streamer.core.inference import InferenceWorker

        cfg = self.config
        net, device, precision = load(cfg)
        window = resolve_window(cfg.window, net.config.num_frames)
        views = view_count(net)
        log.info("model %s (%s on %s, %d view%s a window), window %s", getattr(net, "name", cfg.model.source),
                 precision, device, views, "" if views == 1 else "s", window)
        from streamer.core.device import DeviceStage, model_input_dtype
        from streamer.core.runner import ModelRunner

        # frames go up as uint8 and stay on the model's device (CPU too: the same code path)
        frame_dtype = model_input_dtype(net)

        def stage():
            return DeviceStage(Preprocessor(net.preprocess_config, device=device, input_order="BGR"), frame_dtype)
        model_info = {"name": str(getattr(net, "name", cfg.model.source)), "precision": precision,
                      "license": str(getattr(net, "license", "unknown")), "views": views}

        cursors = []
        rings = []
        for plan in self.plans:
            ring = FrameRing(plan.config.options.ring_capacity or 64, blocking=not plan.live, device=device)
            rings.append(ring)
            cursors.append(StreamCursor(plan.id, ring, self.stats[plan.id], window, plan.live))
        scheduler = Scheduler(cursors, cfg.batching.max_batch, cfg.batching.max_wait_ms)

        ctx = zmq.Context()
        status_line = StatusLine(self.stats, cfg.logging.status_line, cfg.logging.status_interval_s)
        try:
            self.publisher = Publisher(cfg.publisher, self.stats, ctx)
            self.publisher.start(stop)
            self.operate.start(self.publisher, ctx, net=net, device=device, model_info=model_info)
            for plan, ring in zip(self.plans, rings):
                fixed = plan.config.options.ring_capacity

                def capacity_for(fps: float, fixed=fixed) -> int:
                    return fixed or frames_needed(window.num_frames, window.stride, window.span_s,
                                                  window.hop, window.hop_s, fps)

                thread = CaptureThread(plan, ring, self.operate.tap(plan, stage()), self.stats[plan.id],
                                       capacity_for=capacity_for,
                                       on_frame=scheduler.notify, on_state=self.publisher.publish_status)
                self.captures.append(thread)
            self.operate.attach(self.captures)
            if stop.is_set():
                return 0
            runner = ModelRunner(net, max_batch=cfg.batching.max_batch, compile=cfg.model.compile,
                                 cuda_graphs=cfg.model.cuda_graphs)
            pc = net.preprocess_config
            if runner.sizes and (pc.crop_size is not None or pc.size is not None):  # the window's shape is known
                runner.prepare((window.num_frames, 3, *pc.output_size(1, 1)), frame_dtype)
            for thread in self.captures:
                thread.start()
            self.inference = InferenceWorker(runner, scheduler, self.publisher, device=device, top_k=cfg.model.top_k,
                                             model_info=model_info, max_results=cfg.run.max_windows)
            self.inference.start()
            self._wait(stop, status_line)
        finally:
            self._shutdown(ctx, status_line)
        if self.error:
            log.error("%s", self.error)
            return 1
        return 0

    def _wait(self, stop: threading.Event, status_line: StatusLine) -> None:
        deadline = None if self.config.run.duration_s is None else time.monotonic() + self.config.run.duration_s
        warned_stuck = False
        while not stop.wait(0.1):
            now = time.monotonic()
            for thread in self.captures:
                thread.check_stall(now)
            status_line.tick(now)
            if self.inference.finished.is_set():
                if self.inference.error:
                    self.error = f"inference stopped: {self.inference.error}"
                else:
                    log.info("all windows processed (%d results)", self.inference.results)
                    failed = [st for st in self.stats if st.state == "failed"]  # the others ran to their end
                    if failed:
                        self.error = "; ".join(f"source {st.stream} failed: {st.reason}" for st in failed)
                return
            busy = self.inference.busy_since
            if busy is not None and now - busy > _STUCK_INFERENCE_S and not warned_stuck:
                warned_stuck = True
                log.error("inference has been running one batch for %.0f s; it may be stuck", now - busy)
            if deadline is not None and now >= deadline:
                log.info("duration reached")
                return
        log.info("stop requested")

    def _shutdown(self, ctx, status_line: StatusLine) -> None:
        for thread in self.captures:
            thread.stop()
        deadline = time.monotonic() + _CAPTURE_JOIN_S  # one deadline for all: exit stays prompt (R19)
        for thread in self.captures:
            if thread.ident is not None:
                thread.join_or_warn(max(0.05, deadline - time.monotonic()))
        if self.inference is not None:
            self.inference.stop()
            self.inference.join(5.0)
            if self.inference.is_alive():
                log.warning("inference thread still alive 5 s after stop")
        if self.publisher is not None:
            self.operate.close_events(self.publisher)  # after the last result: end the open events
            for stats in self.stats:
                self.publisher.publish_status(stats)
            self.publisher.stop()
        operate_error = self.operate.stop()  # always, before ctx.term(): it closes the snapshot socket
        self.error = self.error or operate_error
        status_line.close()
        if self.publisher is not None and self.publisher.alive():
            ctx.destroy(linger=0)  # a socket is still open somewhere: term() would hang
        else:
            ctx.term()


__all__ = ["Pipeline", "resolve_window", "resolve_device", "RecognizerError"]

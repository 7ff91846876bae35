"""A Prometheus endpoint for operators: per-stream counters, states, latency histograms, model memory.

Off by default; on with ``metrics.enabled: true`` or ``--metrics-port N`` (binds ``metrics.host``,
loopback by default). Served from its own registry (never the process-global one), so several
pipelines in one process do not collide.

Counters and states are read from :class:`streamer.core.stats.StatsRegistry` at scrape time (one writer
per counter already keeps them; nothing is counted twice). Histograms are observed from every
message the publisher sent (:meth:`Metrics.on_sent`, publisher thread):

| metric | type | labels |
|---|---|---|
| ``timesformer_frames_total`` | counter | stream |
| ``timesformer_drops_total`` | counter | stream, reason |
| ``timesformer_decode_errors_total``, ``timesformer_reconnects_total`` | counter | stream |
| ``timesformer_windows_total``, ``timesformer_results_total`` | counter | stream |
| ``timesformer_stream_state`` | gauge (1 for the current state, 0 for the others) | stream, state |
| ``timesformer_stream_fps`` | gauge | stream |
| ``timesformer_capture_to_inference_start_seconds`` | histogram | stream |
| ``timesformer_inference_seconds`` | histogram (the forward pass of the window's batch) | stream |
| ``timesformer_capture_to_publish_seconds`` | histogram | stream |
| ``timesformer_batch_size`` | histogram (windows per batch, observed once per window) | |
| ``timesformer_events_total`` | counter (events started) | stream, label |
| ``timesformer_open_events`` | gauge | stream |
| ``timesformer_publisher_sent_total`` | counter (messages handed to ZeroMQ) | |
| ``timesformer_publisher_queue_dropped_total`` | counter (messages dropped before ZeroMQ: the publisher's queue was full; *not* ZeroMQ's drops at a slow subscriber's SNDHWM, which PUB cannot count: subscribers see those as ``seq`` gaps) | |
| ``timesformer_snapshot_requests_total`` | counter (requests to the snapshot socket by outcome: ``served``; ``refused``: malformed or over the frame/byte limits; ``limited``: dropped unanswered, the peer asked again too soon) | outcome |
| ``timesformer_model_bytes`` | gauge (the weights: ``model.quantize.weight_bytes``, packed int8 weights included) | model, precision, device |
| ``timesformer_cuda_memory_allocated_bytes`` | gauge (CUDA only) | device |

plus the standard ``process_*`` metrics (resident memory, CPU seconds, open files).
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

from model.errors import PublisherError
from streamer.config import MetricsConfig
from streamer.core.stats import STATES, StatsRegistry
from streamer.supervisor import join_or_warn

log = logging.getLogger(__name__)

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64)




def _quiet_handler():
    from wsgiref.simple_server import WSGIRequestHandler

    class Quiet(WSGIRequestHandler):
        def log_message(self, format, *args):  # noqa: A002 (the base class's name)
            log.debug("metrics request: " + format, *args)

    return Quiet


class _StatsCollector:
    """Reads the per-stream counters at scrape time."""

    def __init__(self, stats: StatsRegistry, publisher_counts: Callable[[], tuple[int, int]] | None,
                 cuda_device: str | None, snapshot_counts: Callable[[], dict[str, int]] | None = None) -> None:
        self.stats = stats
        self.publisher_counts = publisher_counts
        self.snapshot_counts = snapshot_counts
        self.cuda_device = cuda_device

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        p = "timesformer_"
        counters = {name: CounterMetricFamily(p + name, doc, labels=["stream"]) for name, doc in (
            ("frames", "Frames that entered the stream's ring."),
            ("decode_errors", "Frames the decoder could not read."),
            ("reconnects", "Reconnect attempts of a live source."),
            ("windows", "Windows handed to the model."),
            ("results", "Results published."),
        )}
        drops = CounterMetricFamily(p + "drops", "Frames or windows dropped, by reason.", labels=["stream", "reason"])
        state = GaugeMetricFamily(p + "stream_state", "1 for the stream's current state.", labels=["stream", "state"])
        fps = GaugeMetricFamily(p + "stream_fps", "Frames per second arriving recently.", labels=["stream"])
        for s in self.stats:
            snap = s.snapshot()
            for name, family in counters.items():
                family.add_metric([s.stream], snap[name])
            for reason, n in snap["drops"].items():
                drops.add_metric([s.stream, reason], n)
            for st in STATES:
                state.add_metric([s.stream, st], 1.0 if snap["state"] == st else 0.0)
            fps.add_metric([s.stream], snap["fps"])
        yield from counters.values()
        yield from (drops, state, fps)
        if self.publisher_counts is not None:
            sent, dropped = self.publisher_counts()
            yield CounterMetricFamily(p + "publisher_sent", "Messages handed to the ZeroMQ socket.", value=sent)
            yield CounterMetricFamily(p + "publisher_queue_dropped",
                                      "Messages dropped before ZeroMQ because the publisher's queue was full. "
                                      "Does not count what ZeroMQ drops for a slow subscriber at SNDHWM "
                                      "(PUB cannot see it; subscribers find it by seq gaps).", value=dropped)
        if self.snapshot_counts is not None:
            requests = CounterMetricFamily(p + "snapshot_requests", "Requests to the snapshot socket, by outcome "
                                           "(served; refused: malformed or over the limits; limited: the peer "
                                           "asked again too soon, dropped unanswered).", labels=["outcome"])
            for outcome, n in self.snapshot_counts().items():
                requests.add_metric([outcome], n)
            yield requests
        if self.cuda_device is not None:
            import torch

            g = GaugeMetricFamily(p + "cuda_memory_allocated_bytes", "CUDA memory held by tensors.", labels=["device"])
            g.add_metric([self.cuda_device], float(torch.cuda.memory_allocated(self.cuda_device)))
            yield g


class Metrics:
    """The registry, the histograms fed from sent messages, and the HTTP server thread."""

    def __init__(self, config: MetricsConfig, stats: StatsRegistry, *, model_info: dict | None = None,
                 model_size: int | None = None, device: str = "cpu",
                 publisher_counts: Callable[[], tuple[int, int]] | None = None,
                 snapshot_counts: Callable[[], dict[str, int]] | None = None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

        self.config = config
        self.registry = CollectorRegistry(auto_describe=True)
        p = "timesformer_"
        self.capture_to_inference = Histogram(p + "capture_to_inference_start_seconds",
                                              "Age of a window's newest frame when inference started.",
                                              ["stream"], buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.inference = Histogram(p + "inference_seconds", "Forward pass of the batch a window was in.",
                                   ["stream"], buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.capture_to_publish = Histogram(p + "capture_to_publish_seconds",
                                            "From capture of a window's newest frame to the send of its result.",
                                            ["stream"], buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.batch_size = Histogram(p + "batch_size", "Windows in the batch a window was inferred in.",
                                    buckets=_BATCH_BUCKETS, registry=self.registry)
        self.events = Counter(p + "events", "Action events started.", ["stream", "label"], registry=self.registry)
        self.open_events = Gauge(p + "open_events", "Action events open now.", ["stream"], registry=self.registry)
        if model_size is not None:
            info = model_info or {}
            g = Gauge(p + "model_bytes", "Bytes of the model's weights (state dict, int8 scales included).",
                      ["model", "precision", "device"], registry=self.registry)
            g.labels(str(info.get("name", "")), str(info.get("precision", "")), device).set(model_size)
        self.registry.register(_StatsCollector(stats, publisher_counts,
                                               device if device.startswith("cuda") else None, snapshot_counts))
        ProcessCollector(registry=self.registry)
        for s in stats:
            self.open_events.labels(s.stream).set(0)
        self._event_labels: dict[str, set[str]] = {}  # stream -> labels of its events counter (for forget)
        self._server = None
        self._thread: threading.Thread | None = None
        self._stop_event: threading.Event | None = None
        #: what ended the serving thread, for the supervisor (streamer/supervisor.py), which logs it
        self.failure: BaseException | None = None

    # ---- publisher thread ----------------------------------------------------------------------
    def on_sent(self, topic: str, payload: dict) -> None:
        kind = payload.get("type")
        if kind == "result":
            stream = str(payload["stream"])
            lat = payload.get("latency_ms") or {}
            if lat.get("frame_age_at_inference") is not None:
                self.capture_to_inference.labels(stream).observe(max(0.0, lat["frame_age_at_inference"]) / 1000.0)
            if lat.get("inference") is not None:
                self.inference.labels(stream).observe(lat["inference"] / 1000.0)
            if lat.get("capture_to_publish") is not None:
                self.capture_to_publish.labels(stream).observe(lat["capture_to_publish"] / 1000.0)
            if lat.get("batch_size") is not None:
                self.batch_size.observe(lat["batch_size"])
        elif kind == "event":
            stream = str(payload["stream"])
            if payload.get("phase") == "start":
                self.events.labels(stream, str(payload["label"])).inc()
                self._event_labels.setdefault(stream, set()).add(str(payload["label"]))
                self.open_events.labels(stream).inc()
            elif payload.get("phase") == "end":
                self.open_events.labels(stream).dec()

    def add_stream(self, stream: str) -> None:
        self.open_events.labels(stream).set(0)

    def forget(self, stream: str) -> None:
        """Drop a removed stream's label sets (publisher thread, after its last status was sent)."""
        for metric in (self.capture_to_inference, self.inference, self.capture_to_publish, self.open_events):
            try:
                metric.remove(stream)
            except KeyError:  # prometheus_client < 0.20 raises for a label set with no sample yet
                pass
        for label in self._event_labels.pop(stream, ()):
            self.events.remove(stream, label)

    # ---- lifecycle -----------------------------------------------------------------------------
    @property
    def port(self) -> int | None:
        return None if self._server is None else self._server.server_port

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    def start(self, port: int | None = None) -> None:
        """Bind (``port``, default the configured one) and serve in a thread named ``metrics``;
        a busy port is a PublisherError. The socket is bound here and owned by the thread from then on."""
        from wsgiref.simple_server import make_server

        from prometheus_client import make_wsgi_app
        from prometheus_client.exposition import ThreadingWSGIServer

        cfg = self.config
        port = cfg.port if port is None else port
        try:
            server = make_server(cfg.host, port, make_wsgi_app(self.registry), ThreadingWSGIServer,
                                 handler_class=_quiet_handler())
        except OSError as exc:
            raise PublisherError(f"cannot serve metrics on {cfg.host}:{port}: {exc.strerror}; "
                                 "pick a free port with --metrics-port") from None
        server.timeout = 0.2  # how often the serving loop looks at the stop flag
        self._server, self.failure = server, None
        self._stop_event = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(server, self._stop_event), name="metrics",
                                        daemon=False)
        self._thread.start()
        if cfg.host not in ("127.0.0.1", "localhost", "::1"):
            log.warning("metrics served on all of %s:%d; anyone who can reach it sees stream names and counters",
                        cfg.host, self.port)
        log.info("metrics on http://%s:%d/metrics", cfg.host, self.port)

    def _serve(self, server, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                server.handle_request()  # returns after server.timeout when no request comes
        except Exception as exc:  # a defect: the supervisor logs it once and restarts the server
            self.failure = exc
        finally:
            server.server_close()

    def restart(self) -> None:
        """Serve again on the port the dead thread had (the same one even when 0 was configured)."""
        port = self.port
        self.start(port)

    def request_stop(self) -> None:
        if self._stop_event is not None:
            self._stop_event.set()

    def stop(self, timeout: float = 3.0) -> None:
        self.request_stop()
        if self._thread is not None:
            join_or_warn(self._thread, timeout)

"""The pipeline's configuration: one frozen dataclass per component, composed into :class:`AppConfig`.

Components receive these objects, never dicts or argparse namespaces. Range checks live in
``__post_init__`` and raise :class:`ConfigError` whose message starts with the field name;
:mod:`streamer.configfile` prefixes the key path (``window.hop: ...``) when reading YAML.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

from model.errors import ConfigError
from streamer.ops.annotate import AnnotateConfig
from streamer.ops.events import EventsConfig
from streamer.ops.metrics import MetricsConfig
from streamer.outputs.snapshot import SnapshotConfig

Mode = Literal["live", "file"]
Precision = Literal["auto", "int8", "fp16", "bf16", "fp32", "int8-x86", "int8-bnb", "int8-ao", "fp8"]
Views = Literal["auto", "single", "symmetric"]
StatusLine = Literal["auto", "on", "off"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


def _positive(obj, *names: str, allow_none: bool = False) -> None:
    for name in names:
        value = getattr(obj, name)
        if value is None and allow_none:
            continue
        if value is None or value <= 0:
            raise ConfigError(f"{name}: must be > 0, got {value!r}")


@dataclass(frozen=True)
class SourceOptions:
    """Per-source capture settings (``sources[i].options``)."""

    open_timeout_s: float = 5.0  #: OpenCV open timeout, passed at construction (R1)
    read_timeout_s: float = 5.0  #: OpenCV read timeout, passed at construction (R2)
    stall_timeout_s: float = 5.0  #: no frame for this long -> state "stalled" (watchdog)
    backoff_initial_s: float = 0.5  #: first reconnect delay; doubles per failure (R3)
    backoff_max_s: float = 30.0  #: cap of the reconnect delay
    loop: bool = False  #: files: start again at the end instead of ending
    ring_capacity: Optional[int] = None  #: frames kept per source; default: what the window needs
    max_pixels: int = 3840 * 2160  #: larger frames are dropped and counted (S9)
    max_fps: float = 240.0  #: live: frames arriving faster than this are dropped before preprocessing (S9)
    fps_hint: float = 30.0  #: frame rate assumed for ring sizing when the source reports none
    max_gap_intervals: float = 4.0  #: a pause longer than this many frame intervals splits windows (R6)

    def __post_init__(self) -> None:
        _positive(self, "open_timeout_s", "read_timeout_s", "stall_timeout_s", "backoff_initial_s",
                  "backoff_max_s", "max_pixels", "max_fps", "fps_hint", "max_gap_intervals")
        _positive(self, "ring_capacity", allow_none=True)
        if self.backoff_max_s < self.backoff_initial_s:
            raise ConfigError(f"backoff_max_s: must be >= backoff_initial_s ({self.backoff_initial_s}), "
                              f"got {self.backoff_max_s}")


@dataclass(frozen=True)
class SourceConfig:
    """One video source: a camera index or device, an rtsp/http(s)/tcp URL, a file, or a synthetic source."""

    id: str
    url: str
    mode: Optional[Mode] = None  #: None: the source kind's default (live for cameras/URLs, file for files)
    options: SourceOptions = field(default_factory=SourceOptions)

    def __post_init__(self) -> None:
        if not self.id or not all(c.isalnum() or c in "-_" for c in self.id):
            raise ConfigError(f"id: {self.id!r} must be non-empty letters, digits, '-' or '_' (it becomes a topic)")
        if not self.url:
            raise ConfigError("url: must not be empty")


@dataclass(frozen=True)
class WindowConfig:
    """Which frames make a clip and how often a clip is taken.

    Sampling is by ``stride`` (frames) or by ``span_s`` (the clip's duration in seconds: samples are
    ``span_s / num_frames`` apart by capture timestamp); hop by ``hop`` frames or ``hop_s`` seconds.
    """

    num_frames: Optional[int] = None  #: None: the model's num_frames
    stride: Optional[int] = None  #: frames between samples; default 1 unless span_s is given
    span_s: Optional[float] = None  #: clip duration in seconds (num_frames samples, span_s/num_frames apart)
    hop: Optional[int] = None  #: frames between window ends; default: one sample interval
    hop_s: Optional[float] = None  #: seconds between window ends
    freshness_s: float = 2.0  #: live mode: a window whose newest frame is older is skipped

    def __post_init__(self) -> None:
        _positive(self, "num_frames", "stride", "span_s", "hop", "hop_s", allow_none=True)
        _positive(self, "freshness_s")
        if self.stride is not None and self.span_s is not None:
            raise ConfigError("stride: give stride (frames) or span_s (seconds), not both")
        if self.hop is not None and self.hop_s is not None:
            raise ConfigError("hop: give hop (frames) or hop_s (seconds), not both")

    @property
    def by_time(self) -> bool:
        return self.span_s is not None


@dataclass(frozen=True)
class BatchConfig:
    """How windows of all streams are batched for the model."""

    max_batch: int = 4
    max_wait_ms: float = 5.0  #: after the first ready window, wait this long for more

    def __post_init__(self) -> None:
        _positive(self, "max_batch")
        if self.max_wait_ms < 0:
            raise ConfigError(f"max_wait_ms: must be >= 0, got {self.max_wait_ms}")


@dataclass(frozen=True)
class ModelConfig:
    """Which checkpoint runs, where and how."""

    source: str = "motion-demo"  #: folder, .pyth/.pth file, hub id or built-in name
    precision: Precision = "auto"  #: auto: the choice measured by --bench, else the CPU/GPU rule (README)
    device: str = "auto"  #: auto, cpu, cuda, cuda:N
    int8_threshold: float = 6.0
    top_k: int = 5
    threads: int = 0  #: torch CPU threads; 0 keeps torch's default
    compile: bool = False  #: torch.compile the model (slow first batches; fixed shapes are recompiled once each)
    cuda_graphs: bool = False  #: CUDA only: capture the forward once per batch size in 1, 2, 4, ... max_batch
    #: auto: average over the mirror/transpose views the checkpoint's label_symmetries declare (the motion
    #: demo: 8 views, 8 forward passes a window), else one; single: the frames as they are; symmetric: insist
    views: Views = "auto"

    def __post_init__(self) -> None:
        _positive(self, "top_k", "int8_threshold")
        if self.threads < 0:
            raise ConfigError(f"threads: must be >= 0, got {self.threads}")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ConfigError(f"device: {self.device!r} is not auto, cpu, cuda or cuda:N")


@dataclass(frozen=True)
class PublisherConfig:
    """The ZeroMQ PUB socket results and status go out on."""

    address: str = "tcp://127.0.0.1:5555"
    sndhwm: int = 1000  #: messages queued per subscriber before ZeroMQ drops (at-most-once)
    linger_ms: int = 200
    heartbeat_s: float = 1.0  #: status of every stream at least this often (R17)
    queue_size: int = 1000  #: bound of the in-process queue in front of the socket
    wait_subscribers: int = 0  #: before capture starts, wait for this many subscriptions (XPUB)
    wait_subscribers_timeout_s: float = 10.0
    curve_secret_key: Optional[str] = None  #: server's NAME.key_secret (python -m streamer.keys): encrypt with CURVE
    curve_allow_dir: Optional[str] = None  #: folder of the *.key public keys of clients allowed to subscribe

    def __post_init__(self) -> None:
        if "://" not in self.address or self.address.split("://", 1)[0] not in ("tcp", "ipc", "inproc"):
            raise ConfigError(f"address: {self.address!r} must be tcp://HOST:PORT, ipc://PATH or inproc://NAME")
        _positive(self, "sndhwm", "heartbeat_s", "queue_size", "wait_subscribers_timeout_s")
        if self.linger_ms < 0 or self.wait_subscribers < 0:
            raise ConfigError("linger_ms: and wait_subscribers must be >= 0")
        if bool(self.curve_secret_key) != bool(self.curve_allow_dir):  # CURVE without an allow-list admits anyone
            raise ConfigError("curve_allow_dir: CURVE needs both curve_secret_key and curve_allow_dir (the folder of "
                              "allowed clients' public keys)")

    @property
    def curve(self) -> bool:
        return bool(self.curve_secret_key)


@dataclass(frozen=True)
class LoggingConfig:
    level: LogLevel = "INFO"
    status_line: StatusLine = "auto"  #: live per-stream line on a terminal; auto: only if stderr is a TTY
    status_interval_s: float = 1.0

    def __post_init__(self) -> None:
        _positive(self, "status_interval_s")


@dataclass(frozen=True)
class RunConfig:
    """When the run stops by itself (otherwise at end of all files, or on SIGINT/SIGTERM)."""

    max_windows: Optional[int] = None  #: stop after this many results in total
    duration_s: Optional[float] = None
    max_sources: int = 64  #: more sources than this in one process is refused at start (S9)

    def __post_init__(self) -> None:
        _positive(self, "max_windows", "duration_s", allow_none=True)
        _positive(self, "max_sources")


@dataclass(frozen=True)
class AppConfig:
    sources: tuple[SourceConfig, ...]
    window: WindowConfig = field(default_factory=WindowConfig)
    batching: BatchConfig = field(default_factory=BatchConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    publisher: PublisherConfig = field(default_factory=PublisherConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    run: RunConfig = field(default_factory=RunConfig)
    events: EventsConfig = field(default_factory=EventsConfig)  #: action events (streamer/ops/events.py)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)  #: Prometheus endpoint (streamer/ops/metrics.py)
    annotate: AnnotateConfig = field(default_factory=AnnotateConfig)  #: annotated video (streamer/ops/annotate.py)
    snapshot: SnapshotConfig = field(default_factory=SnapshotConfig)  #: late joiners (streamer/outputs/snapshot.py)

    def __post_init__(self) -> None:
        if not self.sources:
            raise ConfigError("sources: at least one source is needed (use --source URL)")
        ids = [s.id for s in self.sources]
        if len(ids) > self.run.max_sources:
            raise ConfigError(f"sources: {len(ids)} sources, more than run.max_sources = {self.run.max_sources}; "
                              f"raise run.max_sources if this machine can carry them, or split them over processes")
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ConfigError(f"sources: duplicate id {dupes[0]!r}; give each source its own id")

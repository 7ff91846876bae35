"""The pipeline's configuration: one frozen pydantic model per section, composed into :class:`AppConfig`.

Every section the config file can have is declared here (and only here); components receive these
objects, never dicts or argparse namespaces, and read attributes (``cfg.window.span_s``). Types are
strict and ranges are declared on the fields; a check that spans fields raises :class:`ConfigError`
with ``key: message`` relative to its section, and :mod:`streamer.configerrors` prefixes the rest of
the path. Reading YAML, ``${ENV}`` expansion, relative paths and the merge over configs/default.yaml
are in :mod:`streamer.configfile`; every key is documented in docs/CONFIG.md, and
``python -m streamer.config --schema`` prints the JSON Schema kept in docs/config.schema.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Annotated, Any, ClassVar, Literal, Optional

from pydantic import AfterValidator, BeforeValidator, Field, NonNegativeFloat, NonNegativeInt, PositiveFloat, \
    PositiveInt, SecretStr, model_validator

from model.errors import ConfigError
from streamer.configerrors import key_path, short
from streamer.configtypes import Address, CheckpointRef, ConfigPath, Section, SourceUrl, invalid, keys_as_text, \
    list_as_tuple

Mode = Literal["live", "file"]
Precision = Literal["auto", "int8", "fp16", "bf16", "fp32", "int8-x86", "int8-bnb", "int8-ao", "fp8"]
Views = Literal["auto", "single", "symmetric"]
StatusLine = Literal["auto", "on", "off"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
Smoothing = Literal["ema", "k_of_n"]

EVENT_HISTORY = 64  #: windows of history kept per stream and class for back-dating (bounds events.*.n)
ANNOTATE_FORMATS = {".mp4": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}  #: annotate.path suffix -> OpenCV fourcc


def _check_stream_id(value: str) -> str:
    if not value or not all(c.isalnum() or c in "-_" for c in value):
        raise invalid(f"{short(value)} must be non-empty letters, digits, '-' or '_' (it becomes a topic)")
    return value


def _check_device(value: str) -> str:
    if not (value in ("auto", "cpu", "cuda") or (value.startswith("cuda:") and value[5:].isdigit())):
        raise invalid(f"{short(value)} is not auto, cpu, cuda or cuda:N")
    return value


def _check_video_path(value: str) -> str:
    if not value.lower().endswith(tuple(ANNOTATE_FORMATS)):
        raise invalid(f"{short(value)} must end in {', '.join(ANNOTATE_FORMATS)}")
    return value


class SourceOptions(Section):
    """Per-source capture settings (``sources[i].options``)."""

    open_timeout_s: PositiveFloat = Field(5.0, description="OpenCV open timeout, passed at construction (R1)")
    read_timeout_s: PositiveFloat = Field(5.0, description="OpenCV read timeout, passed at construction (R2)")
    stall_timeout_s: PositiveFloat = Field(5.0, description="no frame for this long: state 'stalled' (watchdog)")
    stall_reopen: bool = Field(False, description="live sources: a stalled source is also reopened (through "
                                                  "backoff), not only labelled")
    backoff_initial_s: PositiveFloat = Field(0.5, description="first reconnect delay; doubles per failure (R3)")
    backoff_max_s: PositiveFloat = Field(30.0, description="cap of the reconnect delay")
    loop: bool = Field(False, description="files: start again at the end instead of ending")
    ring_capacity: Optional[PositiveInt] = Field(None, description="frames kept per source; null: what the window "
                                                                   "needs at the source's frame rate")
    max_pixels: PositiveInt = Field(3840 * 2160, description="larger frames are dropped and counted (S9)")
    max_fps: PositiveFloat = Field(240.0, description="live: frames arriving faster are dropped before "
                                                      "preprocessing (S9)")
    fps_hint: PositiveFloat = Field(30.0, description="frame rate assumed for ring sizing when the source "
                                                      "reports none")
    max_gap_intervals: PositiveFloat = Field(4.0, description="a pause longer than this many frame intervals "
                                                              "splits windows (R6)")

    @model_validator(mode="after")
    def _backoff(self) -> "SourceOptions":
        if self.backoff_max_s < self.backoff_initial_s:
            raise ConfigError(f"backoff_max_s: must be >= backoff_initial_s ({self.backoff_initial_s:g}), "
                              f"got {self.backoff_max_s:g}")
        return self


class SourceConfig(Section):
    """One video source: a camera index or device, an rtsp/http(s)/tcp URL, a file, or a generated source."""

    id: Annotated[str, AfterValidator(_check_stream_id)] = Field(
        description="the stream's name in topics and messages: letters, digits, '-' and '_'")
    url: SourceUrl = Field(description="camera index, /dev/videoN, rtsp://, http(s)://, tcp://, file path, "
                                       "testpattern://, synthetic://")
    mode: Optional[Mode] = Field(None, description="live or file; null: the source kind's default (live for "
                                                   "cameras and URLs, file for files)")
    options: SourceOptions = Field(default_factory=SourceOptions, description="capture settings")


class WindowConfig(Section):
    """Which frames make a clip and how often a clip is taken.

    Sampling is by ``stride`` (frames) or by ``span_s`` (the clip's duration in seconds: samples are
    ``span_s / num_frames`` apart by capture timestamp); hop by ``hop`` frames or ``hop_s`` seconds.
    ``None`` means "from the model" (its frame count and declared sampling). Which keys a config
    set explicitly: :meth:`sampling_overrides` (from pydantic's ``model_fields_set``).
    """

    #: keys that exclude each other; a config layer that sets one drops the other from the layers below
    exclusive: ClassVar[tuple[tuple[str, str], ...]] = (("stride", "span_s"), ("hop", "hop_s"))
    sampling_keys: ClassVar[tuple[str, ...]] = ("num_frames", "stride", "span_s")

    num_frames: Optional[PositiveInt] = Field(None, description="frames per clip; null: the model's")
    stride: Optional[PositiveInt] = Field(None, description="frames between samples; null: from the model, "
                                                            "else 1")
    span_s: Optional[PositiveFloat] = Field(None, description="clip duration in seconds (num_frames samples, "
                                                              "span_s/num_frames apart)")
    hop: Optional[PositiveInt] = Field(None, description="frames between window ends; null: one sample interval")
    hop_s: Optional[PositiveFloat] = Field(None, description="seconds between window ends")
    freshness_s: PositiveFloat = Field(2.0, description="live mode: a window whose newest frame is older is "
                                                        "skipped")

    @model_validator(mode="after")
    def _one_of_each_pair(self) -> "WindowConfig":
        for frames, seconds in self.exclusive:
            if getattr(self, frames) is not None and getattr(self, seconds) is not None:
                raise ConfigError(f"{frames}: give {frames} (frames) or {seconds} (seconds), not both")
        return self

    @property
    def by_time(self) -> bool:
        return self.span_s is not None

    def sampling_overrides(self) -> dict[str, Any]:
        """The sampling keys (num_frames, stride, span_s) a config layer set to a value, by name.

        Empty when the window's sampling comes from the model; a key set to ``null`` does not count.
        """
        return {k: getattr(self, k) for k in self.sampling_keys
                if k in self.model_fields_set and getattr(self, k) is not None}


class BatchConfig(Section):
    """How windows of all streams are batched for the model."""

    max_batch: PositiveInt = Field(4, description="windows per forward pass at most")
    max_wait_ms: NonNegativeFloat = Field(5.0, description="after the first ready window, wait this long for more")


class ModelConfig(Section):
    """Which checkpoint runs, where and how."""

    source: CheckpointRef = Field("motion-demo", description="folder, .pyth/.pth file, hub id org/name, or "
                                                             "built-in name")
    precision: Precision = Field("auto", description="auto: the choice measured by --bench, else the "
                                                     "CPU/GPU rule (README, precision)")
    device: Annotated[str, AfterValidator(_check_device)] = Field("auto", description="auto, cpu, cuda or cuda:N")
    int8_threshold: PositiveFloat = Field(6.0, description="bitsandbytes outlier threshold (int8)")
    top_k: PositiveInt = Field(5, description="labels per result")
    threads: NonNegativeInt = Field(0, description="torch CPU threads; 0 keeps torch's default")
    compile: bool = Field(False, description="torch.compile the model (slow first batches)")
    cuda_graphs: bool = Field(False, description="CUDA only: capture the forward once per batch size 1, 2, 4, "
                                                 "... max_batch")
    views: Views = Field("auto", description="auto: average over the mirror/transpose views the checkpoint's "
                                             "label_symmetries declare, else one; single; symmetric: insist")


class PublisherConfig(Section):
    """The ZeroMQ PUB socket results, status and events go out on."""

    address: Address = Field("tcp://127.0.0.1:5555", description="ZeroMQ address to bind")
    sndhwm: PositiveInt = Field(1000, description="messages queued per subscriber before ZeroMQ drops "
                                                  "(at-most-once)")
    linger_ms: NonNegativeInt = Field(200, description="how long close() may flush queued messages")
    heartbeat_s: PositiveFloat = Field(1.0, description="status of every stream at least this often (R17)")
    queue_size: PositiveInt = Field(1000, description="bound of the in-process queue in front of the socket")
    wait_subscribers: NonNegativeInt = Field(0, description="before capture starts, wait for this many "
                                                            "subscriptions")
    wait_subscribers_timeout_s: PositiveFloat = Field(10.0, description="give up waiting for subscribers after "
                                                                        "this long")
    curve_secret_key: Optional[ConfigPath] = Field(None, description="server's NAME.key_secret "
                                                                     "(python -m streamer.keys): encrypt with CURVE")
    curve_allow_dir: Optional[ConfigPath] = Field(None, description="folder of the *.key public keys of clients "
                                                                    "allowed to subscribe")

    @model_validator(mode="after")
    def _curve_pair(self) -> "PublisherConfig":
        if bool(self.curve_secret_key) != bool(self.curve_allow_dir):  # CURVE without an allow-list admits anyone
            raise ConfigError("curve_allow_dir: CURVE needs both curve_secret_key and curve_allow_dir (the folder "
                              "of allowed clients' public keys)")
        return self

    @property
    def curve(self) -> bool:
        return bool(self.curve_secret_key)


class LoggingConfig(Section):
    """Log level and the live status line."""

    level: LogLevel = Field("INFO", description="logging level")
    status_line: StatusLine = Field("auto", description="live per-stream line on a terminal; auto: only if "
                                                        "stderr is a TTY")
    status_interval_s: PositiveFloat = Field(1.0, description="status line refresh interval")


class RunConfig(Section):
    """When the run stops by itself (otherwise at the end of all files, or on SIGINT/SIGTERM)."""

    max_windows: Optional[PositiveInt] = Field(None, description="stop after this many results in total")
    duration_s: Optional[PositiveFloat] = Field(None, description="stop after this many seconds")
    max_sources: PositiveInt = Field(64, description="more sources than this in one process is refused at "
                                                     "start (S9)")


class EventRule(Section):
    """How one class becomes events (``events.default``, or a class's merged override)."""

    enabled: bool = Field(True, description="false: this class never makes events")
    smoothing: Smoothing = Field("k_of_n", description="ema or k_of_n")
    alpha: Annotated[float, Field(gt=0, le=1)] = Field(0.5, description="ema: weight of the newest score")
    k: PositiveInt = Field(2, description="k_of_n: windows that must agree ...")
    n: Annotated[int, Field(gt=0, le=EVENT_HISTORY)] = Field(3, description="... out of the last n")
    enter: Annotated[float, Field(gt=0, le=1)] = Field(0.6, description="smoothed score that opens an event")
    exit: Annotated[float, Field(ge=0, le=1)] = Field(0.4, description="smoothed score below which it ends "
                                                                       "(<= enter: hysteresis)")
    min_duration_s: NonNegativeFloat = Field(0.5, description="shorter candidates are never announced")
    cooldown_s: NonNegativeFloat = Field(1.0, description="after an end, the class cannot start again for this "
                                                          "long")

    @model_validator(mode="after")
    def _consistent(self) -> "EventRule":
        if self.n < self.k:
            raise ConfigError(f"k: need 1 <= k <= n, got k={self.k}, n={self.n}")
        if self.exit > self.enter:
            raise ConfigError(f"exit: must be in [0, enter={self.enter:g}], got {self.exit:g}")
        return self

    @property
    def boundary(self) -> float:
        return (self.enter + self.exit) / 2.0


class ClassOverride(Section):
    """``events.classes.<label>``: any key left out is taken from ``events.default``."""

    enabled: Optional[bool] = None
    smoothing: Optional[Smoothing] = None
    alpha: Optional[float] = None
    k: Optional[int] = None
    n: Optional[int] = None
    enter: Optional[float] = None
    exit: Optional[float] = None
    min_duration_s: Optional[float] = None
    cooldown_s: Optional[float] = None


class EventsConfig(Section):
    """The ``events`` section. On by default: the embedded default emits events."""

    enabled: bool = Field(True, description="publish action events on event.<stream>")
    default: EventRule = Field(default_factory=EventRule, description="the rule of every class")
    classes: Annotated[dict[str, ClassOverride], BeforeValidator(keys_as_text)] = Field(
        default_factory=dict, description="per-class overrides of the default rule, by label")
    update_interval_s: PositiveFloat = Field(1.0, description="an open event sends an update this often "
                                                              "(stream clock)")

    @model_validator(mode="after")
    def _class_rules(self) -> "EventsConfig":
        for label, over in self.classes.items():
            try:  # a checked rule, so rule() may merge without checking again
                EventRule(**{**self.default.model_dump(), **over.model_dump(exclude_none=True)})
            except ConfigError as exc:
                raise ConfigError(f"{key_path([label], 'classes')}.{exc}") from None
        return self

    def rule(self, label: str) -> EventRule:
        over = self.classes.get(label)
        if over is None:
            return self.default
        return self.default.model_copy(update=over.model_dump(exclude_none=True))

    def check_labels(self, labels: tuple[str, ...] | list[str]) -> None:
        """A per-class rule for a label the model does not have is a config error (a typo, usually)."""
        unknown = sorted(set(self.classes) - set(labels))
        if unknown:
            shown = ", ".join(list(labels)[:12]) + (", ..." if len(labels) > 12 else "")
            raise ConfigError(f"{key_path([unknown[0]], 'events.classes')}: not a label of the model; "
                              f"its labels are: {shown}")


class MetricsConfig(Section):
    """The ``metrics`` section: a Prometheus endpoint (streamer/ops/metrics.py)."""

    enabled: bool = Field(False, description="serve /metrics")
    host: str = Field("127.0.0.1", min_length=1, description="interface to bind; 0.0.0.0 exposes it on every "
                                                             "interface")
    port: Annotated[int, Field(ge=0, le=65535)] = Field(9108, description="TCP port; 0: any free port (logged)")


class AnnotateConfig(Section):
    """The ``annotate`` section: the video with results drawn on it (streamer/ops/annotate.py)."""

    path: Optional[Annotated[ConfigPath, AfterValidator(_check_video_path)]] = Field(
        None, description="video file to write (.mp4, .avi or .mkv; several streams: NAME.<stream>.mp4)")
    window: bool = Field(False, description="also show the frames in a window (needs a display)")
    max_pending: PositiveInt = Field(128, description="frames held per stream waiting for the result that "
                                                      "covers them")
    queue_size: PositiveInt = Field(256, description="frames in flight from the capture threads to the "
                                                     "annotate thread")

    @property
    def active(self) -> bool:
        return self.path is not None or self.window


class SnapshotConfig(Section):
    """The ``snapshot`` section: a socket that answers late joiners (streamer/outputs/snapshot.py)."""

    address: Optional[Address] = Field(None, description="ZeroMQ address to bind (not the publisher's); null: "
                                                         "no snapshot socket")
    max_request_bytes: Annotated[int, Field(ge=64)] = Field(4096, description="larger requests are refused by "
                                                                              "ZeroMQ")
    linger_ms: NonNegativeInt = Field(200, description="how long close() may flush replies")


CONTROL_ADDRESS = "tcp://127.0.0.1:5557"  #: where configs/default.yaml binds the control socket (and ctl looks)


class ControlConfig(Section):
    """The ``control`` section: add, remove and change sources while running (streamer/control/)."""

    address: Optional[Address] = Field(None, description=f"ZeroMQ address of the control socket "
                                                         f"(configs/default.yaml: {CONTROL_ADDRESS}); null "
                                                         f"(--control off): none. Off loopback only with the "
                                                         f"publisher's CURVE keys (S10)")
    state_file: Optional[ConfigPath] = Field(None, description="the running set of sources, rewritten atomically "
                                                               "after every change; at start a present file is the "
                                                               "source list instead of sources: (--state FILE)")
    max_request_bytes: Annotated[int, Field(ge=1024, le=65536)] = Field(65536, description="larger requests are "
                                                                                          "refused by ZeroMQ")


UI_TOKEN_ENV = "TIMESFORMER_UI_TOKEN"  #: read when ``ui.token`` is not in the config (e.g. with ``--ui HOST:PORT``)
EventPhase = Literal["start", "update", "end"]


def split_host_port(address: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) as (host, port); ValueError with the fix otherwise."""
    host, sep, port = address.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{short(address)} must be HOST:PORT, e.g. 127.0.0.1:8080 (port 0: any free port)")
    return host, int(port)


def _not_blank(value: str) -> str:
    if not value.strip():
        raise invalid("must not be empty")
    return value


def _check_host_port(value: str) -> str:
    try:
        split_host_port(value)
    except ValueError as exc:
        raise invalid(str(exc)) from None
    return value


def _token_from_env(data: Any) -> Any:
    if isinstance(data, dict) and data.get("token") is None:
        import os

        if os.environ.get(UI_TOKEN_ENV):
            return {**data, "token": os.environ[UI_TOKEN_ENV]}
    return data


class UiConfig(Section):
    """The ``ui`` section: the operator's web page (streamer/ops/console/; ``--ui ADDRESS``, ``--ui off``)."""

    enabled: bool = Field(True, description="serve the web console")
    address: Annotated[str, AfterValidator(_check_host_port)] = Field(
        "127.0.0.1:8080", description="HOST:PORT to serve on (port 0: any free port); off loopback a token is "
                                      "required (S10)")
    token: Optional[SecretStr] = Field(None, description=f"required off loopback; every request then carries it "
                                                         f"(login form cookie, or Authorization: Bearer); default: "
                                                         f"the {UI_TOKEN_ENV} environment variable")
    preview_fps: Annotated[float, Field(gt=0, le=5.0)] = Field(5.0, description="at most this many preview JPEGs a "
                                                                                "second per stream")
    preview_width: Annotated[int, Field(ge=64, le=480)] = Field(480, description="previews are scaled down to at "
                                                                                 "most this width")
    events: Annotated[int, Field(ge=1, le=1000)] = Field(200, description="newest events listed on the page")
    timeline_s: Annotated[float, Field(gt=0, le=3600)] = Field(600.0, description="span of each stream's timeline")

    @model_validator(mode="before")
    @classmethod
    def _env_token(cls, data: Any) -> Any:
        return _token_from_env(data)

    @model_validator(mode="after")
    def _token_off_loopback(self) -> "UiConfig":
        if self.enabled and self.token is None and not self.loopback:
            raise ConfigError(f"token: binding {self.address} lets other machines open the console: set ui.token "
                              f"(or the {UI_TOKEN_ENV} environment variable), or bind 127.0.0.1")
        if self.token is not None and len(self.token.get_secret_value()) < 8:
            raise ConfigError("token: use at least 8 characters")
        return self

    @property
    def host(self) -> str:
        return split_host_port(self.address)[0]

    @property
    def port(self) -> int:
        return split_host_port(self.address)[1]

    @property
    def loopback(self) -> bool:
        from streamer.outputs.security import is_loopback

        return is_loopback(f"tcp://{self.host}:{self.port}")


class ClipsConfig(Section):
    """The ``clips`` section: an MP4 per event, ``<dir>/<stream>/<event id>.mp4`` (streamer/ops/clips.py)."""

    enabled: bool = Field(True, description="write a clip for every event")
    dir: Annotated[ConfigPath, AfterValidator(_not_blank)] = Field("clips", description="folder of the clips")
    pre_s: Annotated[float, Field(ge=0, le=60)] = Field(3.0, description="seconds of video before the event's start")
    post_s: Annotated[float, Field(ge=0, le=60)] = Field(2.0, description="seconds after its end")
    max_clip_s: PositiveFloat = Field(300.0, description="a longer event's clip stops here (marked truncated)")
    max_total_mb: PositiveFloat = Field(2000.0, description="the oldest clips are deleted past this total")
    max_age_h: PositiveFloat = Field(72.0, description="clips older than this are deleted")
    buffer_mb: Annotated[float, Field(gt=0, le=4096)] = Field(
        64.0, description="raw frames kept per stream for the pre-roll and for the writer to catch up; a large "
                          "source keeps fewer seconds than pre_s then (the clip starts later; its .json says where)")
    crf: Annotated[int, Field(ge=0, le=51)] = Field(26, description="H.264 quality (lower: better and larger)")
    preset: Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium"] = Field(
        "veryfast", description="x264 speed preset: a faster one spends less CPU for a larger file, by how much "
                                "depends on the video (benchmarks/bench_console.py compares two)")


class AlertFilter(Section):
    """What an alert sends: event phases, classes and streams (empty: all)."""

    phases: Annotated[tuple[EventPhase, ...], BeforeValidator(list_as_tuple)] = Field(
        ("start", "end"), description="which event phases are sent")
    classes: Annotated[tuple[str, ...], BeforeValidator(list_as_tuple)] = Field(
        (), description="only these labels (empty: all)")
    streams: Annotated[tuple[str, ...], BeforeValidator(list_as_tuple)] = Field(
        (), description="only these streams (empty: all)")
    queue_size: Annotated[int, Field(ge=1, le=100000)] = Field(
        100, description="messages waiting to be sent; when full the oldest is dropped (counted)")

    def wants(self, msg: dict) -> bool:
        return (msg.get("phase") in self.phases and (not self.classes or msg.get("label") in self.classes)
                and (not self.streams or msg.get("stream") in self.streams))


class WebhookAlert(AlertFilter):
    """``{kind: webhook, url: ...}``: a JSON POST of each event message (streamer/ops/alerts.py)."""

    kind: Literal["webhook"] = Field(description="webhook")
    url: SecretStr = Field(description="http(s)://...; may carry a secret: write it as ${ENV_VAR}")
    headers: Annotated[dict[str, SecretStr], BeforeValidator(keys_as_text)] = Field(
        {}, description="extra request headers, e.g. {Authorization: 'Bearer ${HOOK_TOKEN}'}")
    timeout_s: Annotated[float, Field(gt=0, le=120)] = Field(5.0, description="per request")
    backoff_initial_s: PositiveFloat = Field(0.5, description="first retry delay; doubles per failure")
    backoff_max_s: PositiveFloat = Field(30.0, description="cap of the retry delay")
    max_attempts: NonNegativeInt = Field(0, description="0: retry until delivered (or pushed out of the queue)")

    @model_validator(mode="after")
    def _check(self) -> "WebhookAlert":
        if not self.url.get_secret_value().startswith(("http://", "https://")):
            raise ConfigError("url: must start with http:// or https://")
        if self.backoff_max_s < self.backoff_initial_s:
            raise ConfigError("backoff_max_s: must be >= backoff_initial_s")
        return self


def _check_topic_prefix(value: str) -> str:
    if not value or any(c in value for c in "#+") or value.startswith("/") or value.endswith("/"):
        raise invalid(f"{short(value)} must be a topic without wildcards or leading/trailing '/', e.g. timesformer")
    return value


class MqttAlert(AlertFilter):
    """``{kind: mqtt, host: ...}``: ``<prefix>/<stream>/event`` and retained ``<prefix>/<stream>/status``, QoS 1."""

    kind: Literal["mqtt"] = Field(description="mqtt")
    host: Annotated[str, Field(min_length=1)] = Field(description="broker host")
    port: Annotated[int, Field(ge=1, le=65535)] = Field(1883, description="broker port")
    topic_prefix: Annotated[str, AfterValidator(_check_topic_prefix)] = Field("timesformer", description="topic prefix")
    username: Optional[str] = Field(None, description="broker user")
    password: Optional[SecretStr] = Field(None, description="broker password; write it as ${ENV_VAR}")
    tls: bool = Field(False, description="connect with TLS")
    client_id: str = Field("", description="empty: the broker assigns one")
    keepalive_s: Annotated[int, Field(ge=5, le=3600)] = Field(30, description="MQTT keepalive")
    status: bool = Field(True, description="also publish each stream's status (retained)")
    status_interval_s: PositiveFloat = Field(10.0, description="status at most this often unless the state changes")
    queue_size: Annotated[int, Field(ge=1, le=100000)] = Field(1000, description="messages waiting to be sent; "
                                                                                 "when full the oldest is dropped")


def _alert(value: Any) -> Any:
    """An alert entry as the model its ``kind`` names (errors then name ``alerts[i].key``, not the union's tag)."""
    if isinstance(value, (WebhookAlert, MqttAlert)) or not isinstance(value, dict):
        return value
    kinds = {"webhook": WebhookAlert, "mqtt": MqttAlert}
    kind = kinds.get(value.get("kind"))
    if kind is None:
        raise ConfigError(f"kind: must be one of {', '.join(kinds)}")
    return kind(**value)


AlertConfig = Annotated[WebhookAlert | MqttAlert, BeforeValidator(_alert)]


def _check_cluster_address(value: str) -> str:
    """``local:N``, ``auto``, ``ray://HOST:PORT`` or ``HOST:PORT`` (a Ray head's GCS address)."""
    if value.startswith("local:"):
        count = value[len("local:"):]
        if not count.isdigit() or int(count) < 1:
            raise invalid(f"{short(value)} needs a worker count N >= 1 (local:N, e.g. local:2)")
        return value
    if value == "auto":
        return value
    rest = value[len("ray://"):] if value.startswith("ray://") else value
    host, sep, port = rest.rpartition(":")
    if not sep or not host or "/" in rest or not port.isdigit() or not 0 < int(port) <= 65535:
        raise invalid(f"{short(value)} must be local:N, auto, ray://HOST:PORT or HOST:PORT (a Ray head's address)")
    return value


class ClusterConfig(Section):
    """The ``cluster`` section: one recognizer over many GPUs and nodes, on Ray (docs/CLUSTER.md)."""

    address: Optional[Annotated[str, AfterValidator(_check_cluster_address)]] = Field(
        None, description="null: this machine only; local:N: a local Ray with N workers; auto, ray://HOST:10001 or "
                          "HOST:6379: an existing Ray cluster")
    workers: Optional[PositiveInt] = Field(None, description="worker actors; null: N of local:N, else one per GPU "
                                                             "(one per node without GPUs)")
    gpus_per_worker: Optional[NonNegativeFloat] = Field(None, description="GPUs each worker reserves; null: 1 when "
                                                                          "the cluster has GPUs, else 0")
    cpus_per_worker: PositiveFloat = Field(1.0, description="CPUs each worker reserves")
    max_restarts: Annotated[int, Field(ge=-1)] = Field(-1, description="times Ray restarts a lost worker (on "
                                                                       "another node if need be); -1: no limit")
    health_timeout_s: PositiveFloat = Field(5.0, description="a worker that has not answered a health check for "
                                                             "this long is lost: its streams move")

    @property
    def local_workers(self) -> int | None:
        """N of ``local:N`` (a Ray this process starts), else None."""
        if self.address is None or not self.address.startswith("local:"):
            return None
        return int(self.address[len("local:"):])


class AppConfig(Section):
    """The whole configuration: what ``--config`` files, configs/default.yaml and flags describe together."""

    missing_hints: ClassVar[dict[str, str]] = {"sources": "list at least one source or pass --source URL"}

    sources: Annotated[tuple[SourceConfig, ...], BeforeValidator(list_as_tuple)] = Field(
        description="the video sources; a bare string is a URL whose id is s<index>")
    window: WindowConfig = Field(default_factory=WindowConfig)
    batching: BatchConfig = Field(default_factory=BatchConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    publisher: PublisherConfig = Field(default_factory=PublisherConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    run: RunConfig = Field(default_factory=RunConfig)
    events: EventsConfig = Field(default_factory=EventsConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    annotate: AnnotateConfig = Field(default_factory=AnnotateConfig)
    snapshot: SnapshotConfig = Field(default_factory=SnapshotConfig)
    control: ControlConfig = Field(default_factory=ControlConfig)
    ui: UiConfig = Field(default_factory=UiConfig)
    clips: ClipsConfig = Field(default_factory=ClipsConfig)
    alerts: Annotated[tuple[AlertConfig, ...], BeforeValidator(list_as_tuple)] = Field(
        (), description="webhooks and MQTT brokers that receive events (streamer/ops/alerts.py)")
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)

    @model_validator(mode="after")
    def _sources(self) -> "AppConfig":
        if not self.sources and self.control.address is None:  # with a control socket, sources come later
            raise ConfigError("sources: at least one source is needed (use --source URL)")
        ids = [s.id for s in self.sources]
        if len(ids) > self.run.max_sources:
            raise ConfigError(f"sources: {len(ids)} sources, more than run.max_sources = {self.run.max_sources}; "
                              f"raise run.max_sources if this machine can carry them, or split them over processes")
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ConfigError(f"sources: duplicate id {dupes[0]!r}; give each source its own id")
        return self

    @model_validator(mode="after")
    def _control_exposure(self) -> "AppConfig":
        if self.control.address is not None:
            from streamer.control.server import check_exposure  # S10: the one check, shared with the server

            check_exposure(self.control.address, self.publisher.curve)
        return self


def config_schema() -> dict[str, Any]:
    """The JSON Schema of a config file (docs/config.schema.json).

    That of :class:`AppConfig`, for a file rather than the merged result: no key is required (a file
    merges over configs/default.yaml), and a source may be a bare URL string.
    """
    schema = _untitled(AppConfig.model_json_schema())
    schema.pop("required", None)
    sources = schema["properties"]["sources"]
    sources["items"] = {"anyOf": [{"type": "string", "minLength": 1}, sources["items"]]}
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "timesformer-stream config file (merged over configs/default.yaml; see docs/CONFIG.md)"
    return schema


def _untitled(node: Any) -> Any:
    """The schema without the titles pydantic derives from key names ("Hop S"): noise in an editor."""
    if isinstance(node, dict):
        return {k: _untitled(v) for k, v in node.items() if not (k == "title" and isinstance(v, str))}
    if isinstance(node, list):
        return [_untitled(v) for v in node]
    return node


def schema_text() -> str:
    return json.dumps(config_schema(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streamer.config", description="The config file's JSON Schema.")
    parser.add_argument("--schema", action="store_true", required=True,
                        help="print the JSON Schema (python -m streamer.config --schema > docs/config.schema.json)")
    parser.parse_args(argv)
    sys.stdout.write(schema_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())

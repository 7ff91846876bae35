"""The operator console's config sections: ``ui`` (web page), ``clips`` (event clips), ``alerts``.

Pydantic v2 models, frozen, unknown keys refused (``extra="forbid"``). Secrets (the UI token, MQTT
password, webhook URLs and headers) are ``SecretStr``: their repr and str are ``**********``, so a
config printed or logged never shows them; each may come from an environment variable instead of
the file (read here, once, while the config is built: components never read the environment).
"""

from __future__ import annotations

import os
from typing import Annotated, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from model.errors import ConfigError
from streamer.outputs.security import is_loopback

#: environment variable read when ``ui.token`` is not in the config
TOKEN_ENV = "TIMESFORMER_UI_TOKEN"

Phase = Literal["start", "update", "end"]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def split_address(address: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) as (host, port); ValueError with the fix otherwise."""
    host, sep, port = address.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{address!r} must be HOST:PORT, e.g. 127.0.0.1:8080 (port 0: any free port)")
    return host, int(port)


def _from_env(data: object, key: str, env: Optional[str]) -> object:
    """``data`` with ``key`` filled from the environment variable ``env`` when the config leaves it out."""
    if isinstance(data, dict) and data.get(key) is None and env and os.environ.get(env):
        return {**data, key: os.environ[env]}
    return data


class UiConfig(_Section):
    """The ``ui`` section: the web page (``--ui ADDRESS``, ``--ui off``)."""

    enabled: bool = True
    address: str = "127.0.0.1:8080"  #: HOST:PORT; off loopback a token is required (S10)
    #: required off loopback; every request then carries it (login form cookie, or Authorization: Bearer)
    token: Optional[SecretStr] = None
    preview_fps: float = Field(5.0, gt=0, le=5.0)  #: at most this many preview JPEGs a second per stream
    preview_width: int = Field(480, ge=64, le=480)  #: previews are scaled down to at most this width
    events: int = Field(200, ge=1, le=1000)  #: newest events listed
    timeline_s: float = Field(600.0, gt=0, le=3600)  #: span of each stream's timeline

    @model_validator(mode="before")
    @classmethod
    def _token_from_env(cls, data: object) -> object:
        return _from_env(data, "token", TOKEN_ENV)

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        split_address(value)
        return value

    @model_validator(mode="after")
    def _token_off_loopback(self) -> "UiConfig":
        if self.enabled and self.token is None and not self.loopback:
            raise ValueError(f"token: binding {self.address} lets other machines open the console: set ui.token (or the "
                             f"{TOKEN_ENV} environment variable), or bind 127.0.0.1")
        if self.token is not None and len(self.token.get_secret_value()) < 8:
            raise ValueError("token: use at least 8 characters")
        return self

    @property
    def host(self) -> str:
        return split_address(self.address)[0]

    @property
    def port(self) -> int:
        return split_address(self.address)[1]

    @property
    def loopback(self) -> bool:
        return is_loopback(f"tcp://{self.host}:{self.port}")


class ClipsConfig(_Section):
    """The ``clips`` section: an MP4 per event, ``<dir>/<stream>/<event id>.mp4``."""

    enabled: bool = True
    dir: str = "clips"  #: relative paths are relative to the config file's folder
    pre_s: float = Field(3.0, ge=0, le=60)  #: seconds of video before the event's start
    post_s: float = Field(2.0, ge=0, le=60)  #: seconds after its end
    max_clip_s: float = Field(300.0, gt=0)  #: a longer event's clip stops here (marked truncated)
    max_total_mb: float = Field(2000.0, gt=0)  #: oldest clips are deleted past this total
    max_age_h: float = Field(72.0, gt=0)  #: clips older than this are deleted
    #: raw frames kept per stream for the pre-roll and for the writer to catch up; a large source keeps
    #: fewer seconds than pre_s then (the clip starts later; its .json says where)
    buffer_mb: float = Field(64.0, gt=0, le=4096)
    crf: int = Field(26, ge=0, le=51)  #: H.264 quality (lower: better and larger)

    @model_validator(mode="after")
    def _dir(self) -> "ClipsConfig":
        if not self.dir.strip():
            raise ValueError("dir: must not be empty; e.g. clips")
        return self


class _AlertFilter(_Section):
    phases: tuple[Phase, ...] = ("start", "end")  #: which event phases are sent
    classes: tuple[str, ...] = ()  #: only these labels (empty: all)
    streams: tuple[str, ...] = ()  #: only these streams (empty: all)
    queue_size: int = Field(100, ge=1, le=100000)  #: full: the oldest waiting message is dropped (counted)

    def wants(self, msg: dict) -> bool:
        return (msg.get("phase") in self.phases and (not self.classes or msg.get("label") in self.classes)
                and (not self.streams or msg.get("stream") in self.streams))


class WebhookAlert(_AlertFilter):
    """``{kind: webhook, url: ...}``: a JSON POST of each event message."""

    kind: Literal["webhook"]
    url: Optional[SecretStr] = None  #: http(s)://...; or url_env
    url_env: Optional[str] = None  #: environment variable holding the URL (it may carry a secret)
    headers: dict[str, SecretStr] = {}  #: e.g. {Authorization: "Bearer ..."}
    timeout_s: float = Field(5.0, gt=0, le=120)
    backoff_initial_s: float = Field(0.5, gt=0)
    backoff_max_s: float = Field(30.0, gt=0)
    max_attempts: int = Field(0, ge=0)  #: 0: retry until delivered (or pushed out by queue_size)

    @model_validator(mode="before")
    @classmethod
    def _url_from_env(cls, data: object) -> object:
        if isinstance(data, dict) and data.get("url_env") and data.get("url") is None \
                and not os.environ.get(data["url_env"]):
            raise ValueError(f"url_env: the environment variable {data['url_env']} is not set")
        return _from_env(data, "url", data.get("url_env") if isinstance(data, dict) else None)

    @model_validator(mode="after")
    def _check(self) -> "WebhookAlert":
        if self.url is None:
            raise ValueError("url: required (or url_env naming an environment variable that holds it)")
        if not self.url.get_secret_value().startswith(("http://", "https://")):
            raise ValueError("url: must start with http:// or https://")
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("backoff_max_s: must be >= backoff_initial_s")
        return self


class MqttAlert(_AlertFilter):
    """``{kind: mqtt, host: ...}``: ``<prefix>/<stream>/event`` and retained ``<prefix>/<stream>/status``, QoS 1."""

    kind: Literal["mqtt"]
    host: str
    port: int = Field(1883, ge=1, le=65535)
    topic_prefix: str = "timesformer"
    username: Optional[str] = None
    password: Optional[SecretStr] = None
    password_env: Optional[str] = "TIMESFORMER_MQTT_PASSWORD"  #: read when password is not given
    tls: bool = False
    client_id: str = ""  #: empty: the broker assigns one
    keepalive_s: int = Field(30, ge=5, le=3600)
    status: bool = True  #: also publish each stream's status (retained)
    status_interval_s: float = Field(10.0, gt=0)  #: status at most this often unless the state changes
    queue_size: int = Field(1000, ge=1, le=100000)

    @model_validator(mode="before")
    @classmethod
    def _password_from_env(cls, data: object) -> object:
        env = data.get("password_env", "TIMESFORMER_MQTT_PASSWORD") if isinstance(data, dict) else None
        return _from_env(data, "password", env)

    @field_validator("topic_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not value or any(c in value for c in "#+") or value.startswith("/") or value.endswith("/"):
            raise ValueError(f"{value!r} must be a topic without wildcards or leading/trailing '/', e.g. timesformer")
        return value


_KINDS = ("webhook", "mqtt")
AlertConfig = Annotated[Union[WebhookAlert, MqttAlert], Field(discriminator="kind")]


def validation_error_line(exc: ValidationError, path: str) -> str:
    """The first error of a pydantic ValidationError as one line: ``ui.address: ...`` (no input echoed)."""
    err = exc.errors(include_input=False, include_url=False)[0]
    loc = [str(p) for p in err["loc"]]
    if loc and loc[0] in _KINDS:  # the discriminated union names the member first: the path does not
        loc = loc[1:]
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown key; check its spelling"
    elif err["type"] in ("union_tag_invalid", "union_tag_not_found"):
        loc, msg = loc + ["kind"], f"must be one of {', '.join(_KINDS)}"
    head, sep, rest = msg.partition(": ")  # "token: ..." from a model check names its field
    if sep and head.isidentifier():
        loc, msg = loc + [head], rest
    where = ".".join(p for p in (path, *loc) if p)
    return f"{where}: {msg}"


def parse_section(tp, value: object, path: str):
    """Validate one config section (any of the models above, or a list of alerts) or raise a one-line ConfigError."""
    from pydantic import TypeAdapter

    try:
        return TypeAdapter(tp).validate_python(value)
    except ValidationError as exc:
        raise ConfigError(validation_error_line(exc, path)) from None


__all__ = ["UiConfig", "ClipsConfig", "WebhookAlert", "MqttAlert", "AlertConfig", "TOKEN_ENV",
           "split_address", "validation_error_line", "parse_section"]

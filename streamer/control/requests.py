"""One control request in, one reply out: parse, validate, call one :class:`SourceService` method, encode.

Requests and replies are JSON objects (docs/PROTOCOL.md, "Control socket"):

    {"op": "add", "source": {"id": "door", "url": "rtsp://...", "options": {...}}}
    {"op": "remove", "id": "door"}        {"op": "update", "source": {...}}
    {"op": "list"}   {"op": "reload"}   {"op": "health"}

    {"type": "reply", "version": 1, "ok": true, "op": "add", "id": "door", "session": "9f2c41d0",
     "state": "connecting", "published_ts": 1764000140.0}
    {"type": "reply", "version": 1, "ok": false, "op": "add", "error": "source.id: missing; this key is required",
     "published_ts": 1764000140.0}

Replies are the protocol's ``reply`` messages (:func:`streamer.outputs.protocol.reply`), with ``op``
and the operation's fields.

:func:`handle` never raises: bytes that are not a JSON object, an unknown ``op`` or key, an invalid
source, a refused operation and a defect in the service all come back as ``ok: false`` with one line.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Optional

from model.errors import ConfigError, RecognizerError
from streamer.config import SourceConfig
from streamer.control.api import OPERATIONS, SourceService
from streamer.control.entries import parse_source
from streamer.outputs import protocol
from streamer.redact import redact

log = logging.getLogger(__name__)

VERSION = protocol.VERSION
_COMMON = ("op", "version")


@dataclass(frozen=True)
class Request:
    op: str
    source: Optional[SourceConfig] = None  #: add, update
    id: Optional[str] = None  #: remove


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    keys = [k for k, _ in pairs]
    twice = next((k for k in keys if keys.count(k) > 1), None)
    if twice is not None:
        raise ConfigError(f"request: key {redact(twice)[:40]!r} given twice; give each key once")
    return dict(pairs)


def _not_finite(text: str) -> float:
    raise ConfigError(f"request: {text} is not a number JSON allows; use a finite number")


def decode(raw: bytes) -> dict:
    """The request's JSON object, or a one-line ConfigError."""
    try:
        data = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=_not_finite)
    except UnicodeDecodeError:
        raise ConfigError("request: not UTF-8 text; send one JSON object") from None
    except RecursionError:
        raise ConfigError("request: nested too deeply; send one flat JSON object") from None
    except ValueError as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"request: not valid JSON ({exc.msg} at character {exc.pos}); send one JSON "
                          f"object such as {{\"op\": \"list\"}}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"request: expected a JSON object such as {{\"op\": \"list\"}}, got {type(data).__name__}")
    return data


def parse_request(data: dict) -> Request:
    """Check ``op``, ``version`` and the op's keys (unknown keys refused); validate ``source`` as YAML is."""
    op = data.get("op")
    if not isinstance(op, str) or op not in OPERATIONS:
        shown = redact(repr(op))[:40] if op is not None else "missing"
        raise ConfigError(f"op: {shown} is not one of {', '.join(OPERATIONS)}")
    if "version" in data and (data["version"] != VERSION or isinstance(data["version"], bool)):
        raise ConfigError(f"version: {redact(repr(data['version']))[:40]} is not supported; this service speaks "
                          f"version {VERSION}")
    needed = OPERATIONS[op]
    known = needed + _COMMON
    for key in data:
        if key not in known:
            raise ConfigError(f"{redact(str(key))[:40]}: unknown key for op {op!r}; known keys here: "
                              f"{', '.join(sorted(known))}")
    for key in needed:
        if key not in data:
            what = "the source entry {\"id\": ..., \"url\": ...}" if key == "source" else "the stream id"
            raise ConfigError(f"{key}: missing; op {op!r} needs {what}")
    if "source" in needed:
        return Request(op, source=parse_source(data["source"], "source"))
    if "id" in needed:
        stream_id = data["id"]
        if not isinstance(stream_id, str) or not stream_id:
            raise ConfigError(f"id: expected the id of a running stream (a string), got {redact(repr(stream_id))[:40]}")
        return Request(op, id=stream_id)
    return Request(op)


def dispatch(service: SourceService, request: Request) -> dict:
    """Call the one service method the request names; its reply fields."""
    if request.op in ("add", "update"):
        return getattr(service, request.op)(request.source)
    if request.op == "remove":
        return service.remove(request.id)
    return getattr(service, request.op)()


def reply_error(op: Optional[str], message: str) -> dict:
    """An ``ok: false`` reply whose ``error`` is the first line of ``message``, credentials hidden (S6)."""
    lines = redact(message).splitlines()
    return protocol.error_reply(lines[0] if lines else "request refused", op=op)


def handle_data(service: SourceService, data: dict) -> dict:
    """A decoded request (a dict) -> the reply (a dict); never raises."""
    op = data.get("op") if isinstance(data.get("op"), str) and data.get("op") in OPERATIONS else None
    try:
        fields = dispatch(service, parse_request(data))
    except RecognizerError as exc:
        return reply_error(op, str(exc))
    except Exception as exc:  # a defect in the service: reported, never fatal to the transport
        log.exception("control: %s failed", op)
        return reply_error(op, f"internal error in {op}: {type(exc).__name__}; see the service log")
    return protocol.reply(True, op=op, **fields)


def handle(service: SourceService, raw: bytes) -> bytes:
    """One request's bytes -> one reply's bytes (UTF-8 JSON); never raises."""
    try:
        reply = handle_data(service, decode(raw))
    except RecognizerError as exc:
        reply = reply_error(None, str(exc))
    try:
        return encode(reply)
    except (TypeError, ValueError):  # a defect: the service returned something JSON cannot carry
        log.exception("control: the reply to %s is not JSON-serializable", reply.get("op"))
        return encode(reply_error(reply.get("op"), "internal error: the reply could not be encoded; "
                                                   "see the service log"))


def encode(message: dict) -> bytes:
    return protocol.to_json(message)


__all__ = ["Request", "decode", "parse_request", "dispatch", "handle", "handle_data", "encode", "reply_error",
           "VERSION"]

"""The one home of the wire protocol (docs/PROTOCOL.md, docs/protocol.schema.json).

Everything that goes out, and the limits on what may come in, is defined here: the protocol
``VERSION``, the topics, a builder for every message type (result, status, event, snapshot, and the
``reply`` a request socket answers with), :func:`stamp` (the send-time fields) and :func:`encode`.
Other modules call these; none writes a topic or a ``type``/``version`` pair of its own.

Multipart ``[topic, json]``: topics ``result.<stream>``, ``status.<stream>``, ``event.<stream>``;
request sockets (the snapshot socket, later a control socket) answer ``[request name, json]``.
JSON only, never pickle. Builders return plain dicts; a dict handed to the publisher is never
changed afterwards: :func:`stamp` returns a new dict with ``published_ts`` (and, for results,
``latency_ms.capture_to_publish``), so listeners and caches may keep what was sent.
"""

from __future__ import annotations

import json
import time

VERSION = 1

RESULT, STATUS, EVENT = "result", "status", "event"  #: the kinds of the publisher's topics
SNAPSHOT_REQUEST = b"snapshot"  #: first frame of a snapshot request, and of its answer

# ---- what clients may send (ZMQ_MAXMSGSIZE on every socket that faces them, S9) -----------------
#: The largest frame a subscriber sends the publisher: a subscription, one byte and a topic prefix
#: (``result.<stream id>``). A peer sending a larger frame is disconnected by ZeroMQ before it is
#: buffered (one 10 MB subscription used to cost the process ~790 MB).
MAX_SUBSCRIPTION_BYTES = 1024
#: The largest frame a request socket (snapshot; the control socket to come) accepts; the snapshot
#: socket lowers it to ``snapshot.max_request_bytes`` when that is smaller.
MAX_REQUEST_FRAME_BYTES = 64 * 1024


def topic(kind: str, stream: str) -> str:
    """``<kind>.<stream>``: subscribe by prefix (``result.`` all results, ``result.cam0`` one stream)."""
    return f"{kind}.{stream}"


def result_topic(stream: str) -> str:
    return topic(RESULT, stream)


def status_topic(stream: str) -> str:
    return topic(STATUS, stream)


def event_topic(stream: str) -> str:
    return topic(EVENT, stream)


def result_message(*, stream: str, session: str, seq: int, frame_indices: list[int], frame_ts: list[float],
                   top_k: list[dict], model: dict, inference_ms: float, age_ms: float,
                   batch_size: int, label: str | None = None) -> dict:
    """``session``: the stream's current start (streamer.core.stats.StreamStats.session); ``seq`` counts within it."""
    window = {
        "start_ts": frame_ts[0],
        "end_ts": frame_ts[-1],
        "frame_indices": frame_indices,
        "frame_ts": frame_ts,
    }
    if label is not None:
        window["label"] = label
    return {
        "type": RESULT,
        "version": VERSION,
        "stream": stream,
        "session": session,
        "seq": seq,
        "window": window,
        "top_k": top_k,
        "model": model,
        "latency_ms": {
            "capture_to_publish": None,  # stamp() fills it in at send time
            "inference": round(inference_ms, 3),
            "frame_age_at_inference": round(age_ms, 3),
            "batch_size": batch_size,
        },
        "published_ts": None,
    }


def status_message(stream: str, url: str, snapshot: dict, *, worker: str | None = None) -> dict:
    """``snapshot``: :meth:`streamer.core.stats.StreamStats.snapshot`; ``url`` already redacted.

    ``worker``: in cluster mode, the worker serving the stream (see :func:`with_worker`).
    """
    msg = {
        "type": STATUS,
        "version": VERSION,
        "stream": stream,
        "session": snapshot["session"],
        "source": url,
        "state": snapshot["state"],
        "reason": snapshot["reason"],
        "state_since": snapshot["state_since"],
        "counters": {
            "frames": snapshot["frames"],
            "windows": snapshot["windows"],
            "results": snapshot["results"],
            "drops": snapshot["drops"],
            "decode_errors": snapshot["decode_errors"],
            "reconnects": snapshot["reconnects"],
        },
        "fps": snapshot["fps"],
        "published_ts": None,
    }
    if snapshot.get("warnings"):  # side outputs falling behind or failing (clips, alerts)
        msg["warnings"] = snapshot["warnings"]
    if worker is not None:
        msg["worker"] = worker
    return msg


def with_worker(status: dict, worker: str | None) -> dict:
    """A copy of a status message naming the cluster worker that serves its stream (None: no worker now,
    e.g. while ``reassigning``); the cluster head adds it to what each worker publishes."""
    return {**status, "worker": worker}


def event_message(*, stream: str, session: str, event_id: str, phase: str, label: str, start_ts: float,
                  start_frame: int, duration_s: float, peak_score: float, end_ts: float | None = None,
                  end_frame: int | None = None, score: float | None = None, reason: str | None = None) -> dict:
    """One phase (``start``, ``update``, ``end``) of an action event; ``end_*`` and ``reason`` at ``end`` only."""
    msg = {
        "type": EVENT,
        "version": VERSION,
        "stream": stream,
        "session": session,
        "id": event_id,
        "phase": phase,
        "label": label,
        "start_ts": round(start_ts, 6),
        "start_frame": int(start_frame),
        "end_ts": None if end_ts is None else round(end_ts, 6),
        "end_frame": None if end_frame is None else int(end_frame),
        "duration_s": round(max(0.0, duration_s), 3),
        "peak_score": round(peak_score, 6),
        "published_ts": None,
    }
    if score is not None:
        msg["score"] = round(score, 6)
    if reason is not None:
        msg["reason"] = reason
    return msg


def snapshot_message(streams: dict[str, dict]) -> dict:
    """The snapshot socket's answer: ``{stream: {"status", "result", "events"}}`` (``{}`` for unknown ids)."""
    return {"type": "snapshot", "version": VERSION, "streams": streams, "published_ts": time.time()}


def reply(ok: bool, **fields) -> dict:
    """A request socket's answer: ``{"type": "reply", "ok": ...}`` plus the request's own fields."""
    return {"type": "reply", "version": VERSION, "ok": bool(ok), **fields, "published_ts": time.time()}


def error_reply(error: str, **fields) -> dict:
    """A refused request: ``ok`` false and a one-line ``error`` saying what was wrong and what to do."""
    return reply(False, error=error, **fields)


def stamp(payload: dict, *, published_ts: float, capture_to_publish_ms: float | None = None) -> dict:
    """A copy of ``payload`` with its send-time fields set; ``payload`` itself is not changed."""
    out = dict(payload)
    out["published_ts"] = published_ts
    if capture_to_publish_ms is not None and isinstance(payload.get("latency_ms"), dict):
        out["latency_ms"] = {**payload["latency_ms"], "capture_to_publish": round(capture_to_publish_ms, 3)}
    return out


def to_json(payload: dict) -> bytes:
    """Compact UTF-8 JSON. NaN/inf are not JSON: builders must not put them in (ValueError)."""
    return json.dumps(payload, separators=(",", ":"), allow_nan=False).encode("utf-8")


def encode(topic_: str, payload: dict) -> list[bytes]:
    """The two frames of one published message."""
    return [topic_.encode("utf-8"), to_json(payload)]

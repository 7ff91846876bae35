"""Builders for the messages on the wire (docs/PROTOCOL.md, docs/protocol.schema.json).

Multipart ``[topic, json]``: topic ``result.<stream>``, ``status.<stream>`` (and ``event.<stream>``
from the event layer). JSON only, never pickle. ``published_ts`` and ``latency_ms.capture_to_publish``
are filled in by the publisher thread just before the send.
"""

from __future__ import annotations

import json
import math

VERSION = 1


def result_topic(stream: str) -> str:
    return f"result.{stream}"


def status_topic(stream: str) -> str:
    return f"status.{stream}"


def _finite(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else x


def result_message(*, stream: str, seq: int, frame_indices: list[int], frame_ts: list[float],
                   top_k: list[dict], model: dict, inference_ms: float, age_ms: float,
                   batch_size: int, label: str | None = None) -> dict:
    window = {
        "start_ts": frame_ts[0],
        "end_ts": frame_ts[-1],
        "frame_indices": frame_indices,
        "frame_ts": frame_ts,
    }
    if label is not None:
        window["label"] = label
    return {
        "type": "result",
        "version": VERSION,
        "stream": stream,
        "seq": seq,
        "window": window,
        "top_k": top_k,
        "model": model,
        "latency_ms": {
            "capture_to_publish": None,  # set by the publisher at send time
            "inference": round(inference_ms, 3),
            "frame_age_at_inference": round(age_ms, 3),
            "batch_size": batch_size,
        },
        "published_ts": None,
    }


def status_message(stream: str, url: str, snapshot: dict) -> dict:
    msg = {
        "type": "status",
        "version": VERSION,
        "stream": stream,
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
    return msg


def encode(topic: str, payload: dict) -> list[bytes]:
    """The two frames of one message. NaN/inf are not JSON: builders must not put them in."""
    return [topic.encode("utf-8"), json.dumps(payload, separators=(",", ":"), allow_nan=False).encode("utf-8")]

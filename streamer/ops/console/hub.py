"""What the page shows, built from the messages the publisher sent; lives in the console's event loop.

:class:`ConsoleState` folds status, result and event messages (and finished clips) into tiles, an
event list and per-stream timelines, and returns the updates to push to the pages. It only ever
runs in the console thread, so it needs no lock. Nothing here holds a source URL with credentials:
``source`` is redacted again on the way in (S6).
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque

from streamer.redact import redact

_LATENCIES = 100  # capture->publish values kept per stream for the p50


def _p50(values) -> float | None:
    ordered = sorted(values)
    return round(ordered[len(ordered) // 2], 1) if ordered else None


class ConsoleState:
    def __init__(self, streams: list[str], *, max_events: int = 200, timeline_s: float = 600.0) -> None:
        self.tiles: dict[str, dict] = {}
        self.events: OrderedDict[str, dict] = OrderedDict()  # id -> entry, oldest first
        self.bands: dict[str, deque] = {}  # timeline bands per stream
        self.max_events, self.timeline_s = max_events, timeline_s
        self._latency: dict[str, deque] = {}
        for stream in streams:
            self._add(stream)

    def _add(self, stream: str) -> None:
        self.tiles[stream] = {"stream": stream, "state": "connecting", "reason": "", "top": [], "fps": 0.0,
                              "drops": 0, "p50_ms": None, "warnings": []}
        self.bands[stream] = deque(maxlen=2000)
        self._latency[stream] = deque(maxlen=_LATENCIES)

    # ---- input ----------------------------------------------------------------------------------
    def apply(self, payload: dict) -> list[tuple[str, dict]]:
        """Fold one sent message in; returns the page updates ``(kind, data)`` it causes.

        A stream added while running appears with its first status; a ``removed`` status is its last
        update (its tile says so until the page reloads) and the stream is forgotten here."""
        stream = payload.get("stream")
        kind = payload.get("type")
        if stream not in self.tiles:
            if kind != "status" or payload.get("state") == "removed" or not isinstance(stream, str):
                return []
            self._add(stream)
        if kind == "result":
            return [("tile", self._result(stream, payload))]
        if kind == "status":
            update = [("tile", self._status(stream, payload))]
            if payload.get("state") == "removed":
                del self.tiles[stream], self.bands[stream], self._latency[stream]
            return update
        if kind == "event":
            return [("event", self._event(stream, payload))]
        return []

    def clip_done(self, meta: dict) -> list[tuple[str, dict]]:
        """A finished clip (its sidecar dict): the event's play button appears."""
        entry = self.events.get(meta.get("id"))
        if entry is None:
            return []
        entry["clip"] = f"/clips/{meta['clip']}"
        entry["clip_complete"] = bool(meta.get("complete"))
        entry["clip_note"] = meta.get("incomplete", "")
        return [("event", entry)]

    def _result(self, stream: str, msg: dict) -> dict:
        tile = self.tiles[stream]
        latency = (msg.get("latency_ms") or {}).get("capture_to_publish")
        if latency is not None:
            self._latency[stream].append(float(latency))
        tile.update(top=[{"label": t["label"], "score": round(float(t["score"]), 4)} for t in msg["top_k"][:3]],
                    seq=msg.get("seq"), published_ts=msg.get("published_ts"),
                    truth=(msg.get("window") or {}).get("label"), p50_ms=_p50(self._latency[stream]))
        return tile

    def _status(self, stream: str, msg: dict) -> dict:
        tile = self.tiles[stream]
        counters = msg.get("counters") or {}
        drops = counters.get("drops") or {}
        tile.update(state=msg.get("state"), reason=redact(msg.get("reason", "")), fps=msg.get("fps", 0.0),
                    source=redact(msg.get("source", "")), drops=sum(drops.values()),
                    drops_by={k: v for k, v in drops.items() if v}, frames=counters.get("frames", 0),
                    warnings=[redact(w) for w in msg.get("warnings", [])], status_ts=msg.get("published_ts"))
        return tile

    def _event(self, stream: str, msg: dict) -> dict:
        entry = self.events.get(msg["id"])
        if entry is None:
            entry = {"id": msg["id"], "stream": stream, "label": msg["label"], "clip": None}
            self.events[msg["id"]] = entry
            while len(self.events) > self.max_events:
                self.events.popitem(last=False)
            self.bands[stream].append(entry)
        entry.update(phase=msg["phase"], start_ts=msg["start_ts"], end_ts=msg.get("end_ts"),
                     duration_s=msg.get("duration_s"), peak_score=msg.get("peak_score"),
                     clip_pending=bool(msg.get("clip")) and entry.get("clip") is None)
        self._prune(stream)
        return entry

    def _prune(self, stream: str) -> None:
        bands, horizon = self.bands[stream], time.time() - self.timeline_s
        while bands and bands[0].get("end_ts") is not None and bands[0]["end_ts"] < horizon:
            bands.popleft()

    # ---- output ---------------------------------------------------------------------------------
    def snapshot(self) -> dict:
        """Everything a page needs when it (re)connects."""
        for stream in self.bands:
            self._prune(stream)
        return {"streams": list(self.tiles.values()), "events": list(reversed(self.events.values())),
                "bands": {s: list(b) for s, b in self.bands.items()}, "timeline_s": self.timeline_s,
                "server_ts": time.time()}

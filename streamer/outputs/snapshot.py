"""Late joiners: a snapshot socket that answers with every stream's latest state at once.

The live PUB stream is at-most-once and a subscriber sees nothing sent before it joined (the slow
joiner). Following the ZeroMQ guide's "Clone" pattern, the pipeline also binds a ROUTER socket
(``snapshot.address``, or ``--snapshot ADDRESS``) served by its own thread. A client

1. connects its SUB socket to the publisher first (so nothing falls between the two), then
2. sends ``[b"snapshot"]`` (optionally followed by stream ids) from a DEALER or REQ socket, and gets
   ``[b"snapshot", json]``: for every stream its latest ``status``, latest ``result`` (or null) and
   its open ``events`` (the newest message of each open event),
3. and applies live messages after it, ignoring results whose ``seq`` is not above the snapshot's.

The cache behind it (:class:`LastValueCache`) is fed with what the publisher actually sent
(``on_sent``, publisher thread), so a snapshot never shows a result that no subscriber could have
seen. Requests larger than ``max_request_bytes`` are refused by ZeroMQ; malformed ones are ignored.
When the publisher uses CURVE, the snapshot socket is secured by the same server key and client
allow-list (``secure``), so it never leaks what the PUB socket protects.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional

from model.errors import ConfigError, PublisherError
from streamer.endpoints import bound_endpoint
from streamer.redact import redact
from streamer.outputs.security import is_loopback

log = logging.getLogger(__name__)

VERSION = 1
REQUEST = b"snapshot"


@dataclass(frozen=True)
class SnapshotConfig:
    """The ``snapshot`` section: off unless an address is given."""

    address: Optional[str] = None  #: e.g. tcp://127.0.0.1:5556 (a different port than the publisher)
    max_request_bytes: int = 4096
    linger_ms: int = 200

    def __post_init__(self) -> None:
        if self.address is not None and (
                "://" not in self.address or self.address.split("://", 1)[0] not in ("tcp", "ipc", "inproc")):
            raise ConfigError(f"address: {self.address!r} must be tcp://HOST:PORT, ipc://PATH or inproc://NAME")
        if self.max_request_bytes < 64 or self.linger_ms < 0:
            raise ConfigError("max_request_bytes: must be >= 64 (and linger_ms >= 0)")


class LastValueCache:
    """The newest status and result of every stream, and its open events; fed from the publisher thread."""

    def __init__(self, streams: list[str] | None = None) -> None:
        self._lock = threading.Lock()
        self._streams: dict[str, dict] = {}
        for stream in streams or []:
            self._entry(stream)

    def _entry(self, stream: str) -> dict:
        entry = self._streams.get(stream)
        if entry is None:
            entry = self._streams[stream] = {"status": None, "result": None, "events": {}}
        return entry

    def on_sent(self, topic: str, payload: dict) -> None:
        kind = payload.get("type")
        if kind not in ("result", "status", "event") or not isinstance(payload.get("stream"), str):
            return
        with self._lock:
            entry = self._entry(payload["stream"])
            if kind == "event":
                if payload.get("phase") == "end":
                    entry["events"].pop(payload.get("id"), None)
                else:
                    entry["events"][payload.get("id")] = payload
            else:
                entry[kind] = payload

    def message(self, streams: list[str] | None = None) -> dict:
        """The snapshot message (JSON-ready): every stream, or those named."""
        with self._lock:
            chosen = {s: e for s, e in self._streams.items() if not streams or s in streams}
            body = {s: {"status": e["status"], "result": e["result"], "events": list(e["events"].values())}
                    for s, e in chosen.items()}
            body = copy.deepcopy(body)  # the payloads are not touched again, but the dicts around them are
        return {"type": "snapshot", "version": VERSION, "streams": body, "published_ts": time.time()}


class SnapshotServer(threading.Thread):
    """Owns the ROUTER socket: answers each request with the cache's snapshot."""

    def __init__(self, config: SnapshotConfig, cache: LastValueCache, context, *,
                 secure: Callable | None = None) -> None:
        """``secure(sock)``: make the socket a CURVE server before it is bound (the publisher's keys)."""
        super().__init__(name="snapshot", daemon=False)
        self.config = config
        self.cache = cache
        self._ctx = context
        self._secure = secure
        self._stop_event = threading.Event()
        self.ready = threading.Event()
        self.error: BaseException | None = None  # the bind failed (raised by start_and_wait)
        #: what ended the thread after the bind, for the supervisor (streamer/supervisor.py), which logs it
        self.failure: BaseException | None = None
        self.endpoint: str | None = None  # the address actually bound (a ``*`` port resolved)
        self.served = 0
        self.refused = 0

    def start_and_wait(self, timeout: float = 5.0) -> None:
        """Start the thread and wait for the bind; a bind failure is raised here as PublisherError."""
        self.start()
        self.ready.wait(timeout)
        if self.error is not None:
            raise self.error

    def again(self) -> "SnapshotServer":
        """A new server on the endpoint this one had bound (same port, even if it was ``*``), not started."""
        config = self.config if self.endpoint is None else dataclasses.replace(self.config, address=self.endpoint)
        return SnapshotServer(config, self.cache, self._ctx, secure=self._secure)

    def request_stop(self) -> None:
        self._stop_event.set()

    def stop(self, timeout: float = 3.0) -> None:
        self.request_stop()
        if self.ident is not None:
            self.join(timeout)
            if self.is_alive():
                log.warning("snapshot thread still alive %.1f s after stop", timeout)

    def run(self) -> None:
        import zmq

        cfg = self.config
        sock = self._ctx.socket(zmq.ROUTER)
        try:
            sock.setsockopt(zmq.LINGER, cfg.linger_ms)
            sock.setsockopt(zmq.MAXMSGSIZE, cfg.max_request_bytes)
            sock.setsockopt(zmq.SNDHWM, 100)
            if self._secure is not None:
                self._secure(sock)
            elif not is_loopback(cfg.address):
                log.warning("SNAPSHOT SOCKET NOT ENCRYPTED on %s, which other machines can reach; bind "
                            "tcp://127.0.0.1:PORT or turn on CURVE for the publisher", redact(cfg.address))
            try:
                sock.bind(cfg.address)
            except zmq.ZMQError as exc:
                self.error = PublisherError(f"cannot bind the snapshot socket to {redact(cfg.address)}: "
                                            f"{exc.strerror}; pick a free address with --snapshot")
                return
            self.endpoint = bound_endpoint(sock, cfg.address)
            log.info("snapshots on %s", redact(self.endpoint))
            self.ready.set()
            while not self._stop_event.is_set():
                if not sock.poll(100, zmq.POLLIN):
                    continue
                frames = sock.recv_multipart()
                self._answer(sock, frames, zmq)
        except Exception as exc:  # a defect: the supervisor logs it once and restarts the server
            self.failure = exc
        finally:
            self.ready.set()
            sock.close(linger=cfg.linger_ms)

    def _answer(self, sock, frames: list[bytes], zmq) -> None:
        # ROUTER prepends the peer's identity; a REQ peer adds an empty delimiter frame
        identity, rest = frames[0], frames[1:]
        envelope = [identity]
        if rest and rest[0] == b"":
            envelope.append(b"")
            rest = rest[1:]
        if not rest or rest[0] != REQUEST:
            self.refused += 1
            return
        try:
            streams = [f.decode("utf-8") for f in rest[1:]]
        except UnicodeDecodeError:
            self.refused += 1
            return
        body = json.dumps(self.cache.message(streams), separators=(",", ":"), allow_nan=False).encode("utf-8")
        try:
            sock.send_multipart(envelope + [REQUEST, body], flags=zmq.NOBLOCK)
            self.served += 1
        except zmq.Again:
            self.refused += 1


def request_snapshot(address: str, *, streams: list[str] | tuple[str, ...] = (), timeout: float = 3.0,
                     context=None, max_bytes: int = 16 << 20, curve: dict | None = None) -> dict | None:
    """Ask a pipeline's snapshot socket for the state of every stream; None if no answer in ``timeout`` s.

    ``curve``: CURVE client options (:func:`streamer.outputs.security.client_options`) when the pipeline uses CURVE.
    """
    import zmq

    ctx = context or zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    try:
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, max_bytes)
        for option, value in (curve or {}).items():
            sock.setsockopt(option, value)
        sock.connect(address)
        sock.send_multipart([REQUEST] + [s.encode("utf-8") for s in streams])
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not sock.poll(left * 1000, zmq.POLLIN):
                return None
            frames = sock.recv_multipart()
            if len(frames) == 2 and frames[0] == REQUEST:
                try:
                    msg = json.loads(frames[1])
                except ValueError:
                    continue
                if isinstance(msg, dict) and msg.get("type") == "snapshot":
                    return msg
    finally:
        sock.close(linger=0)

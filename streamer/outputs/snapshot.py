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
seen; it is copy-on-write, so serving a snapshot never makes the publisher thread wait.

Limits (S9), so a hostile peer cannot make the process grow or starve the publisher: one frame over
``max_request_bytes`` disconnects the peer before ZeroMQ buffers it (``ZMQ_MAXMSGSIZE``); a request
of more than :data:`MAX_REQUEST_FRAMES` frames or ``max_request_bytes`` bytes in all is refused with
an error reply, its frames freed unread; a peer gets one answer per :data:`PEER_INTERVAL_S` (more
requests are dropped unanswered); and the thread reads at most ``_READS_PER_TICK`` requests per
``_TICK_S``, so a flood waits in ZeroMQ (``RCVHWM`` a peer), a fixed kernel buffer and TCP instead of
taking the CPU; ZeroMQ queues fairly between peers, so another client's request is still read soon.
ZeroMQ itself holds a multipart message whole before handing it over, so one oversized request
costs its size for as long as it takes to read and drop it; then the memory is freed and handed
back to the OS (:func:`release_freed_memory`).

When the publisher uses CURVE, the snapshot socket is secured by the same server key and client
allow-list (``secure``), so it never leaks what the PUB socket protects.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from typing import Callable, NamedTuple

from model.errors import PublisherError
from streamer.config import SnapshotConfig
from streamer.endpoints import ServerThread, bind
from streamer.outputs import protocol
from streamer.redact import redact
from streamer.outputs.security import is_loopback

log = logging.getLogger(__name__)

MAX_REQUEST_FRAMES = 1 + 64  #: ``snapshot`` and at most 64 stream ids (``run.max_sources``)
PEER_INTERVAL_S = 0.1  #: a peer gets at most one answer in this time (10 a second)
_READS_PER_TICK, _TICK_S = 5, 0.025  # at most 200 requests read a second, whoever sends them
_RCVHWM = 8  # requests ZeroMQ queues per peer before TCP pushes back
_RCVBUF = 64 * 1024  # kernel receive buffer per connection (no autotuning up to megabytes of requests)
_MAX_PEERS = 4096  # peers remembered for the per-peer limit
_TRIM_INTERVAL_S = 1.0  # at most one malloc_trim a second


@functools.lru_cache(maxsize=1)
def _malloc_trim():
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    return getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None


def release_freed_memory() -> None:
    """Hand memory freed inside the C heap back to the OS (glibc's ``malloc_trim``; elsewhere nothing).

    ZeroMQ buffers an oversized request as many small blocks; freed, they stay in the heap of its I/O
    thread (measured: +190 MB after one 100 MB request, back to +0 after a trim)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


class _Entry(NamedTuple):
    """One stream's latest status and result and its open events; never changed, only replaced."""

    status: dict | None = None
    result: dict | None = None
    events: tuple[dict, ...] = ()  #: the newest message of each open event, in the order they opened

    def with_message(self, payload: dict) -> "_Entry":
        kind = payload["type"]
        if kind == protocol.STATUS:
            return self._replace(status=payload)
        if kind == protocol.RESULT:
            return self._replace(result=payload)
        others = tuple(e for e in self.events if e.get("id") != payload.get("id"))
        if payload.get("phase") == "end":
            return self._replace(events=others)
        known = len(others) < len(self.events)
        updated = tuple(payload if e.get("id") == payload.get("id") else e for e in self.events)
        return self._replace(events=updated if known else self.events + (payload,))

    def as_dict(self) -> dict:
        return {"status": self.status, "result": self.result, "events": list(self.events)}


class LastValueCache:
    """The newest status and result of every stream, and its open events; fed from the publisher thread.

    Copy-on-write: the publisher thread (the only writer) builds a new mapping for each message and
    swaps one reference; a reader takes whichever mapping is current and never blocks the writer, and
    the messages in it are the dicts that were sent, which nothing changes any more.
    """

    def __init__(self, streams: list[str] | None = None) -> None:
        self._view: dict[str, _Entry] = {stream: _Entry() for stream in streams or []}

    def on_sent(self, topic: str, payload: dict) -> None:
        kind = payload.get("type")
        if kind not in (protocol.RESULT, protocol.STATUS, protocol.EVENT) or not isinstance(payload.get("stream"), str):
            return
        view = dict(self._view)
        view[payload["stream"]] = view.get(payload["stream"], _Entry()).with_message(payload)
        self._view = view  # the one write a reader can see: a reference swap

    def forget(self, stream: str) -> None:
        """Drop a removed stream (publisher thread, after its last status was sent)."""
        view = dict(self._view)
        view.pop(stream, None)
        self._view = view

    def view(self) -> dict[str, _Entry]:
        """The current mapping; treat it as read-only (the next message replaces it, never changes it)."""
        return self._view

    def message(self, streams: list[str] | tuple[str, ...] | None = None, view: dict | None = None) -> dict:
        """The snapshot message (JSON-ready): every stream, or those named (unknown ids are left out)."""
        view = self._view if view is None else view
        return protocol.snapshot_message({s: e.as_dict() for s, e in view.items() if not streams or s in streams})


class SnapshotServer(ServerThread):
    """Owns the ROUTER socket: answers each request with the cache's snapshot, within the limits above."""

    def __init__(self, config: SnapshotConfig, cache: LastValueCache, context, *,
                 secure: Callable | None = None) -> None:
        """``secure(sock)``: make the socket a CURVE server before it is bound (the publisher's keys)."""
        super().__init__("snapshot", context)
        self.config = config
        self.cache = cache
        self._secure = secure
        self.read = 0  #: requests read off the socket (at most ``_READS_PER_TICK`` per ``_TICK_S``)
        self.served = 0
        self.refused = 0  #: malformed, or over the frame/byte limits
        self.limited = 0  #: dropped unanswered: the peer asked again within PEER_INTERVAL_S
        self._last_answer: dict[bytes, float] = {}  # routing id -> monotonic time of its last answer
        self._answers: tuple[object, dict[tuple[str, ...], bytes]] = (None, {})  # (view, encoded answers)
        self._trim_due, self._last_trim = False, float("-inf")  # give back what a refused request held

    def again(self) -> "SnapshotServer":
        """A new server on the endpoint this one had bound (same port, even if it was ``*``), not started."""
        config = self.config if self.endpoint is None else self.config.model_copy(update={"address": self.endpoint})
        return SnapshotServer(config, self.cache, self._ctx, secure=self._secure)

    def _configure(self, sock, zmq) -> None:
        cfg = self.config
        sock.setsockopt(zmq.LINGER, cfg.linger_ms)
        # one frame over the request limit disconnects the peer before ZeroMQ buffers it (S9)
        sock.setsockopt(zmq.MAXMSGSIZE, min(cfg.max_request_bytes, protocol.MAX_REQUEST_FRAME_BYTES))
        sock.setsockopt(zmq.RCVHWM, _RCVHWM)
        sock.setsockopt(zmq.RCVBUF, _RCVBUF)  # a fixed kernel buffer: a flood waits on its sender's side
        sock.setsockopt(zmq.SNDHWM, 100)
        if self._secure is not None:
            self._secure(sock)
        elif not is_loopback(cfg.address):
            log.warning("SNAPSHOT SOCKET NOT ENCRYPTED on %s, which other machines can reach; bind "
                        "tcp://127.0.0.1:PORT or turn on CURVE for the publisher", redact(cfg.address))
        self.endpoint = bind(sock, cfg.address, "snapshot socket", "--snapshot")
        log.info("snapshots on %s", redact(self.endpoint))

    def _idle(self) -> None:
        if self._trim_due and time.monotonic() - self._last_trim >= _TRIM_INTERVAL_S:
            self._trim_due, self._last_trim = False, time.monotonic()
            release_freed_memory()

    def _readable(self, sock, zmq) -> None:
        """At most ``_READS_PER_TICK`` requests, then the rest of the tick off: a flood costs this thread a
        bounded share of the CPU (ZeroMQ holds the rest, up to RCVHWM a peer, and TCP pushes back)."""
        tick_end = time.monotonic() + _TICK_S
        for _ in range(_READS_PER_TICK):
            try:
                frames, within_limits = self._read(sock, zmq)
            except zmq.Again:
                return
            self.read += 1
            self._answer(sock, frames, within_limits, zmq)
        self._stop_event.wait(max(0.0, tick_end - time.monotonic()))

    def _read(self, sock, zmq) -> tuple[list[bytes], bool]:
        """One request, frame by frame: ``[routing id, frames...]`` and whether it kept to the limits.

        ZeroMQ hands over a multipart message only once it has all of it; past a limit the frames are
        still read (to free them) but never kept, decoded or answered.
        """
        frames = [sock.recv(zmq.NOBLOCK)]
        size, count, within = 0, 0, True
        while sock.getsockopt(zmq.RCVMORE):
            frame = sock.recv(copy=False)
            if not within:
                continue
            if len(frames) == 1 and len(frame) == 0:  # a REQ peer's delimiter: envelope, not request
                frames.append(b"")
                continue
            size, count = size + len(frame), count + 1
            if size > self.config.max_request_bytes or count > MAX_REQUEST_FRAMES:
                within, frames = False, frames[:2] if frames[1:2] == [b""] else frames[:1]
                continue
            frames.append(frame.bytes)
        return frames, within

    def _answer(self, sock, frames: list[bytes], within_limits: bool, zmq) -> None:
        # ROUTER prepends the peer's routing id; a REQ peer adds an empty delimiter frame
        identity, rest = frames[0], frames[1:]
        envelope = [identity]
        if rest and rest[0] == b"":
            envelope.append(b"")
            rest = rest[1:]
        if within_limits and (not rest or rest[0] != protocol.SNAPSHOT_REQUEST):
            self.refused += 1  # not a snapshot request: ignored
            return
        if not self._peer_may_ask(identity):
            self.limited += 1
            return
        try:
            streams = tuple(f.decode("utf-8") for f in rest[1:])
        except UnicodeDecodeError:
            self.refused += 1
            return
        if within_limits:
            body = self._encoded(streams)
        else:
            self.refused += 1
            self._trim_due = True
            body = protocol.to_json(protocol.error_reply(
                f"snapshot request over {MAX_REQUEST_FRAMES} frames or {self.config.max_request_bytes} bytes "
                "(snapshot.max_request_bytes); ask for fewer streams, or for all with no stream frames"))
        try:
            sock.send_multipart(envelope + [protocol.SNAPSHOT_REQUEST, body], flags=zmq.NOBLOCK)
            self.served += within_limits
        except zmq.Again:
            self.refused += 1

    def _peer_may_ask(self, identity: bytes) -> bool:
        """One answer per peer per ``PEER_INTERVAL_S``; the table of peers is bounded (oldest forgotten)."""
        now = time.monotonic()
        last = self._last_answer.pop(identity, None)
        if last is not None and now - last < PEER_INTERVAL_S:
            self._last_answer[identity] = last
            return False
        self._last_answer[identity] = now
        while len(self._last_answer) > _MAX_PEERS:
            del self._last_answer[next(iter(self._last_answer))]
        return True

    def _encoded(self, streams: tuple[str, ...]) -> bytes:
        """The answer's JSON, encoded once per cache state and stream list (a flood of many peers re-sends it)."""
        view = self.cache.view()
        if self._answers[0] is not view:
            self._answers = (view, {})
        answers = self._answers[1]
        body = answers.get(streams)
        if body is None:
            body = protocol.to_json(self.cache.message(streams, view))
            if len(answers) < 16:
                answers[streams] = body
        return body


def request_snapshot(address: str, *, streams: list[str] | tuple[str, ...] = (), timeout: float = 3.0,
                     context=None, max_bytes: int = 16 << 20, curve: dict | None = None) -> dict | None:
    """Ask a pipeline's snapshot socket for the state of every stream; None if no answer in ``timeout`` s.

    ``curve``: CURVE client options (:func:`streamer.outputs.security.client_options`) when the pipeline
    uses CURVE. A request the server refuses (too many streams) raises PublisherError with its reason.
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
        sock.send_multipart([protocol.SNAPSHOT_REQUEST] + [s.encode("utf-8") for s in streams])
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not sock.poll(left * 1000, zmq.POLLIN):
                return None
            frames = sock.recv_multipart()
            if len(frames) == 2 and frames[0] == protocol.SNAPSHOT_REQUEST:
                try:
                    msg = json.loads(frames[1])
                except ValueError:
                    continue
                if isinstance(msg, dict) and msg.get("type") == "snapshot":
                    return msg
                if isinstance(msg, dict) and msg.get("type") == "reply" and msg.get("ok") is False:
                    raise PublisherError(f"the snapshot socket refused the request: {msg.get('error')}")
    finally:
        sock.close(linger=0)

"""The cluster head's proxy: every worker's publisher in, one XPUB socket out, so subscribers connect once.

One thread (``hub``) owns every socket here: the XPUB socket bound at ``publisher.address`` (bound as
the pipeline's publisher binds, :func:`streamer.outputs.publisher.bind_publisher`: same SNDHWM,
linger, subscription limit, CURVE and log line), and one XSUB socket per *feed*, connected to the
publisher of one worker's pipeline and subscribed to everything. It does not pass subscriptions
upstream as a plain ZeroMQ proxy would: the head itself needs every message, for the merged
snapshot and to know each stream's last ``seq``. Topics and messages go out as the workers sent them,
with three checks on the way (this thread is the one place every message passes, so they hold for
every subscriber):

- **one owner**: a stream's messages are forwarded only from the feed the head assigned it to
  (:meth:`Hub.add_feed`); a worker that was declared lost and still sends is dropped here (``fenced``),
  so a stream is never served by two workers at once as subscribers see it (R25);
- **seq never goes backwards**: a result whose ``seq`` is not above the last one forwarded for its
  stream is dropped (``behind``); a stream restarted elsewhere starts at :meth:`Hub.next_seq`;
- **status names its worker**: status messages gain ``worker`` (:func:`protocol.with_worker`).

Everything forwarded, and the head's own status messages (:meth:`Hub.publish`: ``reassigning``
while a stream has no worker), feeds :attr:`Hub.cache`, the last-value cache behind the head's
snapshot socket, so the merged snapshot holds exactly what went out. A stream removed through the
control socket is *retired* (:meth:`Hub.retire`): its worker's last status (``removed``) goes out,
or the head's after a short wait, then the stream is forgotten (owner, seq, snapshot entry), so an
id added again starts afresh. Commands from other threads arrive through a bounded queue that the
thread reads before and after each poll (at most :data:`_POLL_MS` apart), so a command takes effect
before any message that arrived after it was given.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Iterable

from streamer.config import PublisherConfig
from streamer.outputs import protocol
from streamer.outputs.publisher import bind_publisher
from streamer.outputs.security import CurveServer
from streamer.outputs.snapshot import LastValueCache
from streamer.redact import redact

log = logging.getLogger(__name__)

_POLL_MS = 10  #: longest wait before a queued command is taken up
_BURST = 64  #: messages read from one feed before the next feed's turn
_MAX_FEED_MESSAGE = 4 << 20  #: a worker's message larger than this disconnects the feed (a defect, not data)
_STOP = object()


@dataclass
class _Feed:
    worker: str
    endpoint: str
    sock: object


@dataclass
class _Retiring:
    feed: str | None  #: the stream's owner when its removal began
    final: dict  #: the head's removed status, sent if the worker's does not come
    until: float  #: monotonic deadline for the worker's


class Hub:
    def __init__(self, config: PublisherConfig, streams: Iterable[str], context) -> None:
        self.config = config
        self.cache = LastValueCache(list(streams))
        self._ctx = context
        self._commands: queue.Queue = queue.Queue(maxsize=10000)
        self._owner: dict[str, str | None] = {}  # stream -> feed (hub thread only)
        self._retiring: dict[str, _Retiring] = {}  # stream -> its removal in progress (hub thread only)
        self._last_seq: dict[str, int] = {}  # stream -> last seq forwarded (written here, read anywhere)
        self._feeds: dict[str, _Feed] = {}
        self._by_sock: dict[object, str] = {}  # socket -> feed
        self._stop = threading.Event()
        self._curve: CurveServer | None = None
        self.ready = threading.Event()
        self.endpoint: str | None = None
        self.error: BaseException | None = None  # the bind failed (raised by start)
        self.failure: BaseException | None = None  # what ended the thread after the bind (supervisor)
        self.forwarded = 0
        self.fenced = 0  #: dropped: the stream's owner is another feed (or none)
        self.behind = 0  #: dropped: a result whose seq was not above the last forwarded
        self.malformed = 0  #: dropped: not [topic, json object]
        self.queue_dropped = 0  #: head messages not sent: the command queue was full
        self._thread = threading.Thread(target=self._run, name="hub", daemon=False)

    # ---- any thread ----------------------------------------------------------------------------
    def add_feed(self, feed: str, endpoint: str, worker: str, streams: Iterable[str]) -> None:
        """Connect to a worker pipeline's publisher; ``streams`` are forwarded from it (and from no other feed)."""
        self._command(("add", feed, endpoint, worker, tuple(streams)))

    def drop_feed(self, feed: str) -> None:
        """Disconnect a feed; its streams have no owner until another feed is added for them."""
        self._command(("drop", feed))

    def release(self, streams: Iterable[str]) -> None:
        """The streams have no owner any more (their feed may go on serving others)."""
        self._command(("release", tuple(streams)))

    def retire(self, stream: str, final: dict, wait_s: float) -> None:
        """A stream removed by a control request: forward its worker's last status (``removed``) if it comes
        within ``wait_s``, else send ``final`` (the head's); then forget the stream (owner, seq, snapshot
        entry), so an id added again starts afresh."""
        self._command(("retire", stream, final, wait_s))

    def publish(self, topic: str, payload: dict) -> bool:
        """Send the head's own message (status while a stream has no worker); False if the queue is full."""
        return self._command(("publish", topic, payload))

    def next_seq(self, stream: str) -> int:
        """The seq a stream restarted on another worker starts at: one above the last one forwarded."""
        return self._last_seq.get(stream, -1) + 1

    def _command(self, command) -> bool:
        try:
            self._commands.put_nowait(command)
            return True
        except queue.Full:
            self.queue_dropped += 1
            log.warning("hub: command queue full; %s dropped", command[0])
            return False

    # ---- lifecycle ---------------------------------------------------------------------------
    def start(self, stop: threading.Event) -> None:
        """Start the thread and wait until the XPUB socket is bound; raise PublisherError if it cannot be."""
        self._thread.start()
        while not self.ready.wait(0.05):
            if not self._thread.is_alive() or stop.is_set():
                break
        if self.error is not None:
            raise self.error

    def request_stop(self) -> None:
        self._stop.set()
        try:
            self._commands.put_nowait(_STOP)
        except queue.Full:
            pass  # the thread also checks the flag between polls

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    @property
    def curve(self) -> CurveServer | None:
        """The running CURVE server (keys and allow-list) when the publisher uses CURVE (the snapshot socket
        shares it)."""
        return self._curve

    # ---- the thread --------------------------------------------------------------------------
    def _run(self) -> None:
        import zmq

        cfg = self.config
        try:
            if cfg.curve:  # the authenticator runs before the socket is bound (S2)
                self._curve = CurveServer(self._ctx, cfg.curve_secret_key, cfg.curve_allow_dir).start()
            out, self.endpoint = bind_publisher(self._ctx, cfg, xpub=True, curve=self._curve)
        except BaseException as exc:  # reported to start()
            self.error = exc
            self._stop_curve()
            self.ready.set()
            return
        self.ready.set()
        poller = zmq.Poller()
        poller.register(out, zmq.POLLIN)
        try:
            while self._take_commands(poller, out, zmq):
                self._expire_retiring(out, zmq)
                ready = poller.poll(_POLL_MS)
                # commands queued while polling first: a command always takes effect before any message
                # that arrived after it was given (e.g. a worker's "removed" after the head fenced or retired)
                if not self._take_commands(poller, out, zmq):
                    break
                for sock, _ in ready:
                    if sock is out:
                        self._drain_subscriptions(out, zmq)
                    elif sock in self._by_sock:  # not dropped by those commands
                        self._forward(sock, out, zmq)
        except Exception as exc:  # a defect: the head logs it and stops
            self.failure = exc
            log.exception("hub thread failed")
        finally:
            for feed in self._feeds.values():
                feed.sock.close(linger=0)
            self._feeds.clear()
            out.close(linger=cfg.linger_ms)
            self._stop_curve()

    def _take_commands(self, poller, out, zmq) -> bool:
        """Carry out every queued command; False once told to stop."""
        while True:
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return not self._stop.is_set()
            if command is _STOP:
                return False
            kind = command[0]
            if kind == "add":
                self._add(poller, zmq, *command[1:])
            elif kind == "drop":
                self._drop(poller, command[1])
            elif kind == "release":
                for stream in command[1]:
                    self._owner[stream] = None
            elif kind == "retire":
                _, stream, final, wait_s = command
                self._retiring[stream] = _Retiring(self._owner.get(stream), final, time.monotonic() + wait_s)
            else:
                self._send(out, zmq, command[1], protocol.stamp(command[2], published_ts=time.time()))

    def _add(self, poller, zmq, feed: str, endpoint: str, worker: str, streams: tuple[str, ...]) -> None:
        sock = self._ctx.socket(zmq.XSUB)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, _MAX_FEED_MESSAGE)
        sock.connect(endpoint)
        sock.send(b"\x01")  # subscribe to everything: the head needs every message
        poller.register(sock, zmq.POLLIN)
        self._feeds[feed] = _Feed(worker, endpoint, sock)
        self._by_sock[sock] = feed
        for stream in streams:
            self._owner[stream] = feed
        log.info("hub: feed %s from worker %s at %s serves %s", feed, worker, redact(endpoint), ", ".join(streams))

    def _drop(self, poller, feed: str) -> None:
        gone = self._feeds.pop(feed, None)
        if gone is not None:
            del self._by_sock[gone.sock]
            poller.unregister(gone.sock)
            gone.sock.close(linger=0)
        for stream, owner in self._owner.items():
            if owner == feed:
                self._owner[stream] = None

    def _forward(self, sock, out, zmq) -> None:
        feed = self._by_sock.get(sock)
        for _ in range(_BURST):
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if feed is None:
                continue
            payload = self._checked(feed, frames)
            if payload is None:
                continue
            if payload.get("type") == protocol.STATUS:
                payload = protocol.with_worker(payload, self._feeds[feed].worker)
                frames = [frames[0], protocol.to_json(payload)]
            self._send(out, zmq, frames[0].decode("utf-8"), payload, frames)
            if payload.get("state") == "removed" and payload["stream"] in self._retiring:
                self._forget(payload["stream"])

    def _expire_retiring(self, out, zmq) -> None:
        """Removals whose worker did not send the last status in time: the head's goes out instead."""
        now = time.monotonic()
        for stream, retiring in list(self._retiring.items()):
            if now >= retiring.until:
                if not self._added_again(stream, retiring):
                    self._send(out, zmq, protocol.status_topic(stream),
                               protocol.stamp(retiring.final, published_ts=time.time()))
                self._forget(stream)

    def _added_again(self, stream: str, retiring: _Retiring) -> bool:
        """The id was added again and another feed serves it already (it keeps its owner and seq)."""
        return self._owner.get(stream) not in (None, retiring.feed)

    def _forget(self, stream: str) -> None:
        retiring = self._retiring.pop(stream)
        if not self._added_again(stream, retiring):
            self._owner.pop(stream, None)
            self._last_seq.pop(stream, None)
            self.cache.forget(stream)

    def _checked(self, feed: str, frames: list[bytes]) -> dict | None:
        """The message as a dict if it may go out: well formed, from its stream's owner, seq increasing."""
        try:
            topic = frames[0].decode("utf-8")
            payload = json.loads(frames[1]) if len(frames) == 2 else None
        except (UnicodeDecodeError, ValueError):
            payload = None
        if not isinstance(payload, dict) or not isinstance(payload.get("stream"), str):
            self.malformed += 1
            return None
        stream = payload["stream"]
        if self._owner.get(stream) != feed or not topic.endswith("." + stream):
            self.fenced += 1
            return None
        if payload.get("type") == protocol.RESULT:
            seq = payload.get("seq")
            if not isinstance(seq, int) or seq <= self._last_seq.get(stream, -1):
                self.behind += 1
                return None
            self._last_seq[stream] = seq
        return payload

    def _send(self, out, zmq, topic: str, payload: dict, frames: list[bytes] | None = None) -> None:
        try:
            out.send_multipart(frames or protocol.encode(topic, payload), flags=zmq.NOBLOCK)
        except zmq.Again:  # XPUB drops at SNDHWM unseen; counted if it ever reports it
            self.queue_dropped += 1
            return
        self.forwarded += 1
        self.cache.on_sent(topic, payload)

    def _drain_subscriptions(self, out, zmq) -> None:
        try:
            for _ in range(_BURST):
                out.recv(zmq.NOBLOCK)  # subscriptions: XPUB filters by them itself
        except zmq.Again:
            pass

    def _stop_curve(self) -> None:
        if self._curve is not None:
            self._curve.stop()
            self._curve = None


__all__ = ["Hub"]

"""The ZeroMQ PUB side: one thread owns the socket and sends ``[topic, json]`` messages from a bounded queue.

Any thread may call :meth:`Publisher.publish` with any ``(topic, dict)`` (results, status, events);
it never blocks: a full queue drops the message and counts it (``queue_dropped``; what ZeroMQ drops
for a subscriber at its SNDHWM cannot be counted here: PUB does not report it). Status of every stream goes out at
each state change (``publish_status``) and every ``heartbeat_s`` even when nothing else happens (R17).

ZeroMQ facts built in (measured here; R13 and R17 in docs/RELIABILITY.md): PUB is at-most-once and
drops silently at SNDHWM, so SNDHWM is set explicitly and results carry per-stream ``seq``; LINGER
is short so ``ctx.term()`` cannot hang; CONFLATE is never set (it breaks multipart). Slow joiner: a
subscriber misses what was sent before its subscription arrived; ``wait_subscribers`` makes the
socket an XPUB and holds the start of capture until that many subscriptions arrived (used by
file-mode runs and tests).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import NamedTuple

from streamer.outputs import protocol
from streamer.config import PublisherConfig
from streamer.redact import redact
from streamer.outputs.security import CurveServer, is_loopback
from streamer.endpoints import PUBLISH_IO, bind, pin_io
from streamer.core.stats import StatsRegistry, StreamState, StreamStats
from streamer.supervisor import join_or_warn

log = logging.getLogger(__name__)


class _Outgoing(NamedTuple):
    topic: str
    payload: dict
    capture_mono: float | None
    stats: StreamStats | None


_STOP = object()



def bind_publisher(ctx, cfg: PublisherConfig, *, xpub: bool, curve: CurveServer | None = None):
    """A PUB (or XPUB) socket bound to ``cfg.address`` as the config says: SNDHWM, a short LINGER, the
    subscription size limit (S9), CURVE when ``curve`` is given; returns it and the bound endpoint
    (logged: ``publishing on ...``). The pipeline's publisher and the cluster head's proxy both use it.
    Raises PublisherError with the fix when the address cannot be bound."""
    import zmq

    sock = ctx.socket(zmq.XPUB if xpub else zmq.PUB)
    pin_io(sock, PUBLISH_IO)  # results have an I/O thread of their own
    sock.setsockopt(zmq.SNDHWM, cfg.sndhwm)
    sock.setsockopt(zmq.LINGER, cfg.linger_ms)
    # what subscribers send is subscriptions only: a larger frame disconnects the peer unread (S9)
    sock.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_SUBSCRIPTION_BYTES)
    if curve is not None:
        curve.secure(sock)
    endpoint = bind(sock, cfg.address, "publisher", "--publish")
    if curve is None and not is_loopback(cfg.address):
        log.warning("PUBLISHER NOT ENCRYPTED on %s, which other machines can reach: anyone there can read "
                    "every result. Bind tcp://127.0.0.1:PORT, or set publisher.curve_secret_key and "
                    "publisher.curve_allow_dir (keys: python -m streamer.keys)", redact(cfg.address))
    log.info("publishing on %s (SNDHWM %d)", redact(endpoint), cfg.sndhwm)
    return sock, endpoint


class Publisher:
    def __init__(self, config: PublisherConfig, stats: StatsRegistry, context=None) -> None:
        import zmq

        self.config = config
        self.stats = stats
        self._ctx = context or zmq.Context.instance()
        self._queue: queue.Queue = queue.Queue(maxsize=config.queue_size)
        self._stop = threading.Event()
        self.ready = threading.Event()  # bound (and enough subscribers, if asked)
        self.sent = 0
        #: messages dropped inside this process, before ZeroMQ: the queue was full. Not what ZeroMQ drops
        #: for a slow subscriber at SNDHWM: PUB cannot count those (subscribers see them as seq gaps)
        self.queue_dropped = 0
        #: called as ``fn(topic, payload)`` in the publisher thread after each successful send (events,
        #: metrics, snapshot cache, annotation) with the dict that was sent, which nothing changes any
        #: more (listeners may keep it, never modify it); a listener may call :meth:`publish`, never block
        self.listeners: list = []
        self._error: BaseException | None = None  # a set-up failure (bind, keys), raised by start()
        #: what ended the thread after set-up, for the supervisor (streamer/supervisor.py), which logs it
        self.failure: BaseException | None = None
        self.endpoint: str | None = None  # the address actually bound (a ``*`` port resolved)
        self._curve = None  # streamer.outputs.security.CurveServer when publisher.curve_secret_key is set
        self.options: dict[str, int] = {}  #: socket options as the bound socket reports them
        self._thread = threading.Thread(target=self._run, name="publisher", daemon=False)

    # ---- any thread --------------------------------------------------------------------------
    def publish(self, topic: str, payload: dict, *, capture_mono: float | None = None,
                stats: StreamStats | None = None) -> bool:
        """Queue one message; False (and counted) if the queue is full. Never blocks."""
        try:
            self._queue.put_nowait(_Outgoing(topic, payload, capture_mono, stats))
            return True
        except queue.Full:
            self.queue_dropped += 1
            if stats is not None:
                stats.drop("publish_queue_full")
            return False

    def call_soon(self, fn) -> bool:
        """Run ``fn()`` in the publisher thread after every message queued so far; False if the queue is full."""
        try:
            self._queue.put_nowait(fn)
            return True
        except queue.Full:
            return False

    def publish_status(self, stats: StreamStats) -> bool:
        return self.publish(protocol.status_topic(stats.stream),
                            protocol.status_message(stats.stream, stats.url, stats.snapshot()))

    # ---- lifecycle (owner) -------------------------------------------------------------------
    def start(self, stop: threading.Event) -> None:
        """Start the thread and wait until the socket is bound (and subscribers joined); raise PublisherError."""
        self._thread.start()
        while not self.ready.wait(0.05):
            if self._error is not None or not self._thread.is_alive():
                break
            if stop.is_set():
                return
        if self._error is not None:
            raise self._error

    def request_stop(self) -> None:
        """Tell the thread to send what is queued (bounded by linger), close the socket and end; does not wait."""
        self._stop.set()
        try:
            self._queue.put_nowait(_STOP)
        except queue.Full:
            pass  # the thread also looks at the stop flag whenever the queue runs dry

    def stop(self, timeout: float = 3.0) -> None:
        """:meth:`request_stop`, then join the thread for at most ``timeout`` seconds."""
        self.request_stop()
        join_or_warn(self._thread, timeout)

    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    @property
    def curve(self):
        """The running ``streamer.outputs.security.CurveServer`` (keys and allow-list) when CURVE is on, else None."""
        return self._curve

    def _stop_curve(self) -> None:
        if self._curve is not None:
            self._curve.stop()
            self._curve = None

    # ---- the thread --------------------------------------------------------------------------
    def _open(self):
        import zmq

        cfg = self.config
        if cfg.curve:  # the authenticator runs before the socket is bound (S2); bad key files fail here
            self._curve = CurveServer(self._ctx, cfg.curve_secret_key, cfg.curve_allow_dir).start()
        sock, self.endpoint = bind_publisher(self._ctx, cfg, xpub=bool(cfg.wait_subscribers), curve=self._curve)
        # read back from the socket, not from the config: what ZeroMQ really applies (docs, tests)
        self.options = {name: sock.getsockopt(getattr(zmq, name)) for name in ("SNDHWM", "LINGER", "MAXMSGSIZE")}
        return sock

    def _wait_for_subscribers(self, sock) -> None:
        import zmq

        cfg = self.config
        deadline = time.monotonic() + cfg.wait_subscribers_timeout_s
        joined = 0
        while joined < cfg.wait_subscribers and not self._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                log.warning("only %d of %d subscribers joined within %.1f s; starting anyway",
                            joined, cfg.wait_subscribers, cfg.wait_subscribers_timeout_s)
                return
            if sock.poll(min(left, 0.1) * 1000, zmq.POLLIN):
                msg = sock.recv()
                if msg[:1] == b"\x01":
                    joined += 1
        log.info("%d subscriber(s) joined", joined)

    def _drain_subscriptions(self, sock) -> None:
        import zmq

        try:
            while True:
                sock.recv(zmq.NOBLOCK)
        except zmq.Again:
            pass

    def _run(self) -> None:
        import zmq

        try:
            sock = self._open()
        except BaseException as exc:  # reported to start()
            self._error = exc
            self._stop_curve()
            return
        try:
            if self.config.wait_subscribers:
                self._wait_for_subscribers(sock)
            self.ready.set()
            xpub = bool(self.config.wait_subscribers)
            heartbeat = self.config.heartbeat_s
            next_beat = time.monotonic()
            while True:
                now = time.monotonic()
                if now >= next_beat:
                    for stats in self.stats:
                        self.publish_status(stats)
                    next_beat = now + heartbeat
                    if xpub:
                        self._drain_subscriptions(sock)
                try:
                    item = self._queue.get(timeout=max(0.0, min(next_beat - time.monotonic(), 0.1)))
                except queue.Empty:
                    if self._stop.is_set():  # _STOP did not fit in a full queue
                        break
                    continue
                if item is _STOP:
                    break
                self._handle(sock, item, zmq)
            # flush what is still queued, then close with the short linger
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not _STOP:
                    self._handle(sock, item, zmq)
        except Exception as exc:  # a defect: the supervisor logs it once and stops the pipeline
            self.failure = exc
        finally:
            sock.close(linger=self.config.linger_ms)
            self._stop_curve()

    def _handle(self, sock, item, zmq) -> None:
        if not isinstance(item, _Outgoing):  # a call_soon function
            try:
                item()
            except Exception:
                log.exception("call_soon function %r failed", item)
            return
        self._send(sock, item, zmq)

    def _send(self, sock, item: _Outgoing, zmq) -> None:
        if item.stats is not None and item.stats.state is StreamState.REMOVED:
            return  # a window of a stream removed meanwhile: its last status said "removed"; nothing follows it
        ms = None if item.capture_mono is None else (time.monotonic() - item.capture_mono) * 1000.0
        payload = protocol.stamp(item.payload, published_ts=time.time(), capture_to_publish_ms=ms)
        if ms is not None and item.stats is not None:
            item.stats.latency_ms.append(ms)
            item.stats.results += 1
            item.stats.last_result = payload
        try:
            sock.send_multipart(protocol.encode(item.topic, payload), flags=zmq.NOBLOCK)
            self.sent += 1
        except zmq.Again:  # PUB and XPUB never raise it (they drop at SNDHWM unseen); counted if one ever does
            self.queue_dropped += 1
            return
        except (TypeError, ValueError):
            log.exception("message on %s is not JSON-serializable; dropped", item.topic)
            return
        for listener in self.listeners:
            try:
                listener(item.topic, payload)
            except Exception:
                log.exception("listener %r failed on %s", listener, item.topic)

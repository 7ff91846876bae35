"""The control socket: one thread owns a ZeroMQ ROUTER socket and answers REQ (or DEALER) clients.

Each request is one frame holding one JSON object; the reply is one frame holding one JSON object
(:mod:`streamer.control.requests`). The server knows nothing of streams: it calls ``handler(bytes) ->
bytes`` (``functools.partial(requests.handle, service)``), one request at a time, in its own thread.

- Requests over ``max_request_bytes`` are refused by ZeroMQ itself (``ZMQ_MAXMSGSIZE``: the peer is
  disconnected and gets nothing); a request of several frames gets an error reply; nothing a client
  sends stops the thread.
- Loopback by default; an address other machines can reach is refused unless ``secure`` makes the
  socket a CURVE server with the publisher's key and client allow-list (S10), so an unknown or
  plaintext client never completes the handshake and gets nothing.
"""

from __future__ import annotations

import logging
from typing import Callable, Optional

from model.errors import ConfigError
from streamer.control import requests
from streamer.endpoints import ServerThread, bind
from streamer.outputs import protocol
from streamer.outputs.security import is_loopback
from streamer.redact import redact

log = logging.getLogger(__name__)

Handler = Callable[[bytes], bytes]

MAX_REQUEST_BYTES = protocol.MAX_REQUEST_FRAME_BYTES  #: 64 KiB; a request with a full source entry is under 2 kB


def check_exposure(address: str, curve: bool) -> None:
    """Refuse a control address that other machines can reach unless CURVE protects it (S10)."""
    if not curve and not is_loopback(address):
        raise ConfigError(f"control.address: {redact(address)} can be reached from other machines, and the control "
                          "socket can add and remove cameras; bind tcp://127.0.0.1:PORT, or turn on CURVE "
                          "(publisher.curve_secret_key and publisher.curve_allow_dir)")


class ControlServer(ServerThread):
    """Owns the ROUTER socket; answers each request with ``handler(request)``."""

    def __init__(self, address: str, handler: Handler, context, *, secure: Optional[Callable] = None,
                 max_request_bytes: int = MAX_REQUEST_BYTES, linger_ms: int = 200) -> None:
        """``secure(sock)`` makes the socket a CURVE server before it is bound (the publisher's keys)."""
        check_exposure(address, secure is not None)  # before any thread or socket exists
        super().__init__("control", context)
        self.address = address
        self._handler = handler
        self._secure = secure
        self._max_request_bytes = max_request_bytes
        self._linger_ms = linger_ms
        self.served = 0
        self.malformed = 0

    def again(self) -> "ControlServer":
        """A new server on the endpoint this one had bound (same port, even if it was ``*``), not started."""
        return ControlServer(self.endpoint or self.address, self._handler, self._ctx, secure=self._secure,
                             max_request_bytes=self._max_request_bytes, linger_ms=self._linger_ms)

    def _configure(self, sock, zmq) -> None:
        sock.setsockopt(zmq.LINGER, self._linger_ms)
        sock.setsockopt(zmq.MAXMSGSIZE, self._max_request_bytes)
        sock.setsockopt(zmq.SNDHWM, 100)
        sock.setsockopt(zmq.RCVHWM, 100)
        if self._secure is not None:
            self._secure(sock)
        self.endpoint = bind(sock, self.address, "control socket", "--control ADDRESS (or --control off)")
        log.info("control socket on %s%s", redact(self.endpoint), " (CURVE)" if self._secure else "")

    def _readable(self, sock, zmq) -> None:
        self._answer(sock, sock.recv_multipart(), zmq)

    def _answer(self, sock, frames: list[bytes], zmq) -> None:
        # ROUTER prepends the peer's identity; a REQ peer adds an empty delimiter frame
        envelope, body = frames[:1], frames[1:]
        if body and body[0] == b"":
            envelope.append(b"")
            body = body[1:]
        if len(body) != 1:
            self.malformed += 1
            reply = requests.encode(requests.reply_error(None, "request: send one JSON object in one frame"))
        else:
            try:
                reply = self._handler(body[0])
            except Exception:  # handlers should not raise; if one does, the client still gets a line
                log.exception("control: the request handler failed")
                reply = requests.encode(requests.reply_error(None, "internal error; see the service log"))
        try:
            sock.send_multipart(envelope + [reply], flags=zmq.NOBLOCK)
            self.served += 1
        except zmq.Again:  # the client stopped reading: its reply is dropped, the server carries on
            log.warning("control: a reply was dropped (the client is not reading)")


__all__ = ["ControlServer", "check_exposure", "MAX_REQUEST_BYTES"]

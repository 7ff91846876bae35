"""Listening addresses: every one checked before the model loads, and the endpoint actually bound read back.

:func:`check_free` runs at start, before the model loads (which can take many seconds): it binds
and at once closes a plain TCP socket on each ``tcp://HOST:PORT`` the pipeline will listen on (the
publisher, the snapshot socket, the metrics server, and any later listener that adds a
:class:`Listen` to the list), and raises one :class:`PublisherError` naming every clash: ports
other processes hold, and two listeners given the same address. The sockets themselves are still
bound later by the threads that own them (a thread owns its socket); a port taken in between is
then reported by that bind.

A port of ``*`` (ZeroMQ) or ``0`` asks the system for a free one, so nothing can clash; the
owner logs the endpoint it got (:func:`bound_endpoint`), e.g. ``publishing on tcp://127.0.0.1:40531``,
which is how tests and scripts learn it without guessing a free port.
"""

from __future__ import annotations

import logging
import socket
import threading
from dataclasses import dataclass
from typing import Iterable

from model.errors import PublisherError
from streamer.redact import redact
from streamer.supervisor import join_or_warn

log = logging.getLogger(__name__)


#: The pipeline's ZeroMQ context runs two I/O threads: the publisher's socket has the first to itself
#: and the request sockets (snapshot, control) share the second, so a flood of requests, or one request
#: of 25,000 frames, cannot hold up results on their way out (S9; measured by benchmarks.soak).
IO_THREADS = 2
PUBLISH_IO = 0  #: the I/O thread that carries results
REQUEST_IO = 1  #: the I/O thread that carries snapshot and control requests


def pipeline_context():
    """The ZeroMQ context the pipeline's sockets share (one ZAP handler serves all their CURVE checks)."""
    import zmq

    return zmq.Context(io_threads=IO_THREADS)


def pin_io(sock, which: int) -> None:
    """Put ``sock`` on I/O thread ``which`` of its context, before it binds; a context with fewer threads
    (a test's, a library user's) leaves ZeroMQ's own choice."""
    import zmq

    if sock.context.get(zmq.IO_THREADS) > which:
        sock.setsockopt(zmq.AFFINITY, 1 << which)


@dataclass(frozen=True)
class Listen:
    """One address the pipeline will listen on."""

    what: str  #: e.g. "publisher"
    address: str  #: tcp://HOST:PORT, ipc://PATH or inproc://NAME
    fix: str  #: how to choose another, e.g. "--publish ADDRESS"


def split_tcp(address: str) -> tuple[str, str] | None:
    """``(host, port)`` of a ``tcp://HOST:PORT`` address (brackets of an IPv6 host removed), else None."""
    scheme, _, rest = address.partition("://")
    if scheme != "tcp" or ":" not in rest:
        return None
    host, _, port = rest.rpartition(":")
    if ";" in host:  # tcp://source;dest: the local side is what is bound
        host = host.split(";", 1)[1]
    return host.strip("[]"), port


def _bind_error(host: str, port: int) -> str | None:
    """Why a listener could not bind ``host:port`` now (None if it could, or if this cannot tell)."""
    bind_host = "" if host in ("*", "0.0.0.0") else host
    family = socket.AF_INET6 if ":" in bind_host else socket.AF_INET  # names resolve as ZeroMQ and http.server do
    try:
        infos = socket.getaddrinfo(bind_host or None, port, family, socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror:
        return None  # an interface name or a host this cannot resolve: the real bind will say
    family, _, _, _, sockaddr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as ZeroMQ and http.server bind
        try:
            s.bind(sockaddr)
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


def check_free(listens: Iterable[Listen]) -> None:
    """Raise one PublisherError naming every address that cannot be listened on; return if all can."""
    clashes: list[str] = []
    seen: dict[str, str] = {}
    for item in listens:
        tcp = split_tcp(item.address)
        if tcp is not None and tcp[1] in ("*", "0"):
            continue  # the system picks a free port
        key = item.address if tcp is None else f"{tcp[0]}:{tcp[1]}"
        if key in seen:
            clashes.append(f"{item.what} and {seen[key]} are both given {redact(item.address)} ({item.fix})")
            continue
        seen[key] = item.what
        if tcp is None or not tcp[1].isdigit():
            continue  # ipc:// and inproc:// cannot clash with another process here; a bad port fails at bind
        why = _bind_error(tcp[0], int(tcp[1]))
        if why is not None:
            clashes.append(f"{item.what} cannot listen on {redact(item.address)}: {why} ({item.fix})")
    if clashes:
        raise PublisherError("; ".join(clashes) + "; choose free addresses (a port of * or 0 picks one)")


def bound_endpoint(sock, address: str) -> str:
    """The endpoint a ZeroMQ socket is bound to: ``address`` with a ``*`` port resolved."""
    import zmq

    try:
        last = sock.getsockopt(zmq.LAST_ENDPOINT)
    except zmq.ZMQError:
        return address
    return last.decode("utf-8", "replace") if isinstance(last, bytes) and last else address


def bind(sock, address: str, what: str, fix: str) -> str:
    """Bind a ZeroMQ socket; the endpoint bound (``*`` resolved), or a one-line PublisherError naming
    ``what`` and how to choose another address (``fix``); the socket is closed on failure."""
    import zmq

    try:
        sock.bind(address)
    except zmq.ZMQError as exc:
        sock.close(linger=0)
        raise PublisherError(f"cannot bind the {what} to {redact(address)}: {exc.strerror}; pick a free address "
                             f"with {fix}") from None
    return bound_endpoint(sock, address)


class ServerThread(threading.Thread):
    """A thread that owns one listening socket (the snapshot and control sockets): started and waited for
    until it is bound (:meth:`start_and_wait` raises the bind's error), told to stop (:meth:`request_stop`,
    joined by the pipeline against its one deadline) or stopped and joined (:meth:`stop`).

    :meth:`run` is the one loop of every such server: it makes the ROUTER socket (on the request I/O
    thread, not the publisher's) and hands it to :meth:`_configure` (the subclass: options, bound,
    :attr:`endpoint` set); a failure there closes the socket and sets :attr:`error`, then :attr:`ready`;
    a readable socket goes to :meth:`_readable`, and :meth:`_idle` runs at least every 0.1 s; a defect
    later ends up in :attr:`failure` (the supervisor reads it, logs it once and restarts the server on
    :attr:`endpoint`). The socket closes with the LINGER its options gave it."""

    def __init__(self, name: str, context) -> None:
        super().__init__(name=name, daemon=False)
        self._ctx = context
        self._stop_event = threading.Event()
        self.ready = threading.Event()
        self.error: BaseException | None = None  # the bind failed (raised by start_and_wait)
        self.failure: BaseException | None = None  # what ended the thread after the bind
        self.endpoint: str | None = None  # the address actually bound (a ``*`` port resolved)

    def start_and_wait(self, timeout: float = 5.0) -> None:
        """Start the thread and wait for the bind; a bind failure is raised here as PublisherError."""
        self.start()
        self.ready.wait(timeout)
        if self.error is not None:
            raise self.error

    def request_stop(self) -> None:
        self._stop_event.set()

    def stop(self, timeout: float = 3.0) -> None:
        self.request_stop()
        join_or_warn(self, timeout)

    def run(self) -> None:
        import zmq

        sock = self._ctx.socket(zmq.ROUTER)
        try:
            pin_io(sock, REQUEST_IO)
            self._configure(sock, zmq)
        except BaseException as exc:  # raised by start_and_wait()
            sock.close(linger=0)
            self.error = exc
            self.ready.set()
            return
        self.ready.set()
        try:
            while not self._stop_event.is_set():
                if sock.poll(100, zmq.POLLIN):
                    self._readable(sock, zmq)
                self._idle()
        except Exception as exc:  # a defect: the supervisor logs it once and restarts the server
            self.failure = exc
        finally:
            sock.close()

    def _configure(self, sock, zmq) -> None:
        """Set ``sock``'s options and bind it (sets :attr:`endpoint`); a bind error is raised as PublisherError."""
        raise NotImplementedError

    def _readable(self, sock, zmq) -> None:
        """Handle what arrived on ``sock``."""
        raise NotImplementedError

    def _idle(self) -> None:
        """Periodic work between polls (none by default)."""

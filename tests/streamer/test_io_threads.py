"""Results and requests on separate ZeroMQ I/O threads (streamer/endpoints.py: pipeline_context, pin_io).

A flood of snapshot or control requests is read by the request I/O thread; the publisher's socket has
the other one to itself. The effect on latency is measured by benchmarks.soak, not asserted here; these
tests check the wiring: which thread each socket asks for, and that sockets pinned so still bind and serve.
"""

from __future__ import annotations

import threading

import pytest
import zmq

from model.errors import ConfigError
from streamer.config import SnapshotConfig
from streamer.endpoints import IO_THREADS, PUBLISH_IO, REQUEST_IO, pin_io, pipeline_context
from streamer.outputs.snapshot import LastValueCache, SnapshotServer, request_snapshot


def test_the_pipeline_context_has_a_thread_for_results_and_one_for_requests():
    ctx = pipeline_context()
    try:
        assert ctx.get(zmq.IO_THREADS) == IO_THREADS == 2
        pub, router = ctx.socket(zmq.PUB), ctx.socket(zmq.ROUTER)
        pin_io(pub, PUBLISH_IO)
        pin_io(router, REQUEST_IO)
        assert (pub.getsockopt(zmq.AFFINITY), router.getsockopt(zmq.AFFINITY)) == (0b01, 0b10)
        pub.close(0)
        router.close(0)
    finally:
        ctx.term()


def test_a_context_with_one_io_thread_keeps_zeromqs_choice():
    ctx = zmq.Context()  # a test's or a library user's context: pinning to thread 1 would make bind fail
    try:
        router = ctx.socket(zmq.ROUTER)
        pin_io(router, REQUEST_IO)
        assert router.getsockopt(zmq.AFFINITY) == 0
        router.bind("tcp://127.0.0.1:*")
        router.close(0)
    finally:
        ctx.term()


def test_a_pinned_snapshot_socket_serves_next_to_a_pinned_publisher():
    ctx = pipeline_context()
    pub = ctx.socket(zmq.PUB)
    pin_io(pub, PUBLISH_IO)
    pub.bind("tcp://127.0.0.1:*")
    cache = LastValueCache(["a"])
    cache.on_sent("status.a", {"type": "status", "stream": "a", "state": "running"})
    server = SnapshotServer(SnapshotConfig(address="tcp://127.0.0.1:*"), cache, ctx)
    server.start_and_wait()
    try:
        snap = request_snapshot(server.endpoint, context=ctx)
        assert snap is not None and snap["streams"]["a"]["status"]["state"] == "running"
    finally:
        server.stop()
        pub.close(0)
        ctx.term()
    assert not server.is_alive()


def test_a_server_whose_setup_fails_closes_its_socket():
    """A failure while the socket is set up (here the CURVE step) is raised by start_and_wait and leaves
    no socket behind: the context still terminates (it would wait for an open socket for ever)."""
    def broken_keys(sock):
        raise ConfigError("the keys cannot be read")

    ctx = pipeline_context()
    server = SnapshotServer(SnapshotConfig(address="tcp://127.0.0.1:*"), LastValueCache(), ctx, secure=broken_keys)
    with pytest.raises(ConfigError, match="keys"):
        server.start_and_wait()
    server.join(5)
    term = threading.Thread(target=ctx.term, daemon=True)
    term.start()
    term.join(5)
    assert not term.is_alive(), "an open socket kept the context from terminating"

"""The head's proxy (streamer/cluster/hub.py) on real ZeroMQ sockets in this process: two "worker" PUB
sockets in, one subscriber out. No Ray."""

from __future__ import annotations

import threading

import feeds
import pytest
import zmq

from streamer.cluster.hub import Hub
from streamer.config import PublisherConfig
from streamer.core.stats import StreamStats
from streamer.outputs import protocol
from streamer.outputs.snapshot import request_snapshot

STREAMS = ["a", "b"]


def result(stream: str, seq: int, session: str = "5e551011") -> dict:
    return protocol.stamp(protocol.result_message(stream=stream, session=session, seq=seq, frame_indices=[0, 1],
                                                  frame_ts=[1.0, 2.0], top_k=[{"label": "x", "score": 0.5}],
                                                  model={"name": "m", "precision": "fp32", "license": "-"},
                                                  inference_ms=1.0, age_ms=1.0, batch_size=1),
                          published_ts=3.0, capture_to_publish_ms=4.0)


def status(stream: str, **fields) -> dict:
    message = protocol.status_message(stream, "testpattern://", StreamStats(stream, "x").snapshot())
    return protocol.stamp({**message, **fields}, published_ts=3.0)


class Worker:
    """A worker pipeline's publisher, as the hub sees it: a PUB socket on a free port."""

    def __init__(self, ctx):
        self.sock = ctx.socket(zmq.PUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind(feeds.ANY_PORT)
        self.endpoint = self.sock.getsockopt(zmq.LAST_ENDPOINT).decode()

    def send(self, payload: dict) -> None:
        self.sock.send_multipart(protocol.encode(protocol.topic(payload["type"], payload["stream"]), payload))


@pytest.fixture
def ctx(zmq_context):
    return zmq_context


@pytest.fixture
def hub(ctx):
    hub = Hub(PublisherConfig(address=feeds.ANY_PORT), STREAMS, ctx)
    hub.start(threading.Event())
    yield hub
    hub.request_stop()
    hub.thread.join(5)
    assert not hub.thread.is_alive()


@pytest.fixture
def subscriber(ctx, hub):
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(hub.endpoint)
    yield sub
    sub.close()


def received(sub, until, timeout=5.0) -> list[dict]:
    """Messages the subscriber got until ``until(messages)`` holds (or the timeout passes)."""
    import json

    out: list[dict] = []
    poller = zmq.Poller()
    poller.register(sub, zmq.POLLIN)
    feeds.wait_until(lambda: (poller.poll(50) and out.append(json.loads(sub.recv_multipart()[1])), until(out))[1],
                     timeout, interval=0)
    return out


def joined(worker: Worker, sub, name: str, stream: str) -> None:
    """Send status until one from worker ``name`` arrives at the subscriber (both ends of the hub connected)."""
    def arrived():
        worker.send(status(stream))
        return any(m.get("worker") == name for m in received(sub, bool, 0.2))

    assert feeds.wait_until(arrived, 10), f"the hub never forwarded {name}"


def test_forwards_each_stream_from_its_owner_only_and_names_the_worker(hub, subscriber, ctx, validate):
    w0, w1 = Worker(ctx), Worker(ctx)
    hub.add_feed("f0", w0.endpoint, "w0", ["a"])
    hub.add_feed("f1", w1.endpoint, "w1", ["b"])
    joined(w0, subscriber, "w0", "a")
    joined(w1, subscriber, "w1", "b")
    w1.send(result("a", 5))  # a worker that does not own "a": never reaches a subscriber
    w0.send(result("a", 5))
    w1.send(result("b", 0))
    got = received(subscriber, lambda m: sum(x["type"] == "result" for x in m) >= 2)
    assert sorted((m["stream"], m["seq"]) for m in got if m["type"] == "result") == [("a", 5), ("b", 0)]
    assert hub.fenced >= 1
    w0.send(status("a"))
    w1.send(status("b"))
    got = received(subscriber, lambda m: len(m) >= 2)
    assert {m["stream"]: m["worker"] for m in got} == {"a": "w0", "b": "w1"}
    for m in got:
        validate(m)


def test_seq_never_goes_backwards_and_a_moved_stream_goes_on_from_next_seq(hub, subscriber, ctx):
    w0, w1 = Worker(ctx), Worker(ctx)
    hub.add_feed("f0", w0.endpoint, "w0", ["a"])
    joined(w0, subscriber, "w0", "a")
    for seq in (0, 1, 2):
        w0.send(result("a", seq))
    got = received(subscriber, lambda m: any(x.get("seq") == 2 for x in m))
    assert [m["seq"] for m in got if m["type"] == "result"] == [0, 1, 2] and hub.next_seq("a") == 3
    hub.drop_feed("f0")  # w0 is lost: the head moves "a" to w1
    hub.add_feed("f1", w1.endpoint, "w1", ["a"])
    joined(w1, subscriber, "w1", "a")
    w0.send(result("a", 3))  # the lost worker, still sending: fenced
    w1.send(result("a", 1))  # a copy from before: behind
    w1.send(result("a", 3))
    w1.send(result("a", 4))
    got = received(subscriber, lambda m: [x["seq"] for x in m if x["type"] == "result"][-1:] == [4])
    assert [m["seq"] for m in got if m["type"] == "result"] == [3, 4]
    assert hub.behind == 1


def test_head_messages_and_the_merged_snapshot(hub, subscriber, ctx):
    from streamer.config import SnapshotConfig
    from streamer.outputs.snapshot import SnapshotServer

    w0 = Worker(ctx)
    hub.add_feed("f0", w0.endpoint, "w0", ["a"])
    joined(w0, subscriber, "w0", "a")
    w0.send(result("a", 7))
    head = status("b")
    head.update(state="reassigning", reason="worker w1 lost", worker=None)
    hub.publish(protocol.status_topic("b"), head)
    got = received(subscriber, lambda m: any(x.get("state") == "reassigning" for x in m))
    assert [m["worker"] for m in got if m["stream"] == "b"] == [None]
    server = SnapshotServer(SnapshotConfig(address=feeds.ANY_PORT), hub.cache, ctx)
    server.start_and_wait()
    try:
        snap = request_snapshot(server.endpoint, context=ctx)
    finally:
        server.stop()
    assert snap["streams"]["a"]["result"]["seq"] == 7 and snap["streams"]["a"]["status"]["worker"] == "w0"
    assert snap["streams"]["b"]["status"]["state"] == "reassigning"


def test_a_removed_stream_says_removed_once_and_is_forgotten(hub, subscriber, ctx):
    w0 = Worker(ctx)
    hub.add_feed("f0", w0.endpoint, "w0", ["a", "b"])
    joined(w0, subscriber, "w0", "a")
    for seq in (0, 1):
        w0.send(result("a", seq))
        w0.send(result("b", seq))
    received(subscriber, lambda m: sum(x["type"] == "result" for x in m) >= 4)
    assert hub.next_seq("a") == 2
    # "a": its worker's last status comes in time, and is the only "removed" a subscriber gets
    hub.retire("a", status("a", state="removed", reason="the head's", worker=None), wait_s=30.0)
    w0.send(status("a", state="removed", reason="removed by a control request"))
    got = received(subscriber, lambda m: any(x.get("state") == "removed" for x in m))
    assert [(m["reason"], m["worker"]) for m in got if m.get("state") == "removed"] == \
           [("removed by a control request", "w0")]
    assert feeds.wait_until(lambda: hub.next_seq("a") == 0 and "a" not in hub.cache.view(), 5)
    w0.send(result("a", 2))  # nothing more of it goes out (owner forgotten)
    # "b": its worker never says so; the head's own status goes out after wait_s
    hub.retire("b", status("b", state="removed", reason="the head's", worker=None), wait_s=0.2)
    got = received(subscriber, lambda m: any(x.get("state") == "removed" for x in m))
    assert [(m["stream"], m["reason"]) for m in got if m.get("state") == "removed"] == [("b", "the head's")]
    assert hub.next_seq("b") == 0 and "b" not in hub.cache.view() and hub.fenced >= 1
    # added again: a new session that counts from 0, forwarded from its new feed
    hub.add_feed("f1", w0.endpoint, "w0", ["a"])
    joined(w0, subscriber, "w0", "a")
    w0.send(result("a", 0, session="0a0a0a0a"))
    got = received(subscriber, lambda m: any(x["type"] == "result" for x in m))
    assert [(m["stream"], m["seq"], m["session"]) for m in got if m["type"] == "result"] == [("a", 0, "0a0a0a0a")]


def test_a_busy_address_is_one_error(ctx):
    from model.errors import PublisherError

    taken = ctx.socket(zmq.PUB)
    taken.bind(feeds.ANY_PORT)
    address = taken.getsockopt(zmq.LAST_ENDPOINT).decode()
    try:
        with pytest.raises(PublisherError, match="cannot bind the publisher to .*pick a free address with --publish"):
            Hub(PublisherConfig(address=address), STREAMS, ctx).start(threading.Event())
    finally:
        taken.close(linger=0)

"""S9 on the sockets that face clients: hostile peers cannot grow the process or slow its results.

A raw ZMTP peer (tests/fixtures/zmtp.py: a plain TCP socket) sends what libzmq clients never would:
a 10 MB subscription to the publisher, a 25,000-frame snapshot request; a DEALER floods the snapshot
socket. One pipeline (two 40 fps test-pattern streams, a tiny model) runs for the module; each test
measures its RSS from /proc and compares results in attack blocks with results in quiet blocks
interleaved with them (ratios, so a machine that is slow as a whole does not decide the outcome).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import feeds
import numpy as np
import pytest
import zmq
import zmtp

from model.errors import PublisherError
from streamer.config import PublisherConfig
from streamer.core.stats import StatsRegistry
from streamer.outputs import protocol
from streamer.outputs.publisher import Publisher
from streamer.outputs.snapshot import (MAX_REQUEST_FRAMES, LastValueCache, SnapshotConfig, SnapshotServer,
                                       request_snapshot)
from streamer.subscribe import Collector

RSS_GROWTH_MB = 20  # the bound on what an attack may leave behind
P99_RATIO = 1.2  # results' p99 capture->publish under attack / without it
RESULTS_RATIO = 0.9  # results per second under a snapshot flood / without it: at most 10 % fewer
STREAMS = ("a", "b", "c", "d")


def port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


# ---- the options themselves, in process -----------------------------------------------------------
def test_publisher_disconnects_a_subscription_frame_over_the_limit(tcp_address):
    pub = Publisher(PublisherConfig(address=tcp_address), StatsRegistry(), zmq.Context.instance())
    pub.start(threading.Event())
    try:
        with zmtp.RawPeer(port_of(tcp_address), b"SUB") as fair:  # a subscription of legal size stays connected
            assert fair.send(zmtp.frame(b"\x01result.cam0")) and not fair.closed_by_peer(0.5)
        with zmtp.RawPeer(port_of(tcp_address), b"SUB") as peer:
            peer.send_large_frame(protocol.MAX_SUBSCRIPTION_BYTES + 1, b"\x01")
            assert peer.closed_by_peer(5.0)  # ZeroMQ read the frame's size and hung up
            assert peer.sent < 1 << 20
    finally:
        pub.stop()


def test_snapshot_socket_refuses_requests_over_the_frame_and_byte_limits():
    cache = LastValueCache(["a"])
    ctx = zmq.Context()
    address = feeds.free_tcp_address()
    server = SnapshotServer(SnapshotConfig(address=address, max_request_bytes=1024), cache, ctx)
    server.start_and_wait()
    try:
        with pytest.raises(PublisherError, match="over 65 frames or 1024 bytes"):
            request_snapshot(address, streams=[f"s{i}" for i in range(MAX_REQUEST_FRAMES)], context=ctx)
        with pytest.raises(PublisherError, match="over 65 frames or 1024 bytes"):
            request_snapshot(address, streams=["x" * 600, "y" * 600], context=ctx)  # each frame fits, both do not
        assert request_snapshot(address, streams=["a"], context=ctx)["streams"] == {
            "a": {"status": None, "result": None, "events": []}}
        assert request_snapshot(address, streams=["nope"], context=ctx)["streams"] == {}  # unknown id: nothing
        with zmtp.RawPeer(port_of(address), b"DEALER") as peer:  # one frame over the limit: hung up on
            peer.send_large_frame(2048, b"snapshot")
            assert peer.closed_by_peer(5.0)
        assert server.refused == 2 and server.served == 2
    finally:
        server.stop()
        ctx.term()


def test_one_peer_gets_one_answer_per_interval():
    cache = LastValueCache(["a"])
    ctx = zmq.Context()
    address = feeds.free_tcp_address()
    server = SnapshotServer(SnapshotConfig(address=address), cache, ctx)
    server.start_and_wait()
    sock = ctx.socket(zmq.DEALER)
    try:
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(address)
        for _ in range(50):
            sock.send_multipart([protocol.SNAPSHOT_REQUEST])
        answers = 0
        while sock.poll(1000):
            sock.recv_multipart()
            answers += 1
        assert 1 <= answers <= 3  # the 50 arrived within far less than 3 intervals
        assert server.limited == 50 - answers
    finally:
        sock.close()
        server.stop()
        ctx.term()


# ---- a running pipeline under attack --------------------------------------------------------------
@pytest.fixture(scope="module")
def pipeline(tiny_model, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("attacks")
    streams = [{"id": s, "url": "testpattern://?fps=50"} for s in STREAMS]  # 100 results a second in all
    cfg = feeds.write_config(tmp / "c.yaml", streams, window="{stride: 2, hop: 2}")
    publish, snapshot = feeds.free_tcp_address(), feeds.free_tcp_address()
    with feeds.Pipeline(["--config", str(cfg), "--model", str(tiny_model), "--publish", publish,
                         "--snapshot", snapshot], tmp / "run.log") as run, Collector(publish) as results:
        assert feeds.wait_until(lambda: len(results.messages) >= 100, 90), run.stderr()[-2000:]
        run.publish, run.snapshot, run.results = publish, snapshot, results
        yield run
        assert run.proc.poll() is None, run.stderr()[-2000:]
        assert run.terminate(15) == 0, run.stderr()[-2000:]


def blocks(results: Collector, start_attack, stop_attack, *, pairs: int = 10, block_s: float = 1.2):
    """Quiet and attack blocks, interleaved; the results published in each kind, as lists of messages."""
    spans: dict[str, list[tuple[float, float]]] = {"quiet": [], "attack": []}
    for _ in range(pairs):
        for kind in ("quiet", "attack"):
            if kind == "attack":
                start_attack()
            t0 = time.time()
            time.sleep(block_s)
            spans[kind].append((t0, time.time()))
            if kind == "attack":
                stop_attack()
    time.sleep(0.5)  # the last results in flight
    got = list(results.messages)
    return {kind: [m for m in got if any(a <= m["published_ts"] < b for a, b in s)] for kind, s in spans.items()}


def p99(messages: list[dict]) -> float:
    return float(np.percentile([m["latency_ms"]["capture_to_publish"] for m in messages], 99))


def test_huge_subscriptions_leave_memory_and_latency_as_they_were(pipeline):
    attacks = []

    def subscribe_huge():  # the chaos run's attack: one 10 MB subscription, and five of 1 MB
        for size in (10_000_000,) + (1_000_000,) * 5:
            with zmtp.RawPeer(port_of(pipeline.publish), b"SUB") as peer:
                peer.send_large_frame(size, b"\x01result.")
                attacks.append(peer.closed_by_peer(5.0))

    rss0 = pipeline.rss_kb()
    got = blocks(pipeline.results, subscribe_huge, lambda: None)
    growth_mb = (pipeline.rss_kb() - rss0) / 1024
    assert len(attacks) == 60 and all(attacks)  # each huge frame made ZeroMQ hang up
    assert growth_mb <= RSS_GROWTH_MB, growth_mb
    assert len(got["quiet"]) >= 100 and len(got["attack"]) >= 100, {k: len(v) for k, v in got.items()}
    assert p99(got["attack"]) <= P99_RATIO * p99(got["quiet"]), (p99(got["attack"]), p99(got["quiet"]))


def test_a_25000_frame_snapshot_request_is_refused_and_its_memory_freed(pipeline):
    rss0 = pipeline.rss_kb()
    with zmtp.RawPeer(port_of(pipeline.snapshot), b"DEALER") as peer:
        body = b"".join(zmtp.frame(b"s" * 4000, more=True) for _ in range(1000))
        assert peer.send(zmtp.frame(b"snapshot", more=True))
        for _ in range(25):
            assert peer.send(body), "the snapshot socket hung up on frames within its per-frame limit"
        assert peer.send(zmtp.frame(b"last"))
        assert peer.received(b'"ok":false', timeout=60)  # refused, with a reason, once all of it was read

    def growth_mb() -> float:
        return (pipeline.rss_kb() - rss0) / 1024

    assert feeds.wait_until(lambda: growth_mb() <= RSS_GROWTH_MB, 10), growth_mb()  # freed and given back
    snap = request_snapshot(pipeline.snapshot, timeout=5.0)
    assert snap is not None and set(snap["streams"]) == set(STREAMS)


FLOOD = """
import os, sys, zmq
os.nice(19)  # the flooder's own CPU is not the pipeline's cost: on 2 shared cores it would decide the outcome
ctx = zmq.Context()
sock = ctx.socket(zmq.DEALER)
sock.setsockopt(zmq.LINGER, 0)
sock.connect(sys.argv[1])
print("ready", flush=True)
while True:  # as fast as the snapshot socket takes them (a blocking send waits at SNDHWM)
    sock.send(b"snapshot")
    while sock.poll(0):
        sock.recv_multipart()
"""


def test_a_snapshot_request_flood_does_not_cut_results(pipeline):
    floods: list[subprocess.Popen] = []

    def start():
        proc = subprocess.Popen([sys.executable, "-c", FLOOD, pipeline.snapshot], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        floods.append(proc)

    def stop():
        floods[-1].kill()
        floods[-1].wait(10)

    try:
        got = blocks(pipeline.results, start, stop)
    finally:
        for proc in floods:
            proc.kill()
            proc.wait(10)
    assert len(got["attack"]) >= RESULTS_RATIO * len(got["quiet"]), {k: len(v) for k, v in got.items()}
    assert p99(got["attack"]) <= P99_RATIO * p99(got["quiet"]), (p99(got["attack"]), p99(got["quiet"]))
    assert request_snapshot(pipeline.snapshot, timeout=5.0) is not None  # still serving

"""S9 on the sockets that face clients: hostile peers cannot grow the process or slow its results.

A raw ZMTP peer (streamer/testing/zmtp.py: a plain TCP socket) sends what libzmq clients never would:
a 10 MB subscription to the publisher, a 25,000-frame snapshot request; a DEALER floods the snapshot
socket. One pipeline (four 50 fps test-pattern streams, a tiny model) runs for the module; each test
measures its RSS from /proc and compares results in attack blocks with results in quiet blocks
interleaved with them (ratios, so a machine that is slow as a whole does not decide the outcome).

Which ratio: capture-to-publish p50 within 20 %, and p99 within 3x. The issue asked for p99 within
20 %, but on this shared 2-core machine two sets of *quiet* blocks (no attack at all, ~1,200 results
each) differed in p99 by 0.59x to 1.63x over six tries (p50: 0.96x to 1.01x), so a 20 % p99 bound
would fail at random; 3x still catches what the attacks did before (p99 20 ms -> 2.26 s, 227 ms).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time

import feeds
import numpy as np
import pytest
import zmq

from model.errors import PublisherError
from streamer.config import PublisherConfig
from streamer.core.stats import StatsRegistry
from streamer.outputs import protocol
from streamer.outputs.publisher import Publisher
from streamer.outputs.snapshot import (MAX_REQUEST_FRAMES, LastValueCache, SnapshotConfig, SnapshotServer,
                                       request_snapshot)
from streamer.subscribe import Collector
from streamer.testing import zmtp

RSS_GROWTH_MB = 20  # the bound on what an attack may leave behind
P50_RATIO = 1.2  # results' p50 capture->publish under attack / without it
P99_RATIO = 3.0  # ... and p99 (see above: p99 differs by up to 1.6x between quiet blocks here)
RESULTS_RATIO = 0.9  # results per second under a snapshot flood / without it: at most 10 % fewer
CPU_RATIO = 1.25  # the pipeline's CPU seconds a second under a snapshot flood / without it
STREAMS = ("a", "b", "c", "d")


def flooder(address: str) -> subprocess.Popen:
    """``streamer.testing.snapshot_flood`` in its own process: one DEALER sending snapshot requests as fast
    as the server reads them (a blocking send), until killed; it has printed ``ready`` when this returns."""
    flood = subprocess.Popen([sys.executable, "-m", "streamer.testing.snapshot_flood", address], cwd=feeds.REPO,
                             env=feeds.ENV, stdout=subprocess.PIPE, text=True)
    assert flood.stdout.readline().strip() == "ready"
    return flood


def port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


@contextlib.contextmanager
def snapshot_server(**config):
    """A SnapshotServer for one stream ``a`` on a free loopback port: yields (server, context, address)."""
    ctx = zmq.Context()
    address = feeds.free_tcp_address()
    server = SnapshotServer(SnapshotConfig(address=address, **config), LastValueCache(["a"]), ctx)
    server.start_and_wait()
    try:
        yield server, ctx, address
    finally:
        server.stop()
        ctx.term()


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
    with snapshot_server(max_request_bytes=1024) as (server, ctx, address):
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


def test_one_peer_gets_one_answer_per_interval():
    with snapshot_server() as (server, ctx, address):
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
        finally:
            sock.close()
        assert 1 <= answers <= 3  # the 50 arrived within far less than 3 intervals
        assert server.limited == 50 - answers


def test_a_flood_is_read_at_a_bounded_rate_and_a_fair_client_still_gets_its_answer():
    from streamer.outputs import snapshot

    with snapshot_server() as (server, ctx, address):
        flood = flooder(address)
        try:
            assert feeds.wait_until(lambda: server.read >= 50, 10)
            read0, t0 = server.read, time.monotonic()
            fair = request_snapshot(address, context=ctx, timeout=5.0)  # another peer, in the middle of the flood
            waited = time.monotonic() - t0
            time.sleep(max(0.0, 2.0 - (time.monotonic() - t0)))
            rate = (server.read - read0) / (time.monotonic() - t0)
        finally:
            flood.kill()
            flood.wait(10)
    limit = snapshot._READS_PER_TICK / snapshot._TICK_S
    assert fair is not None and waited < 2.0, waited  # fair queueing: one read in two is the other peer's
    assert 0.5 * limit <= rate <= 1.1 * limit, rate  # the flood is read as fast as allowed, and no faster
    assert server.served <= 2 + 10 * 4  # the flooder: one answer per 0.1 s, whatever it sends
    assert server.limited >= server.read - server.served - 1


def test_a_paced_flood_from_several_peers_gets_one_answer_per_interval_each():
    """The soak's flood (issue 19: ~80k requests a second for a few seconds) from 4 DEALERs that never
    block: the server reads at most its rate, whatever ZeroMQ took in (tens of thousands of requests
    queue toward it), and each peer gets at most one answer per interval."""
    from streamer.outputs import snapshot

    rate, seconds, sockets = 20000, 1.5, 4
    with snapshot_server() as (server, ctx, address):
        flood = subprocess.Popen([sys.executable, "-m", "streamer.testing.snapshot_flood", address, "--rate", str(rate),
                                  "--seconds", str(seconds), "--sockets", str(sockets)], cwd=feeds.REPO,
                                 env=feeds.ENV, stdout=subprocess.PIPE, text=True)
        try:
            assert flood.stdout.readline().strip() == "ready"
            t0 = time.monotonic()
            counts = json.loads(flood.stdout.readline())
            elapsed = time.monotonic() - t0
        finally:
            flood.kill()
            flood.wait(10)
        read = server.read
    assert counts["tried"] >= rate * (seconds - 0.1) and counts["tried"] == counts["sent"] + counts["refused"], counts
    assert read < counts["sent"] and read <= snapshot._READS_PER_TICK / snapshot._TICK_S * (elapsed + 0.5), (read, elapsed)
    assert counts["answers"] <= sockets * (elapsed / snapshot.PEER_INTERVAL_S + 1), (counts, elapsed)


def test_the_cache_is_copy_on_write():
    """A reader holding a view never sees it change: the publisher thread never waits for one."""
    cache = LastValueCache(["a"])
    cache.on_sent("status.a", {"type": "status", "stream": "a", "state": "running"})
    view = cache.view()
    entry = view["a"]
    cache.on_sent("result.a", {"type": "result", "stream": "a", "seq": 1})
    cache.on_sent("status.b", {"type": "status", "stream": "b", "state": "running"})
    assert view is not cache.view() and set(view) == {"a"} and view["a"] is entry and entry.result is None
    assert cache.view()["a"].result == {"type": "result", "stream": "a", "seq": 1}
    assert not any(isinstance(v, type(threading.Lock())) for v in vars(cache).values())  # nothing to wait on


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


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used, from /proc."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def blocks(pipeline, start_attack, stop_attack, *, pairs: int = 10, block_s: float = 1.2):
    """Quiet and attack blocks, interleaved: the results published in each kind (lists of messages),
    and under ``"cpu"`` the pipeline's CPU seconds per second in each kind."""
    spans: dict[str, list[tuple[float, float]]] = {"quiet": [], "attack": []}
    cpu = {"quiet": 0.0, "attack": 0.0}
    for _ in range(pairs):
        for kind in ("quiet", "attack"):
            if kind == "attack":
                start_attack()
            t0, c0 = time.time(), cpu_s(pipeline.pid)
            time.sleep(block_s)
            spans[kind].append((t0, time.time()))
            cpu[kind] += cpu_s(pipeline.pid) - c0
            if kind == "attack":
                stop_attack()
    time.sleep(0.5)  # the last results in flight
    got = list(pipeline.results.messages)
    out = {kind: [m for m in got if any(a <= m["published_ts"] < b for a, b in s)] for kind, s in spans.items()}
    out["cpu"] = {kind: used / (pairs * block_s) for kind, used in cpu.items()}
    return out


def latency_ratios(got: dict[str, list[dict]]) -> dict[int, float]:
    """{percentile: attack / quiet} of capture-to-publish, for p50 and p99."""
    def pct(kind: str, q: int) -> float:
        return float(np.percentile([m["latency_ms"]["capture_to_publish"] for m in got[kind]], q))

    return {q: pct("attack", q) / pct("quiet", q) for q in (50, 99)}


def assert_latency_kept(got: dict[str, list[dict]]) -> None:
    ratios = latency_ratios(got)
    assert ratios[50] <= P50_RATIO and ratios[99] <= P99_RATIO, ratios


def test_huge_subscriptions_leave_memory_and_latency_as_they_were(pipeline):
    attacks = []

    def subscribe_huge():  # the chaos run's attack: one 10 MB subscription, and five of 1 MB
        attacks.extend(zmtp.oversized_subscriptions(port_of(pipeline.publish), (10_000_000,) + (1_000_000,) * 5))

    rss0 = pipeline.rss_kb()
    got = blocks(pipeline, subscribe_huge, lambda: None)
    growth_mb = (pipeline.rss_kb() - rss0) / 1024
    assert len(attacks) == 60 and all(attacks)  # each huge frame made ZeroMQ hang up
    assert growth_mb <= RSS_GROWTH_MB, growth_mb
    assert len(got["quiet"]) >= 100 and len(got["attack"]) >= 100, {k: len(v) for k, v in got.items()}
    assert_latency_kept(got)


def test_a_25000_frame_snapshot_request_is_refused_and_its_memory_freed(pipeline):
    rss0 = pipeline.rss_kb()
    outcome = zmtp.many_frame_request(port_of(pipeline.snapshot))  # 25,000 frames of 4 KB
    assert outcome.sent_all, "the snapshot socket hung up on frames within its per-frame limit"
    assert outcome.refused  # refused, with a reason, once all of it was read

    def growth_mb() -> float:
        return (pipeline.rss_kb() - rss0) / 1024

    assert feeds.wait_until(lambda: growth_mb() <= RSS_GROWTH_MB, 10), growth_mb()  # freed and given back
    snap = request_snapshot(pipeline.snapshot, timeout=5.0)
    assert snap is not None and set(snap["streams"]) == set(STREAMS)




def test_a_snapshot_request_flood_does_not_cut_results(pipeline):
    """One flooder process, let loose (SIGCONT) in the attack blocks and frozen (SIGSTOP) in the quiet
    ones: it sends as fast as the snapshot socket reads, so what it costs is what the server lets in."""
    flood = flooder(pipeline.snapshot)
    try:
        flood.send_signal(signal.SIGSTOP)
        got = blocks(pipeline, lambda: flood.send_signal(signal.SIGCONT), lambda: flood.send_signal(signal.SIGSTOP))
    finally:
        flood.kill()
        flood.wait(10)
    assert len(got["attack"]) >= RESULTS_RATIO * len(got["quiet"]), {k: len(got[k]) for k in ("quiet", "attack")}
    assert_latency_kept(got)
    # what the flood costs the pipeline: a bounded read rate, not a thread spinning on requests
    assert got["cpu"]["attack"] <= CPU_RATIO * got["cpu"]["quiet"], got["cpu"]
    assert request_snapshot(pipeline.snapshot, timeout=5.0) is not None  # still serving

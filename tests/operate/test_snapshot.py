"""Late joiners: a subscriber that connects during a run gets every stream's latest state at once."""

from __future__ import annotations

import json
import subprocess
import sys

import feeds
import zmq

from streamer.outputs.snapshot import LastValueCache, SnapshotConfig, SnapshotServer, request_snapshot
from streamer.subscribe import Subscriber

# events with thresholds a random tiny model reaches (its 5 scores sit near 0.2), so some stay open
EVENTS = "events: {default: {enter: 0.1, exit: 0.05, min_duration_s: 0.0}}\n"


def test_late_subscriber_gets_every_streams_latest_state(tiny_model, tmp_path, validate):
    publish, snap_address = feeds.free_tcp_address(), feeds.free_tcp_address()
    config = feeds.write_config(tmp_path / "run.yaml", [{"id": "a", "url": "synthetic://actions?seed=2&fps=20"},
                                                        {"id": "b", "url": "testpattern://?fps=20"}], extra=EVENTS)
    args = ["--config", str(config), "--model", str(tiny_model), "--publish", publish, "--snapshot", snap_address]
    with feeds.Pipeline(args, tmp_path / "run.log") as run:

        def both_have_results_and_events():
            assert run.proc.poll() is None, run.stderr()
            snap = request_snapshot(snap_address, timeout=1.0)
            entries = [(snap or {}).get("streams", {}).get(s) or {} for s in ("a", "b")]
            if all(e.get("result") and e.get("events") for e in entries):
                return snap
            return None

        assert feeds.wait_until(both_have_results_and_events, timeout=90) is not None, run.stderr()

        # a subscriber joining now: SUB first, then the snapshot, then live messages
        with Subscriber(publish, topics=("result.", "status.", "event.")) as sub:
            snap = sub.snapshot(snap_address)
            live = [sub.recv(timeout=10) for _ in range(12)]
        cli = subprocess.run([sys.executable, "-m", "streamer.subscribe", publish, "--snapshot", snap_address,
                              "--json", "--count", "1", "--timeout", "20"], cwd=feeds.REPO, env=feeds.ENV,
                             capture_output=True, text=True, timeout=60)
        assert run.terminate(15) == 0, run.stderr()

    validate(snap)
    assert set(snap["streams"]) == {"a", "b"}
    for stream, entry in snap["streams"].items():
        assert entry["status"]["stream"] == stream and entry["status"]["state"] == "running"
        assert entry["result"]["stream"] == stream and entry["result"]["seq"] >= 0
        assert entry["events"], stream  # open events of this stream
        assert {e["phase"] for e in entry["events"]} <= {"start", "update"}
        assert all(e["stream"] == stream and e["end_ts"] is None for e in entry["events"])
        assert len({e["id"] for e in entry["events"]}) == len(entry["events"])
    # live results continue after the snapshot: never the snapshot's own result again
    assert all(m is not None for m in live)
    for _, msg in live:
        validate(msg)
        if msg["type"] == "result":
            assert msg["seq"] > snap["streams"][msg["stream"]]["result"]["seq"]
    # the CLI prints the snapshot (status, result, open events of both streams) before the live result
    assert cli.returncode == 0, cli.stderr
    printed = [json.loads(line) for line in cli.stdout.splitlines()]
    for stream in ("a", "b"):
        kinds = {m["type"] for m in printed[:-1] if m["stream"] == stream}
        assert kinds == {"status", "result", "event"}, (stream, kinds)
    assert printed[-1]["type"] == "result"


def test_snapshot_socket_ignores_malformed_requests_and_filters_by_stream():
    cache = LastValueCache(["a", "b"])
    cache.on_sent("status.a", {"type": "status", "stream": "a", "state": "running"})
    cache.on_sent("event.a", {"type": "event", "stream": "a", "id": "e1", "phase": "start"})
    cache.on_sent("event.a", {"type": "event", "stream": "a", "id": "e2", "phase": "start"})
    cache.on_sent("event.a", {"type": "event", "stream": "a", "id": "e2", "phase": "update"})
    cache.on_sent("event.a", {"type": "event", "stream": "a", "id": "e1", "phase": "end"})
    ctx = zmq.Context()
    address = feeds.free_tcp_address()
    server = SnapshotServer(SnapshotConfig(address=address), cache, ctx)
    server.start_and_wait()
    try:
        bad = ctx.socket(zmq.DEALER)
        bad.setsockopt(zmq.LINGER, 1000)
        bad.connect(address)
        bad.send_multipart([b"gimme", b"\xff"])
        bad.send(b"x" * 10_000)  # over max_request_bytes: ZeroMQ drops the connection
        bad.close()
        assert feeds.wait_until(lambda: server.refused >= 1, timeout=10)
        snap = request_snapshot(address, streams=["a"], context=ctx)
        assert snap is not None and set(snap["streams"]) == {"a"}
        assert snap["streams"]["a"]["status"]["state"] == "running"
        assert [(e["id"], e["phase"]) for e in snap["streams"]["a"]["events"]] == [("e2", "update")]
        assert request_snapshot(address, context=ctx)["streams"]["b"] == {"status": None, "result": None, "events": []}
    finally:
        server.stop()
        ctx.term()
    assert not server.is_alive()


def test_snapshot_socket_uses_the_publishers_curve_keys(tmp_path):
    from streamer.outputs.security import CurveServer, client_options, generate_keypair

    _, server_secret = generate_keypair(tmp_path / "server", "server")
    allowed_public, allowed_secret = generate_keypair(tmp_path / "allowed", "client")
    _, stranger_secret = generate_keypair(tmp_path / "stranger", "other")
    cache = LastValueCache(["cam"])
    ctx = zmq.Context()
    curve = CurveServer(ctx, server_secret, tmp_path / "allowed").start()
    address = feeds.free_tcp_address()
    server = SnapshotServer(SnapshotConfig(address=address), cache, ctx, secure=curve.secure)
    server.start_and_wait()
    try:
        server_public = tmp_path / "server" / "server.key"
        good = request_snapshot(address, context=ctx, curve=client_options(server_public, allowed_secret))
        assert good is not None and set(good["streams"]) == {"cam"}
        assert request_snapshot(address, context=ctx, timeout=1.0) is None  # plaintext client
        stranger = client_options(server_public, stranger_secret)
        assert request_snapshot(address, context=ctx, timeout=1.0, curve=stranger) is None  # not on the list
    finally:
        server.stop()
        curve.stop()
        ctx.term()


def test_curve_allow_list_reload_applies_to_new_connections(tmp_path):
    import shutil

    import pytest

    from model.errors import PublisherError
    from streamer.outputs.security import CurveServer, client_options, generate_keypair

    _, server_secret = generate_keypair(tmp_path / "server", "server")
    server_public = tmp_path / "server" / "server.key"
    alice_public, alice_secret = generate_keypair(tmp_path / "alice", "alice")
    bob_public, bob_secret = generate_keypair(tmp_path / "bob", "bob")
    allow = tmp_path / "allow"
    allow.mkdir()
    shutil.copy(alice_public, allow)
    ctx = zmq.Context()
    curve = CurveServer(ctx, server_secret, allow).start()
    address = feeds.free_tcp_address()
    server = SnapshotServer(SnapshotConfig(address=address), LastValueCache(["cam"]), ctx, secure=curve.secure)
    server.start_and_wait()
    alice, bob = client_options(server_public, alice_secret), client_options(server_public, bob_secret)
    try:
        assert request_snapshot(address, context=ctx, curve=alice) is not None
        assert request_snapshot(address, context=ctx, curve=bob, timeout=1.0) is None
        shutil.copy(bob_public, allow)
        (allow / "alice.key").unlink()
        assert curve.reload() == {security_key(bob_public)}
        assert request_snapshot(address, context=ctx, curve=bob) is not None  # added: in at once
        assert request_snapshot(address, context=ctx, curve=alice, timeout=1.0) is None  # removed: out
        (allow / "bob.key").unlink()
        with pytest.raises(PublisherError, match="holds no"):
            curve.reload()  # an empty folder is an error, and the list in force stays
        assert curve.allowed == {security_key(bob_public)}
        assert request_snapshot(address, context=ctx, curve=bob) is not None
    finally:
        server.stop()
        curve.stop()
        ctx.term()


def security_key(path) -> bytes:
    from streamer.outputs.security import load_public_key

    return load_public_key(path)

"""Cluster mode end to end on a real multi-node Ray cluster on this machine (one per module: a head and three
one-CPU nodes, tests/cluster/conftest.py): ``run_stream.py --cluster ADDRESS`` with the tiny test model and
live synthetic sources, one subscriber on the head's single publisher address.

These are CPU actors sharing this machine's two cores with everything else, so the checks are about
behaviour (every stream served once, streams moved within the bound, seq order), never speed."""

from __future__ import annotations

import json
import time

import clusterprocs
import feeds
import pytest

from streamer.outputs.snapshot import request_snapshot

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]

STREAMS = [f"s{i}" for i in range(6)]
RESUME_S = 30.0  #: a lost node's streams publish results again within this (issue 15)


def head_args(address: str, model, streams=STREAMS, workers: int = 3) -> list[str]:
    args = ["--cluster", address, "--workers", str(workers), "--model", str(model), "--publish", feeds.ANY_PORT]
    for i, stream in enumerate(streams):
        args += ["--source", f"{stream}=synthetic://actions?seed={i}&fps=8&width=64&height=48"]
    return args


def workers_of(rec: feeds.Recorder) -> dict[str, list]:
    """Stream -> the workers its status named, in order, repeats collapsed (None: the head, no worker), after
    the head's "connecting" at the start."""
    out: dict[str, list] = {}
    for m in rec.statuses():
        seen = out.setdefault(m["stream"], [])
        if (seen or m["worker"] is not None) and (not seen or seen[-1] != m["worker"]):
            seen.append(m["worker"])
    return out


def served_by(rec: feeds.Recorder, streams) -> dict[str, str]:
    return {s: (workers_of(rec).get(s) or [None])[-1] for s in streams}


def seqs(rec: feeds.Recorder, stream: str) -> list[int]:
    return [m["seq"] for m in rec.results(stream)]


def resumed(rec: feeds.Recorder, stream: str) -> bool:
    """A result of ``stream`` arrived after the head said it was reassigning it."""
    said = False
    for m in rec.messages():
        if m["stream"] == stream:
            said = said or m.get("state") == "reassigning"
            if said and m["type"] == "result":
                return True
    return False


def stop_and_check_gone(head: feeds.Pipeline, pids: list[int]) -> None:
    """SIGTERM: exit 0, and every worker actor process gone, within 10 s."""
    began = time.monotonic()
    assert head.terminate(10.0) == 0, head.stderr()[-3000:]
    left = feeds.wait_until(lambda: not any(clusterprocs.alive(p) for p in pids),
                            max(0.1, 10.0 - (time.monotonic() - began)))
    assert left, f"worker processes still running 10 s after SIGTERM: {[p for p in pids if clusterprocs.alive(p)]}"


def test_every_stream_through_one_address_and_a_lost_node_moves_only_its_streams(ray_cluster, tiny_model, tmp_path,
                                                                                  validate):
    with feeds.Pipeline(head_args(ray_cluster.address, tiny_model), tmp_path / "head.log") as head, \
            feeds.Recorder(head.endpoint("publisher", timeout=120), tmp_path / "sub.jsonl") as rec:
        assert feeds.wait_until(lambda: all(len(rec.results(s)) >= 3 for s in STREAMS), 150), head.stderr()[-4000:]
        where = served_by(rec, STREAMS)
        assert sorted(where.values()) == ["w0", "w0", "w1", "w1", "w2", "w2"]  # equal costs: two streams each
        snap = request_snapshot(head.endpoint("snapshot"), timeout=5.0)  # the workers' last values, merged
        assert sorted(snap["streams"]) == STREAMS
        assert all(e["result"] is not None and e["status"]["worker"] == where[s] for s, e in snap["streams"].items())

        victim = where["s0"]
        moved = [s for s in STREAMS if where[s] == victim]
        others = [s for s in STREAMS if s not in moved]
        node = clusterprocs.node_of(ray_cluster, clusterprocs.worker_pids(head.stderr())[victim][-1])
        lost_at = time.monotonic()
        ray_cluster.remove_node(node, allow_graceful=False)  # a machine lost: its raylet and workers killed
        try:
            back = feeds.wait_until(lambda: all(resumed(rec, s) for s in moved), RESUME_S + 10)
            took = time.monotonic() - lost_at
            assert back and took <= RESUME_S, f"{moved} resumed after {took:.1f} s:\n{head.stderr()[-4000:]}"
            time.sleep(2.0)  # a little more of everything
            after = workers_of(rec)
            for s in moved:  # the head said so meanwhile, then one survivor took over
                assert after[s][:2] == [victim, None] and len(after[s]) == 3, after
                assert after[s][2] not in (victim, None), after
                assert any(m["state"] == "reassigning" for m in rec.statuses(s))
                assert seqs(rec, s) == sorted(set(seqs(rec, s)))  # never backwards, never twice (gaps allowed)
                sessions = [m["session"] for m in rec.results(s)]
                assert sum(a != b for a, b in zip(sessions, sessions[1:])) == 1  # one restart: a new session
            for s in others:  # untouched: one worker throughout (after the head's "connecting"), every result
                assert after[s] == [where[s]], after
                got = seqs(rec, s)
                assert got == list(range(got[0], got[0] + len(got))), (s, got)
                assert len({m["session"] for m in rec.results(s)}) == 1
            for m in rec.messages()[:200] + [m for m in rec.messages() if m.get("state") == "reassigning"][:3]:
                validate(m)
            pids = [p for name, ps in clusterprocs.worker_pids(head.stderr()).items() for p in ps]
            stop_and_check_gone(head, pids)
        finally:
            ray_cluster.add_node(num_cpus=1)  # three nodes again for the next test
            ray_cluster.wait_for_nodes()


def test_with_no_room_streams_say_so_and_start_when_a_node_joins(ray_cluster, tiny_model, tmp_path):
    config = tmp_path / "big.yaml"
    config.write_text("cluster: {cpus_per_worker: 2}\n")  # no node here has two CPUs
    args = head_args(ray_cluster.address, tiny_model, streams=["s0"], workers=1) + ["--config", str(config)]
    with feeds.Pipeline(args, tmp_path / "head.log") as head, \
            feeds.Recorder(head.endpoint("publisher", timeout=120), tmp_path / "sub.jsonl") as rec:
        assert feeds.wait_until(lambda: len(rec.statuses("s0")) >= 3, 30), head.stderr()[-3000:]
        said = rec.latest_status("s0")
        assert (said["state"], said["reason"], said["worker"]) == ("connecting", "waiting for a worker to start", None)
        assert rec.results("s0") == []
        node = ray_cluster.add_node(num_cpus=2)  # a bigger machine joins
        try:
            assert feeds.wait_until(lambda: rec.results("s0"), 90), head.stderr()[-3000:]
            assert rec.latest_status("s0")["worker"] == "w0"
            stop_and_check_gone(head, clusterprocs.worker_pids(head.stderr())["w0"])
        finally:
            ray_cluster.remove_node(node)
    assert json.loads((tmp_path / "sub.jsonl").read_text().splitlines()[-1])["stream"] == "s0"


def test_control_requests_to_the_head_land_on_the_owning_worker(ray_cluster, tiny_model, tmp_path, validate):
    from streamer.control import Client

    args = head_args(ray_cluster.address, tiny_model, streams=["s0", "s1"])  # three workers, one idle
    with feeds.Pipeline(args, tmp_path / "head.log") as head, \
            feeds.Recorder(head.endpoint("publisher", timeout=120), tmp_path / "sub.jsonl") as rec, \
            Client(head.endpoint("control"), timeout=20.0) as ctl:
        assert feeds.wait_until(lambda: rec.results("s0") and rec.results("s1"), 150), head.stderr()[-4000:]
        busy = set(served_by(rec, ["s0", "s1"]).values())
        added = ctl.add({"id": "s2", "url": "synthetic://actions?seed=9&fps=8&width=64&height=48"})
        assert feeds.wait_until(lambda: rec.results("s2"), 90), head.stderr()[-4000:]
        assert {m["session"] for m in rec.results("s2")} == {added["session"]}  # the session the reply named
        idle = served_by(rec, ["s2"])["s2"]
        assert idle not in busy | {None}  # placed on the worker that had nothing
        rows = {r["id"]: r for r in ctl.list()}
        assert {s: r["worker"] for s, r in rows.items()} == served_by(rec, ["s0", "s1", "s2"])

        gone = served_by(rec, ["s0"])["s0"]
        assert ctl.remove("s0")["id"] == "s0"
        assert feeds.wait_until(lambda: (rec.latest_status("s0") or {}).get("state") == "removed", 10)
        last = rec.latest_status("s0")
        assert last["worker"] == gone and last["reason"] == "removed by a control request"
        validate(last)
        count = len(rec.results("s0"))
        time.sleep(2.0)
        assert len(rec.results("s0")) == count and [r["id"] for r in ctl.list()] == ["s1", "s2"]
        got = seqs(rec, "s1")
        assert got == list(range(got[0], got[0] + len(got)))  # the others carried on untouched
        stop_and_check_gone(head, [p for ps in clusterprocs.worker_pids(head.stderr()).values() for p in ps])

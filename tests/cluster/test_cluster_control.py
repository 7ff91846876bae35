"""The control API in cluster mode (streamer/cluster/control.py) over a fleet of fake workers
(tests/fixtures/fakecluster.py): each operation lands on the worker that owns (or should own) the
stream, sessions are the head's, refused requests change nothing. No Ray, no sockets."""

from __future__ import annotations

import json

import pytest
from fakecluster import SIX, build, run

from model.errors import ConfigError, ControlError
from streamer.cluster.control import ClusterService
from streamer.cluster.fleet import RETIRE_WAIT_S
from streamer.config import AppConfig, SourceConfig

NEW = SourceConfig(id="new", url="synthetic://actions?fps=10")


def started(sources=SIX[:4], workers=3, **config):
    """A fleet whose start-up streams are placed, and the service over it."""
    fleet, backend, hub, clock = build(sources=sources, workers=workers)
    run(fleet, clock, 1.0)
    service = ClusterService(AppConfig(sources=sources, **config), fleet)
    return service, fleet, backend, hub, clock


def owner(backend, stream: str) -> str | None:
    return next((name for name, w in backend.workers.items() if stream in w.streams()), None)


def test_add_lands_on_the_least_loaded_worker_under_the_session_of_its_reply():
    service, fleet, backend, hub, clock = started()  # 4 streams on 3 workers: one has two
    idle = [name for name, w in backend.workers.items() if len(w.streams()) == 1]
    reply = service.add(NEW)
    assert reply["id"] == "new" and reply["state"] == "connecting"
    said = [m for m in hub.sent if m["stream"] == "new"]
    assert said[-1]["session"] == reply["session"] and said[-1]["worker"] is None  # the head speaks for it
    run(fleet, clock, 0.3)
    assert owner(backend, "new") in idle
    assert backend.workers[owner(backend, "new")].sessions["new"] == reply["session"]  # the worker runs it so
    assert any("new" in ids for _, ids in hub.feeds.values())


def test_remove_goes_to_the_owner_and_an_emptied_share_is_released():
    service, fleet, backend, hub, clock = started()
    alone = next(s for s in ("s0", "s1", "s2", "s3") if len(backend.workers[owner(backend, s)].streams()) == 1)
    where = owner(backend, alone)
    feed = next(f for f, (_, ids) in hub.feeds.items() if alone in ids)
    assert service.remove(alone) == {"id": alone}
    assert owner(backend, alone) is None and alone not in fleet.streams
    assert hub.retired == [(alone, "removed", "removed by a control request", RETIRE_WAIT_S)]
    run(fleet, clock, 0.2)
    assert feed not in hub.feeds and backend.workers[where].streams() == []  # the share went with its stream
    others = {s: owner(backend, s) for s in ("s0", "s1", "s2", "s3") if s != alone}
    assert all(others.values())  # nothing else moved


def test_a_stream_without_a_worker_is_removed_by_the_head():
    service, fleet, backend, hub, clock = started(sources=SIX[:1], workers=1)
    backend.workers["w0"].up = False
    run(fleet, clock, 1.0)  # lost; no room anywhere: s0 waits
    service.remove("s0")
    assert hub.retired == [("s0", "removed", "removed by a control request", 0.0)]


def test_update_restarts_the_stream_under_a_new_session_and_list_names_workers():
    service, fleet, backend, hub, clock = started()
    before = fleet.streams["s1"].session
    reply = service.update(SourceConfig(id="s1", url="testpattern://?fps=5"))
    assert reply["session"] != before and ("s1", "removed", "updated: a new session follows",
                                           RETIRE_WAIT_S) in hub.retired
    run(fleet, clock, 0.3)
    assert backend.workers[owner(backend, "s1")].sessions["s1"] == reply["session"]
    rows = {r["id"]: r for r in service.list()["sources"]}
    assert sorted(rows) == ["s0", "s1", "s2", "s3"]
    assert rows["s1"]["url"] == "testpattern://?fps=5" and rows["s1"]["session"] == reply["session"]
    assert rows["s1"]["mode"] == "live" and rows["s1"]["state"] == "connecting"  # no worker status yet
    assert service.health()["healthy"] is False  # connecting is not healthy yet


def test_a_moved_stream_starts_a_new_session_and_says_so_while_reassigning():
    service, fleet, backend, hub, clock = started()
    lost = owner(backend, "s0")
    before = fleet.streams["s0"].session
    backend.workers[lost].up = False
    run(fleet, clock, 1.0)
    after, now = fleet.streams["s0"].session, fleet.streams["s0"].slot
    assert after != before and now not in (None, lost)
    assert backend.workers[now].sessions["s0"] == after
    assert [m["session"] for m in hub.sent if m["stream"] == "s0" and m["state"] == "reassigning"][-1] == after


@pytest.mark.parametrize("call, error", [
    (lambda s: s.add(SourceConfig(id="s0", url="testpattern://")),
     "source 's0' is already running; use update to change it, or remove it first"),
    (lambda s: s.remove("nope"), "no source 'nope' is running (running: s0, s1, s2, s3); use add for a new one"),
    (lambda s: s.update(SourceConfig(id="nope", url="testpattern://")),
     "no source 'nope' is running (running: s0, s1, s2, s3); use add for a new one"),
])
def test_refused_requests_change_nothing(call, error):
    service, fleet, backend, hub, clock = started()
    placed = {s: owner(backend, s) for s in fleet.streams}
    with pytest.raises(ControlError) as info:
        call(service)
    assert str(info.value) == error
    run(fleet, clock, 0.3)
    assert {s: owner(backend, s) for s in fleet.streams} == placed and hub.retired == []


def test_the_cap_a_bad_source_and_shutting_down_are_refused():
    service, fleet, *_ = started(run={"max_sources": 4})
    with pytest.raises(ControlError, match=r"^5 sources would be more than run.max_sources = 4"):
        service.add(NEW)
    service.config = AppConfig(sources=SIX[:4])
    with pytest.raises(ConfigError, match=r"^sources\[x\]\.mode: 'file' needs a finite source"):
        service.add(SourceConfig(id="x", url="rtsp://10.0.0.5/x", mode="file"))
    service.close()
    with pytest.raises(ControlError, match="shutting down; nothing was changed"):
        service.add(NEW)
    assert sorted(fleet.streams) == ["s0", "s1", "s2", "s3"]


def test_the_state_file_follows_every_change_and_reload_applies_the_files_by_id(tmp_path):
    path = tmp_path / "state.json"
    service, fleet, backend, hub, clock = started(control={"state_file": str(path)})
    service.start()
    assert [s["id"] for s in json.loads(path.read_text())["sources"]] == ["s0", "s1", "s2", "s3"]
    service.add(NEW)
    service.remove("s2")
    assert [s["id"] for s in json.loads(path.read_text())["sources"]] == ["s0", "s1", "s3", "new"]
    files = AppConfig(sources=[SIX[0], {"id": "s1", "url": "testpattern://"}, {"id": "z", "url": "testpattern://"}])
    service._reload_config = lambda: files
    assert service.reload() == {"added": ["z"], "removed": ["s3", "new"], "updated": ["s1"], "unchanged": 1}
    run(fleet, clock, 0.3)
    assert sorted(fleet.streams) == ["s0", "s1", "z"] and owner(backend, "z") is not None
    assert [s["id"] for s in json.loads(path.read_text())["sources"]] == ["s0", "s1", "z"]


def test_rebalance_moves_few_live_streams_to_a_worker_that_came_back(capsys):
    import functools

    import zmq

    from streamer import ctl
    from streamer.control import requests
    from streamer.control.server import ControlServer

    service, fleet, backend, hub, clock = started(sources=SIX, workers=3)
    backend.workers["w2"].up = False
    run(fleet, clock, 1.0)  # its two streams moved to w0 and w1: three each
    backend.workers["w2"].restart()
    run(fleet, clock, 1.0)  # back, empty: nothing moves to it unasked
    assert [len(backend.workers[w].streams()) for w in ("w0", "w1", "w2")] == [3, 3, 0]
    sessions = {s: fleet.streams[s].session for s in fleet.streams}
    before = {s: owner(backend, s) for s in fleet.streams}
    hub.seq.update({s: 20 for s in fleet.streams})  # what subscribers have seen
    ctx = zmq.Context()
    server = ControlServer("tcp://127.0.0.1:*", functools.partial(requests.handle, service), ctx)
    server.start_and_wait()
    try:
        assert ctl.main(["--address", server.endpoint, "rebalance"]) == 0
        out = capsys.readouterr().out.strip()
        run(fleet, clock, 0.3)
        assert ctl.main(["--address", server.endpoint, "list"]) == 0
        table = capsys.readouterr().out.splitlines()
    finally:
        server.stop()
        ctx.destroy(linger=0)
    moved = sorted(hub.released)
    assert len(moved) == 2 and out.startswith("rebalanced: ")
    assert set(out.removeprefix("rebalanced: ").split(", ")) == {f"{s} {before[s]}->w2" for s in moved}
    assert [len(backend.workers[w].streams()) for w in ("w0", "w1", "w2")] == [2, 2, 2]
    starts = {s: seq for _, first in backend.workers["w2"].shares.values() for s, seq in first.items()}
    for s in moved:  # fenced, said so, a new start on w2 going on from its seq
        assert owner(backend, s) == "w2" and fleet.streams[s].session != sessions[s] and starts[s] == 21
        assert backend.workers["w2"].sessions[s] == fleet.streams[s].session
        assert "moving from worker" in dict(hub.states(s))["reassigning"]
    assert all(fleet.streams[s].session == sessions[s] for s in fleet.streams if s not in moved)
    assert table[0].split() == ["ID", "STATE", "MODE", "FPS", "RESULTS", "DROPS", "WORKER", "URL"]
    assert service.rebalance() == {"moved": []}  # even now: asked again, nothing moves


def test_one_machine_refuses_rebalance():
    from streamer.core.stats import StatsRegistry
    from streamer.streams import StreamSet

    with pytest.raises(ControlError, match=r"^rebalance: only a cluster head moves streams between workers"):
        StreamSet(AppConfig(sources=[{"id": "a", "url": "testpattern://"}]), StatsRegistry()).rebalance()

"""The head's worker management (streamer/cluster/fleet.py) against a fake backend and a fake hub
(tests/fixtures/fakecluster.py): no Ray, no sockets, a hand-driven clock. What Ray does is reduced to
what the fleet sees: calls that answer, fail with WorkerUnavailable, or stay pending."""

from __future__ import annotations

import pytest
from fakecluster import SIX, build, run

from model.errors import SourceError
from streamer.cluster.fleet import HEALTH_INTERVAL_S, START_GRACE_S


@pytest.fixture
def make():
    return build


def test_streams_wait_for_every_worker_then_spread_evenly(make):
    fleet, backend, hub, clock = make()
    backend.workers["w2"].silent = True  # not placed by Ray yet: its calls wait
    run(fleet, clock, 2.0)
    assert not any(w.shares for w in backend.workers.values())  # nobody placed before every worker is up
    assert hub.states("s0")[-1] == ("connecting", "waiting for a worker to start")
    backend.workers["w2"].silent = False
    backend.workers["w2"].restart()
    run(fleet, clock, 1.0)
    assert [len(backend.workers[w].streams()) for w in ("w0", "w1", "w2")] == [2, 2, 2]
    assert sorted(s for _, ids in hub.feeds.values() for s in ids) == [f"s{i}" for i in range(6)]
    assert {f: w for f, (w, _) in hub.feeds.items()} == {f: f.rsplit("-", 2)[0] for f in hub.feeds}


def test_a_worker_that_never_starts_is_left_out_after_the_grace(make):
    fleet, backend, hub, clock = make()
    backend.workers["w2"].silent = True
    run(fleet, clock, START_GRACE_S + 1.0)
    assert backend.workers["w0"].streams() and backend.workers["w1"].streams()
    assert len(backend.workers["w0"].streams()) + len(backend.workers["w1"].streams()) == 6


def test_heavier_streams_are_spread_first():
    from streamer.cluster.cost import Bin, Item, place

    bins = [Bin("w0"), Bin("w1")]
    chosen = place([Item("big", 100.0), Item("a", 40.0), Item("b", 40.0), Item("c", 20.0)], bins)
    assert chosen == {"big": "w0", "a": "w1", "b": "w1", "c": "w1"}
    assert [b.load for b in bins] == [100.0, 100.0]


def test_a_lost_worker_fences_its_feed_and_its_streams_move_on_from_their_next_seq(make):
    fleet, backend, hub, clock = make()
    run(fleet, clock, 1.0)
    lost = backend.workers["w1"]
    moved = lost.streams()
    hub.seq.update({moved[0]: 41, moved[1]: 7})
    lost.up = False  # its process or node is gone
    run(fleet, clock, 1.0)
    assert not any(w == "w1" for w, _ in hub.feeds.values())  # nothing of it is forwarded any more
    assert lost.kills == [True]  # ended (if it still runs somewhere) and left to Ray to restart
    for stream in moved:
        states = [s for s, _ in hub.states(stream)]
        assert "reassigning" in states
        assert "worker w1 lost (its actor died (process or node lost))" in dict(hub.states(stream))["reassigning"]
    survivors = backend.workers["w0"].streams() + backend.workers["w2"].streams()
    assert sorted(survivors) == [f"s{i}" for i in range(6)]
    starts = {s: seq for w in ("w0", "w2") for _, first in backend.workers[w].shares.values()
              for s, seq in first.items()}
    assert starts[moved[0]] == 42 and starts[moved[1]] == 8  # seq goes on above what subscribers saw


def test_a_worker_that_stops_answering_is_lost_after_the_health_timeout(make):
    fleet, backend, hub, clock = make(health_timeout_s=3.0)
    run(fleet, clock, 1.0)
    backend.workers["w0"].silent = True
    run(fleet, clock, 2.5)
    assert fleet.slots[0].ready  # slow is not lost (R26)
    run(fleet, clock, 1.5)
    assert not fleet.slots[0].ready
    assert all(s.slot != "w0" for s in fleet.streams.values())


def test_a_restarted_worker_comes_back_empty_and_nothing_moves_to_it_unasked(make):
    fleet, backend, hub, clock = make()
    run(fleet, clock, 1.0)
    backend.workers["w2"].up = False
    run(fleet, clock, 1.0)
    before = {w: backend.workers[w].streams() for w in ("w0", "w1")}
    backend.workers["w2"].restart()  # Ray started a fresh process
    run(fleet, clock, 2.0)
    assert fleet.slots[2].ready and backend.workers["w2"].streams() == []
    assert {w: backend.workers[w].streams() for w in ("w0", "w1")} == before


def test_a_new_incarnation_without_a_failed_call_still_loses_the_old_streams(make):
    fleet, backend, hub, clock = make()
    run(fleet, clock, 1.0)
    backend.workers["w0"].restart()  # restarted between two health checks
    run(fleet, clock, 1.0)
    assert backend.workers["w0"].kills == []  # a fresh process: nothing to end
    assert all("reassigning" in dict(hub.states(s)) for s in ("s0", "s3"))  # its streams died with the old one
    assert not any(feed.startswith("w0-1-") for feed in hub.feeds)  # nothing of the old process is forwarded
    # placed again, least loaded first: the fresh (empty) process takes them back
    assert sorted(s for w in backend.workers.values() for s in w.streams()) == [f"s{i}" for i in range(6)]
    assert [f for f, (w, _) in hub.feeds.items() if w == "w0"] == ["w0-2-1"]


def test_with_no_worker_left_the_orphans_say_so_and_resume_when_one_joins(make):
    fleet, backend, hub, clock = make(sources=SIX[:2], workers=1)
    run(fleet, clock, 1.0)
    backend.workers["w0"].up = False
    run(fleet, clock, 2.0)
    state, reason = hub.states("s0")[-1]
    assert state == "reassigning"
    assert "no worker is up (1 of 1 workers lost or not started); waiting for a worker to join" in reason
    beats = len(hub.states("s0"))
    run(fleet, clock, 3.0)
    assert len(hub.states("s0")) >= beats + 2  # still said every heartbeat (R17)
    backend.workers["w0"].restart()
    run(fleet, clock, 1.0)
    assert backend.workers["w0"].streams() == ["s0", "s1"]


def test_measured_capacity_keeps_an_orphan_off_a_full_worker(make):
    fleet, backend, hub, clock = make(sources=SIX[:2], workers=2)
    run(fleet, clock, 1.0)
    for s in fleet.streams.values():
        s.demand = 4.0  # windows/s each, as measured
    for worker in backend.workers.values():
        worker.capacity = 5.0  # what --bench measured for the model there
    run(fleet, clock, 1.0)
    backend.workers["w0"].up = False
    run(fleet, clock, 1.0)
    orphan = next(s for s in fleet.streams.values() if s.slot is None)
    assert "no worker has room for it (1 of 2 workers lost or not started)" in orphan.reason
    assert backend.workers["w1"].streams() != sorted(fleet.streams)


def test_a_refused_share_fails_its_streams_with_the_workers_reason(make):
    fleet, backend, hub, clock = make(sources=SIX[:1], workers=1)
    backend.workers["w0"].refuse = SourceError("camera 3 (/dev/video3) does not exist; cameras here: none")
    run(fleet, clock, 1.0)
    assert hub.states("s0")[-1] == ("failed", "worker w0: camera 3 (/dev/video3) does not exist; cameras here: none")
    assert fleet.streams["s0"].phase == "done"


def test_a_share_that_ends_is_done_and_one_that_fails_moves(make):
    fleet, backend, hub, clock = make(sources=SIX[:2], workers=2)
    run(fleet, clock, 1.0)
    w0, w1 = backend.workers["w0"], backend.workers["w1"]
    (ended,), (failed,) = w0.streams(), w1.streams()
    w0.ended[next(iter(w0.shares))] = None  # its file ended: the pipeline returned without an error
    w1.ended[next(iter(w1.shares))] = "inference thread died: RuntimeError: boom"
    run(fleet, clock, 1.0)
    assert fleet.streams[ended].phase == "done" and ended not in w0.streams()
    assert ("reassigning", "its pipeline on worker w1 stopped: inference thread died: RuntimeError: boom; moving it "
                           "to another worker") in hub.states(failed)
    assert fleet.streams[failed].phase == "serving" and failed in w0.streams() + w1.streams()


def test_stop_asks_every_ready_worker_and_says_stopped_for_streams_without_one(make):
    fleet, backend, hub, clock = make(sources=SIX[:2], workers=2)
    run(fleet, clock, 1.0)
    backend.workers["w1"].up = False
    backend.workers["w0"].silent = True  # and w0 does not answer its stop
    run(fleet, clock, HEALTH_INTERVAL_S)
    orphan = next(s for s in fleet.streams.values() if s.phase == "starting")  # w0 was asked, has not answered
    served = next(s for s in fleet.streams.values() if s.phase == "serving")
    fleet.stop(0.2)
    assert hub.states(orphan.source.id)[-1] == ("stopped", "")
    assert hub.states(served.source.id)[-1][0] != "stopped"  # its worker says it (through the hub), not the head

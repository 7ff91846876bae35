"""Streams added, removed and updated in a running pipeline (in this process): sessions, seq, what is
released, caps and bad input (R23)."""

from __future__ import annotations

import gc
import threading
import weakref

import pytest

import feeds
from model.errors import ControlError

pytestmark = pytest.mark.timeout(300)

KEEP = {"id": "keep", "url": "testpattern://?fps=20&width=64&height=48"}


def pattern(stream: str, fps: int = 20, frames: int = 0) -> dict:
    return {"id": stream, "url": f"testpattern://?fps={fps}&width=64&height=48&frames={frames}"}


def statuses(run, stream: str) -> list[dict]:
    return run.messages("status", stream)


def test_an_added_stream_publishes_in_its_own_session(running, validate):
    run = running([KEEP])
    reply = run.client.add(pattern("cam"))
    assert reply["id"] == "cam" and reply["state"] in ("connecting", "running")
    results = run.wait_results("cam", 3)
    assert [r["seq"] for r in results[:3]] == [0, 1, 2]
    assert {r["session"] for r in results} == {reply["session"]}
    keep_session = run.wait_results("keep")[0]["session"]
    assert keep_session != reply["session"]
    for msg in results[:3] + statuses(run, "cam")[:3]:
        validate(msg)
        assert msg["session"] == reply["session"]
    listed = {s["id"]: s for s in run.client.list()}
    assert listed["cam"]["session"] == reply["session"] and listed["cam"]["mode"] == "live"
    assert set(listed) == {"keep", "cam"}


def test_remove_releases_everything_and_the_last_status_says_removed(running, validate):
    run = running([KEEP], extra={"metrics": {"enabled": True, "port": 0},
                                 "snapshot": {"address": "tcp://127.0.0.1:*"}})
    session = run.client.add(pattern("cam"))["session"]
    run.wait_results("cam", 2)
    pipeline = run.pipeline
    stream = pipeline.streams._streams["cam"]
    ring, thread = weakref.ref(stream.ring), stream.capture
    del stream
    assert run.client.remove("cam")["id"] == "cam"
    assert not thread.is_alive()  # joined before the reply
    del thread  # (it holds the ring)
    assert feeds.wait_until(lambda: statuses(run, "cam")[-1]["state"] == "removed", 10)
    last = statuses(run, "cam")[-1]
    validate(last)
    assert last["session"] == session and last["reason"] == "removed by a control request"
    run.wait_results("keep", len(run.messages("result", "keep")) + 3)  # later messages have had time to come
    after = run.messages(stream="cam")
    assert after[-1] == last  # nothing of the stream after its last status: no result in flight, no heartbeat
    assert "cam" not in {s["id"] for s in run.client.list()}
    assert pipeline.stats.get("cam") is None and "capture-cam" not in pipeline.supervisor.names()
    assert [c.stream for c in pipeline.streams._runtime.scheduler.cursors] == ["keep"]
    assert feeds.wait_until(lambda: "cam" not in pipeline.operate.cache.view(), 5)
    labelled = [s for m in pipeline.operate.metrics.registry.collect() for s in m.samples
                if s.labels.get("stream") == "cam"]
    assert labelled == []
    assert pipeline.operate.metrics.registry.get_sample_value("timesformer_results_total", {"stream": "keep"}) > 0
    gc.collect()
    assert ring() is None, f"the removed stream's ring is still referenced by {gc.get_referrers(ring())}"
    assert "capture-cam" not in {t.name for t in threading.enumerate()}


def test_an_id_added_again_starts_seq_at_0_in_a_new_session(running):
    run = running([KEEP])
    first = run.client.add(pattern("cam"))["session"]
    run.wait_results("cam", 2, first)
    run.client.remove("cam")
    second = run.client.add(pattern("cam"))["session"]
    assert second != first
    again = run.wait_results("cam", 2, second)
    assert [r["seq"] for r in again[:2]] == [0, 1]
    assert run.collector.gaps == 0  # the subscriber tells the new session from a gap


def test_update_replaces_the_stream_in_one_step(running):
    run = running([KEEP, pattern("cam")])
    old = run.wait_results("cam", 1)[0]["session"]
    seen_missing = []
    stop = threading.Event()

    def watch() -> None:  # another client listing all the while never sees cam missing
        from streamer.control import Client

        with Client(run.client.address) as other:
            while not stop.is_set():
                if "cam" not in {s["id"] for s in other.list()}:
                    seen_missing.append(True)

    watcher = threading.Thread(target=watch, name="test-lister")
    watcher.start()
    try:
        for fps in (10, 15, 20):
            reply = run.client.update(pattern("cam", fps))
            assert reply["session"] != old
            old = reply["session"]
    finally:
        stop.set()
        watcher.join(10)
    assert seen_missing == []
    run.wait_results("cam", 2, old)
    listed = {s["id"]: s for s in run.client.list()}
    assert listed["cam"]["url"].startswith("testpattern://?fps=20") and listed["cam"]["session"] == old
    removed = [m for m in run.messages("status", "cam") if m["state"] == "removed"]
    assert [m["reason"] for m in removed] == ["updated: a new session follows"] * len(removed) and len(removed) >= 2


def test_open_events_end_with_reason_removed_before_the_last_status(running, validate):
    eager = {"smoothing": "k_of_n", "k": 1, "n": 1, "enter": 0.01, "exit": 0.0, "min_duration_s": 0.0}
    run = running([KEEP], extra={"events": {"enabled": True, "default": eager}})
    run.client.add(pattern("cam"))
    assert feeds.wait_until(lambda: run.messages("event", "cam"), 60), "no event opened"
    run.client.remove("cam")
    assert feeds.wait_until(lambda: run.messages("status", "cam")[-1]["state"] == "removed", 10)
    messages = run.messages(stream="cam")
    last = messages[-1]
    assert last["type"] == "status" and last["state"] == "removed"
    ends = [m for m in messages if m["type"] == "event" and m["phase"] == "end"]
    assert ends and ends[-1]["reason"] == "removed"
    opened = {m["id"] for m in messages if m["type"] == "event" and m["phase"] == "start"}
    assert opened == {m["id"] for m in ends}  # every event that started has ended
    for msg in ends:
        validate(msg)
        assert msg["id"].startswith(f"{msg['session']}-cam-")


@pytest.mark.parametrize("op, error", [
    (lambda c: c.add(KEEP), "source 'keep' is already running; use update"),
    (lambda c: c.remove("ghost"), "no source 'ghost' is running (running: keep, b); use add"),
    (lambda c: c.update(pattern("ghost")), "no source 'ghost' is running"),
    (lambda c: c.add({"id": "x", "url": "gopher://cam/1"}), "unknown scheme 'gopher'; use one of"),
    (lambda c: c.add({"id": "x", "url": "testpattern://", "mode": "file", "options": {"loop": "yes"}}),
     "source.options.loop: expected true or false"),
    (lambda c: c.add({"id": "x", "url": "rtsp://10.0.0.1/live", "mode": "file"}), "'file' needs a finite source"),
    (lambda c: c.add({"id": "x", "url": "/dev/video97"}), "camera /dev/video97 does not exist"),
    (lambda c: c.add({"id": "x", "url": "97"}), "camera 97 (/dev/video97) does not exist"),
    (lambda c: (c.add(pattern("c")), c.add(pattern("d"))), "4 sources would be more than run.max_sources = 3"),
])
def test_refused_requests_change_nothing(running, op, error):
    run = running([KEEP, pattern("b")], extra={"run": {"max_sources": 3}})
    before = [(s["id"], s["session"]) for s in run.client.list()]
    with pytest.raises(ControlError) as exc:
        op(run.client)
    assert error in str(exc.value) and "\n" not in str(exc.value)
    after = [(s["id"], s["session"]) for s in run.client.list()]
    assert after == before or (error.startswith("4 sources") and after == before + [("c", after[-1][1])])


def test_requests_while_shutting_down_are_answered_and_refused(running):
    run = running([KEEP])
    run.pipeline.streams.close()  # what shutdown does first
    with pytest.raises(ControlError, match="shutting down; nothing was changed"):
        run.client.add(pattern("cam"))
    with pytest.raises(ControlError, match="shutting down"):
        run.client.remove("keep")
    assert [s["id"] for s in run.client.list()] == ["keep"]


def test_operations_on_other_streams_leave_an_untouched_stream_contiguous(running):
    run = running([KEEP])
    session = run.wait_results("keep", 3)[0]["session"]
    for k in range(20):  # 20 operations against other streams
        if k % 3 == 0:
            run.client.add(pattern(f"o{k}", 10))
        elif k % 3 == 1:
            run.client.update(pattern(f"o{k - 1}", 15))
        else:
            run.client.remove(f"o{k - 2}")
    before = len(run.messages("result", "keep"))
    results = run.wait_results("keep", before + 5)
    assert {r["session"] for r in results} == {session}
    seqs = [r["seq"] for r in results]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert run.collector.gaps == 0


def test_add_remove_cycles_leave_threads_and_files_as_they_were(running):
    import os

    run = running([KEEP])
    run.wait_results("keep", 2)

    def cycle(i: int) -> None:
        run.client.add(pattern("cycle"))
        assert feeds.wait_until(lambda: any(s["id"] == "cycle" and s["frames"] > 0 for s in run.client.list()), 10)
        run.client.remove("cycle")

    cycle(0)  # the first add imports and allocates what later ones reuse
    threads = sorted(t.name for t in threading.enumerate())
    fds = len(os.listdir("/proc/self/fd"))
    for i in range(1, 21):
        cycle(i)
    assert sorted(t.name for t in threading.enumerate()) == threads
    assert len(os.listdir("/proc/self/fd")) == fds

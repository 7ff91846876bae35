"""Event clips: the frames around an event, as an MP4 OpenCV decodes; pre-roll, end, misses, failures, retention.

Frames come from the test-pattern source at 640 px wide: its white bar moves 4 px a frame, so the
bar's position in a decoded frame gives the frame number (mod 160) even after lossy H.264, where the
number stamped in the first pixels does not survive. Timestamps are given, not waited for.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest

from streamer.core.stats import StatsRegistry
from streamer.ops.clipfile import enforce_retention
from streamer.ops.clips import ClipRecorder
from streamer.testing.processes import read_frames
from streamer.config import ClipsConfig
from streamer.sources.testpattern import TestPatternCapture

FPS = 25.0
WIDTH = 640  # bar period: 160 frames


def bar_frame(image: np.ndarray) -> int:
    """The test pattern's frame number mod 160, from where its white bar starts (red channel 255, else 128)."""
    red = image[:, :, 2].mean(axis=0)
    return int(np.argmax(red > 200)) // 4


def event(stream: str, phase: str, start: int, end: int | None, t0: float, *, eid: str = "run-cam-1") -> dict:
    return {"type": "event", "version": 1, "stream": stream, "id": eid, "phase": phase, "label": "move_right",
            "start_ts": t0 + start / FPS, "start_frame": start,
            "end_ts": None if end is None else t0 + end / FPS, "end_frame": end,
            "duration_s": 0.0 if end is None else (end - start) / FPS, "peak_score": 0.9, "published_ts": None}


def recorder(tmp_path, live: bool = True, share_lag_s: float | None = None,
             **cfg) -> tuple[ClipRecorder, StatsRegistry, list]:
    """``share_lag_s=0``: the shared encoding holds no frame back for events announced later, so a test that
    runs the writer's rounds itself sees every frame encoded in the round it came (by default it stays
    ``pre_s + SHARE_MARGIN_S`` behind the newest frame)."""
    stats = StatsRegistry()
    stats.add("cam", "testpattern://")
    done: list[dict] = []
    config = ClipsConfig(dir=str(tmp_path), **{"pre_s": 1.0, "post_s": 1.0, **cfg})
    rec = ClipRecorder(config, stats, root=tmp_path / "clips", live_for=lambda s: live, fps_for=lambda s: FPS,
                       on_clip=done.append, share_lag_s=share_lag_s)
    return rec, stats, done


def feed(rec: ClipRecorder, cap: TestPatternCapture, first: int, last: int, t0: float) -> None:
    for index in range(first, last + 1):
        ok, frame = cap.read()
        assert ok
        rec.on_frame("cam", index, t0 + index / FPS, frame)


@pytest.mark.parametrize("live", [True, False], ids=["live-wall-clock", "file-media-time"])
def test_clip_holds_pre_event_and_post_frames(tmp_path, live):
    rec, stats, done = recorder(tmp_path, live)
    t0 = time.time()
    cap = TestPatternCapture(width=WIDTH, height=120, fps=FPS)
    start, end = 40, 90  # the event: 2 s; the clip: 1 s before to 1 s after
    rec.start()
    try:
        feed(rec, cap, 0, 60, t0)
        rec.on_sent("event.cam", event("cam", "start", start, None, t0))
        assert rec.clip_for("cam", "run-cam-1") == "cam/run-cam-1.mp4"
        feed(rec, cap, 61, 100, t0)
        rec.on_sent("event.cam", event("cam", "end", start, end, t0))
        feed(rec, cap, 101, 150, t0)
        deadline = time.monotonic() + 60
        while not done and time.monotonic() < deadline and rec.is_alive():
            time.sleep(0.05)
    finally:
        rec.stop()
    assert done, "no clip was finished"
    meta = done[0]
    path = tmp_path / "clips" / "cam" / "run-cam-1.mp4"
    assert json.loads(path.with_suffix(".json").read_text()) == meta
    assert meta["complete"], meta["incomplete"]
    expected = (1.0 + (end - start) / FPS + 1.0) * FPS  # (pre + event + post) x fps
    frames = read_frames(path)
    assert abs(len(frames) - expected) <= 1, (len(frames), expected)
    assert meta["frames"] == len(frames)
    assert meta["first_frame"] == start - int(1.0 * FPS)  # the first frame is pre_s before the start
    assert bar_frame(frames[0]) == (start - int(1.0 * FPS)) % 160
    assert bar_frame(frames[-1]) == meta["last_frame"] % 160
    assert abs(meta["last_frame"] - (end + int(1.0 * FPS))) <= 1
    assert not stats["cam"].warnings


def test_writer_behind_counts_missed_frames_and_marks_clip_incomplete(tmp_path):
    frame_mb = WIDTH * 120 * 3 / 1e6
    rec, stats, done = recorder(tmp_path, buffer_mb=4 * frame_mb)  # the buffer holds 4 frames
    t0 = time.time()
    cap = TestPatternCapture(width=WIDTH, height=120, fps=FPS)
    feed(rec, cap, 0, 3, t0)
    rec.on_sent("event.cam", event("cam", "start", 2, None, t0))
    rec.step(final=False)  # the writer takes frames 0..3 (the pre-roll it could get)
    feed(rec, cap, 4, 40, t0)  # the writer does not run: 4..36 leave the buffer unwritten
    rec.on_sent("event.cam", event("cam", "end", 2, 5, t0))  # the clip ends at frame 30
    rec.step(final=False)
    assert done, "the clip did not finish when a frame past its end arrived"
    meta = done[0]
    assert not meta["complete"] and meta["missed"] == 33 and rec.missed == 33
    assert "frames missed" in meta["incomplete"]
    assert any("fell behind" in w for w in stats["cam"].snapshot()["warnings"])


def test_short_pre_roll_and_stream_stop_are_reported(tmp_path):
    rec, _, done = recorder(tmp_path, pre_s=3.0)
    t0 = time.time()
    cap = TestPatternCapture(width=160, height=120, fps=FPS)
    feed(rec, cap, 0, 30, t0)  # 1.2 s of video before a start at frame 30: less than pre_s
    rec.on_sent("event.cam", event("cam", "start", 30, None, t0))
    rec.step(final=False)
    rec.step(final=True)  # the stream stopped: the clip ends with the frames there are
    meta = done[0]
    assert meta["first_frame"] == 0 and meta["frames"] == 31
    assert "pre-roll 1.20 s of 3 s" in meta["incomplete"] and "stream stopped" in meta["incomplete"]


def test_unwritable_dir_warns_in_status_and_writing_goes_on(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the clip folder should be")
    rec, stats, done = recorder(tmp_path, share_lag_s=0.0)
    rec.root = blocker / "clips"
    t0 = time.time()
    cap = TestPatternCapture(width=160, height=120, fps=FPS)
    feed(rec, cap, 0, 10, t0)
    rec.on_sent("event.cam", event("cam", "start", 5, None, t0))
    rec.step(final=False)
    assert rec.clip_for("cam", "run-cam-1") is None  # the end message will carry no clip
    warning = stats["cam"].snapshot()["warnings"]
    assert warning and "cannot write" in warning[0] and "not-a-dir" in warning[0]
    rec.root = tmp_path / "clips"  # the disk is back: the next clip is written and the warning clears
    rec.on_sent("event.cam", event("cam", "start", 8, None, t0, eid="run-cam-2"))
    rec.on_sent("event.cam", event("cam", "end", 8, 9, t0, eid="run-cam-2"))
    feed(rec, cap, 11, 40, t0)
    rec.step(final=False)
    assert [m["id"] for m in done] == ["run-cam-2"]
    assert not stats["cam"].snapshot()["warnings"]


def test_retention_deletes_oldest_past_size_and_age_and_nothing_else(tmp_path):
    root = tmp_path / "clips"
    (root / "cam").mkdir(parents=True)
    now = time.time()

    def clip(name: str, age_s: float, size: int) -> None:
        for suffix, n in ((".mp4", size), (".json", 10)):
            path = root / "cam" / f"{name}{suffix}"
            path.write_bytes(b"x" * n)
            os.utime(path, (now - age_s, now - age_s))

    clip("r-cam-1", 10 * 3600, 1000)  # older than max_age
    clip("r-cam-12", 300, 1000)  # oldest within age: goes for size
    clip("r-cam-2", 200, 1000)
    clip("r-cam-3", 100, 1000)
    (root / "cam" / "notes.txt").write_text("not a clip")
    writing = root / "cam" / ".r-cam-4.mp4.part"
    writing.write_bytes(b"y" * 5000)
    deleted, kept = enforce_retention(root, max_total_bytes=2100, max_age_s=3600, keep={writing})
    left = sorted(p.name for p in (root / "cam").iterdir())
    assert deleted == 2 and kept == 2 * 1010
    assert left == [".r-cam-4.mp4.part", "notes.txt", "r-cam-2.json", "r-cam-2.mp4", "r-cam-3.json", "r-cam-3.mp4"]


def test_shutdown_encodes_for_a_bounded_time_and_counts_the_rest(tmp_path, monkeypatch):
    import streamer.ops.clips as clips

    monkeypatch.setattr(clips, "FINAL_BUDGET_S", 0.0)  # no time left at all: nothing more is encoded
    rec, _, done = recorder(tmp_path, pre_s=0.0, share_lag_s=0.0)
    t0 = time.time()
    cap = TestPatternCapture(width=160, height=120, fps=FPS)
    feed(rec, cap, 0, 5, t0)
    rec.on_sent("event.cam", event("cam", "start", 0, None, t0))
    rec.step(final=False)  # frames 0..5 written
    feed(rec, cap, 6, 60, t0)  # a backlog of 55 frames when the run stops
    rec.step(final=True)
    meta = done[0]
    assert meta["frames"] == 6 and meta["missed"] == 55 and not meta["complete"]


def test_the_pre_roll_hands_out_frames_after_a_number_and_from_a_time():
    from streamer.ops.preroll import Frame, PreRoll

    roll = PreRoll(max_bytes=1e9, horizon_s=100.0)
    image = np.zeros((2, 2, 3), np.uint8)
    for i in range(100):
        roll.add(Frame(i, 0.04 * i, 1e9 + 0.04 * i, image))
    newer, oldest = roll.after(49, t_from=0.0)
    assert [f.index for f in newer] == list(range(50, 100)) and oldest == 0
    first, _ = roll.after(-1, t_from=0.04 * 30 - 1e-6)  # a clip's first pull: its pre-roll from a time
    assert [f.index for f in first] == list(range(30, 100))
    assert roll.after(99, t_from=0.0)[0] == []


def test_a_finished_clip_scans_the_clip_folder_only_when_the_size_limit_is_passed(tmp_path, monkeypatch):
    """Retention runs at once when the finished clips pass max_total_mb, and not after every clip (a scan of
    thousands of stored clips after each one took a fifth of the writer's time)."""
    import streamer.ops.clips as clips

    scans = []
    monkeypatch.setattr(clips, "enforce_retention", lambda *a: scans.append(a) or enforce_retention(*a))

    def one_clip(rec, done, eid: str, first: int) -> None:
        cap = TestPatternCapture(width=160, height=120, fps=FPS)
        t0 = time.time() - 1.0
        feed(rec, cap, first, first + 5, t0)
        rec.on_sent("event.cam", event("cam", "start", first, None, t0, eid=eid))
        rec.on_sent("event.cam", event("cam", "end", first, first + 2, t0, eid=eid))
        rec.step(final=True)
        assert done and done[-1]["id"] == eid

    rec, _, done = recorder(tmp_path / "roomy", pre_s=0.0, post_s=0.0)
    for n in range(3):
        one_clip(rec, done, f"r-cam-{n}", 10 * n)
    assert scans == []  # far below max_total_mb: nothing to delete, nothing scanned

    rec, _, done = recorder(tmp_path / "tight", pre_s=0.0, post_s=0.0, max_total_mb=1e-3)  # 1000 bytes
    one_clip(rec, done, "r-cam-1", 0)
    assert len(scans) == 1  # the first clip alone is over the limit: scanned at once
    one_clip(rec, done, "r-cam-2", 10)
    assert len(scans) == 2 and not (tmp_path / "tight" / "clips" / "cam" / "r-cam-1.mp4").exists()


def test_the_writer_leaves_the_idle_class_while_behind_and_returns_once_caught_up(tmp_path):
    """Idle class while it keeps up (capture threads take its core at once); a frame BEHIND_S old when
    encoded puts it in the normal class at nice +10 (a saturated machine would starve an idle-class
    thread), and fresh frames again bring it back."""
    import os
    import threading

    from streamer.ops.clips import BEHIND_S
    from streamer.supervisor import IdleWhileKeepingUp

    if not hasattr(os, "SCHED_IDLE") or os.geteuid() != 0:
        pytest.skip("needs Linux's SCHED_IDLE and, to leave it again, root (CAP_SYS_NICE); CI runs as root")
    rec, _, done = recorder(tmp_path, pre_s=0.0, share_lag_s=0.0)
    cap = TestPatternCapture(width=160, height=120, fps=FPS)
    classes = []

    def writer():
        rec.priority = IdleWhileKeepingUp()
        rec.priority.start()
        classes.append(os.sched_getscheduler(0))
        t0 = time.time() - BEHIND_S - 1.0
        feed(rec, cap, 0, 5, t0)  # frames older than BEHIND_S: behind
        rec.on_sent("event.cam", event("cam", "start", 0, None, t0))
        rec.step(final=False)
        classes.append(os.sched_getscheduler(0))
        for index in range(6, 9):  # fresh frames: caught up
            rec.on_frame("cam", index, time.time(), cap.read()[1])
        rec.step(final=False)
        classes.append(os.sched_getscheduler(0))

    thread = threading.Thread(target=writer)
    thread.start()
    thread.join(10)
    assert classes == [os.SCHED_IDLE, os.SCHED_OTHER, os.SCHED_IDLE], classes
    assert rec._jobs["run-cam-1"].file.frames == 9


def test_the_writer_finishes_its_last_clips_outside_the_idle_class(tmp_path):
    """On stop the writer leaves the idle class for good: in it, the last clips would wait for every other
    busy process on the machine, and the stop would leave them unwritten."""
    import os

    if not hasattr(os, "SCHED_IDLE") or os.geteuid() != 0:
        pytest.skip("needs Linux's SCHED_IDLE and, to leave it again, root (CAP_SYS_NICE); CI runs as root")
    rec, _, done = recorder(tmp_path, pre_s=0.0)
    cap = TestPatternCapture(width=160, height=120, fps=FPS)
    rec.start()
    deadline = time.monotonic() + 10
    while (rec.priority is None or not rec.priority.idle) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert rec.priority is not None and rec.priority.idle  # keeping up: idle class
    t0 = time.time()
    feed(rec, cap, 0, 5, t0)
    rec.on_sent("event.cam", event("cam", "start", 0, None, t0))
    rec.stop()
    assert not rec.is_alive()
    assert not rec.priority.idle and rec.priority.switches == 2
    assert [meta["frames"] for meta in done] == [6]

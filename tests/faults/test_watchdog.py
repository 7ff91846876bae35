"""The stream state and its stall watchdog.

- On a trickle: a frozen RTSP server makes OpenCV return one stale buffered frame after each read
  timeout, so a rule of "no frame for stall_timeout_s" alone never fires. A fake capture reproduces
  that trickle deterministically (no server, no timing race on frame content).
- One state, changed by one locked method, whichever thread changes it; a frozen source reopened
  when ``stall_reopen`` asks for it.
- No false alarms (R26): a file waiting for a slow model is not stalled; a source that just came back
  is not judged on the frames it missed while away (fake sources, and real HTTP MJPEG reconnects).
- A slow model is not a stuck one: the "may be stuck" threshold follows the measured batch time.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import feeds
from streamer.testing import media
from streamer.core import inference
from streamer.sources.capture import CaptureThread
from streamer.config import SourceConfig, SourceOptions
from streamer.core.ring import FrameRing
from streamer.sources.table import KINDS, plan_source
from streamer.core.stats import StreamState, StreamStats

pytestmark = pytest.mark.timeout(60)


class TrickleCapture:
    """Frames at full speed until ``trickle`` is set, then one frame per ``gap`` seconds; fast again on ``flow``."""

    def __init__(self, trickle: threading.Event, flow: threading.Event, gap: float) -> None:
        self.trickle, self.flow, self.gap = trickle, flow, gap
        self.frame = np.zeros((8, 8, 3), np.uint8)

    def isOpened(self) -> bool:  # noqa: N802 - cv2.VideoCapture's name
        return True

    def read(self):
        time.sleep(self.gap if self.trickle.is_set() and not self.flow.is_set() else 0.01)
        return True, self.frame

    def get(self, prop: int) -> float:
        return 0.0

    def release(self) -> None:
        pass


def test_a_trickle_of_stale_frames_is_a_stall_and_a_single_frame_does_not_end_it():
    trickle, flow = threading.Event(), threading.Event()
    opts = SourceOptions(stall_timeout_s=0.6)
    kind = dataclasses.replace(KINDS["rtsp"], opener=lambda url, o: TrickleCapture(trickle, flow, gap=0.45))
    plan = dataclasses.replace(plan_source(SourceConfig(id="cam", url="rtsp://h/x", options=opts)), kind=kind)
    stats = StreamStats("cam", "rtsp://h/x")
    states: list[tuple[str, str]] = []
    thread = CaptureThread(plan, FrameRing(16), lambda f: __import__("torch").from_numpy(f.astype(np.float32)),
                           stats, capacity_for=lambda fps: 16, on_frame=lambda: None,
                           on_state=lambda s: states.append((s.state, s.reason)))

    def watch_until(predicate, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            thread.check_stall(time.monotonic())  # what the pipeline's main loop does every 0.1 s
            if predicate():
                return True
            time.sleep(0.1)
        return False

    thread.start()
    try:
        assert watch_until(lambda: stats.state == "running" and stats.frames > 20, 5)
        trickle.set()
        # frames keep coming (every 0.45 s < stall timeout 0.6 s), too few of them: stalled anyway
        assert watch_until(lambda: stats.state == "stalled", 3), states
        frames_at_stall = stats.frames
        assert watch_until(lambda: stats.frames >= frames_at_stall + 2, 3)
        assert stats.state == "stalled"  # single stale frames do not flip it back to running
        flow.set()
        assert watch_until(lambda: stats.state == "running", 3), states
    finally:
        flow.set()
        thread.stop()
        thread.join(10)
    assert ("stalled", "fewer than 3 frames in 0.6 s") in states
    running_again = [i for i, s in enumerate(states) if s[0] == "running"]
    assert running_again[-1] > states.index(("stalled", "fewer than 3 frames in 0.6 s"))


# ---- one state, changed in one place ------------------------------------------------------------
def test_state_changes_go_through_one_locked_method_and_are_announced_in_order():
    stats = StreamStats("cam", "x")
    announced: list[StreamState] = []

    def announce(s: StreamStats) -> None:
        announced.append(s.state)
        time.sleep(0)  # let the other thread try to get in between the change and its announcement

    def flip(state: StreamState, only_from: tuple[StreamState, ...]) -> None:
        for _ in range(2000):
            stats.set_state(state, only_from=only_from, announce=announce)
            stats.set_state(StreamState.RUNNING, announce=announce)

    threads = [threading.Thread(target=flip, args=(StreamState.STALLED, (StreamState.RUNNING,))),
               threading.Thread(target=flip, args=(StreamState.BACKOFF, ()))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert announced[-1] is stats.state  # the last announcement is the state the stream is in
    assert all(a is not b for a, b in zip(announced, announced[1:]))  # every announcement is a change
    assert {str(s) for s in announced} <= {"running", "stalled", "backoff"}  # wire values stay strings
    # the watchdog's change applies only to a running source
    stats.set_state(StreamState.BACKOFF)
    assert not stats.set_state(StreamState.STALLED, only_from=(StreamState.RUNNING,))
    assert stats.state is StreamState.BACKOFF and stats.snapshot()["state"] == "backoff"


def watched_thread(capture_for_open, options: SourceOptions, *, kind: str = "rtsp", ring: FrameRing | None = None):
    """A capture thread whose opener returns ``capture_for_open(n)`` (n counts opens from 1), the states
    it announced as (monotonic time, state, reason), and the opens counter."""
    opens = [0]

    def opener(url, o):
        opens[0] += 1
        return capture_for_open(opens[0])

    url = "rtsp://h/x" if kind == "rtsp" else "x.mp4"
    plan = plan_source(SourceConfig(id="cam", url=url, options=options))
    plan = dataclasses.replace(plan, kind=dataclasses.replace(KINDS[kind], opener=opener), pace=False)
    stats = StreamStats("cam", url)
    states: list[tuple[float, str, str]] = []
    thread = CaptureThread(plan, ring or FrameRing(16), lambda f: __import__("torch").from_numpy(f), stats,
                           capacity_for=lambda fps: 16, on_frame=lambda: None,
                           on_state=lambda s: states.append((time.monotonic(), str(s.state), s.reason)))
    return thread, stats, states, opens


def watch(thread: CaptureThread, seconds: float, until=lambda: False, every: float = 0.05) -> bool:
    """Run the watchdog as the pipeline's main loop does, for ``seconds`` or until ``until()``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        thread.check_stall(time.monotonic())
        if until():
            return True
        time.sleep(every)
    return False


def test_a_frozen_source_is_reopened_when_asked_and_only_labelled_otherwise():
    for reopen in (False, True):
        freeze = threading.Event()
        opts = SourceOptions(stall_timeout_s=0.5, backoff_initial_s=0.05, backoff_max_s=0.1, stall_reopen=reopen)
        # every open serves frames, then freezes to a trickle of stale frames until reopened
        thread, stats, states, opens = watched_thread(
            lambda n: TrickleCapture(freeze, threading.Event(), gap=0.3) if n == 1 else
            TrickleCapture(threading.Event(), threading.Event(), gap=0.3), opts)
        thread.start()
        try:
            assert watch(thread, 5, lambda: stats.state == "running" and stats.frames > 10)
            freeze.set()
            assert watch(thread, 5, lambda: stats.state == "stalled"), states
            if reopen:  # reconnected through backoff, and frames flow from the new connection
                assert watch(thread, 5, lambda: opens[0] == 2 and stats.state == "running"), states
                names = [s for _, s, _ in states]
                assert names[names.index("stalled"):][:4] == ["stalled", "backoff", "connecting", "running"]
                assert [r for _, s, r in states if s == "backoff"][0].startswith("stalled; reopening")
            else:  # labelled only: the same connection, still stalled
                assert not watch(thread, 1.5, lambda: opens[0] > 1 or stats.state != "stalled"), states
        finally:
            freeze.clear()
            thread.stop()
            thread.join(10)


def test_a_file_waiting_for_a_slow_model_is_not_stalled():
    ring = FrameRing(8, blocking=True)  # file mode: the capture waits for ring space
    opts = SourceOptions(stall_timeout_s=0.3)
    endless = threading.Event()  # never set: frames come as fast as asked (every 10 ms)
    thread, stats, states, _ = watched_thread(lambda n: TrickleCapture(endless, endless, gap=0.0), opts, kind="file",
                                              ring=ring)
    stop = threading.Event()

    def slow_model() -> None:  # takes one window's worth of frames every 0.5 s
        released = 0
        while not stop.wait(0.5):
            released += 4
            ring.release_before(released)

    consumer = threading.Thread(target=slow_model)
    thread.start()
    consumer.start()
    try:
        assert watch(thread, 5, lambda: stats.state == "running")
        watch(thread, 3)
        assert stats.frames > 16  # frames did move, at the model's pace
    finally:
        stop.set()
        thread.stop()
        consumer.join(5)
        thread.join(10)
    assert "stalled" not in [s for _, s, _ in states], states


class LosingCapture(TrickleCapture):
    """A 25 fps camera that delivers ``frames`` frames, then fails a read (the connection is lost)."""

    def __init__(self, frames: int) -> None:
        super().__init__(threading.Event(), threading.Event(), gap=0.0)
        self.left = frames

    def read(self):
        self.left -= 1
        time.sleep(0.04)
        return (self.left >= 0), self.frame


def test_the_stall_window_starts_again_at_each_reconnect():
    # an outage longer than the stall timeout: the source comes back after 1.2 s away
    opts = SourceOptions(stall_timeout_s=0.5, backoff_initial_s=1.2, backoff_max_s=1.2)
    thread, stats, states, opens = watched_thread(lambda n: LosingCapture(30 if n < 3 else 10_000), opts)
    thread.start()
    try:  # the watchdog runs every 0.1 s, as in the pipeline: a few frames in after each reconnect
        assert watch(thread, 20, lambda: opens[0] == 3 and stats.state == "running" and stats.frames > 75,
                     every=0.1), states
        watch(thread, 1.0, every=0.1)
    finally:
        thread.stop()
        thread.join(10)
    names = [s for _, s, _ in states]
    assert names.count("running") >= 3 and names.count("backoff") == 2, names
    assert "stalled" not in names, states


# ---- real HTTP MJPEG reconnects -----------------------------------------------------------------
@pytest.fixture
def mjpeg_server():
    if shutil.which("ffmpeg") is None:
        if os.environ.get("CI"):
            pytest.fail("CI is set but ffmpeg is missing (.ci/run installs it)")
        pytest.skip("ffmpeg is not installed (apt-get install ffmpeg)")
    with media.MjpegServer(fps=25) as server:
        yield server


@pytest.mark.timeout(90)
def test_mjpeg_reconnects_are_not_stalled_within_5_s_of_running(mjpeg_server):
    # each outage (1.5 s) is longer than the stall timeout (1 s): the source comes back and is fine
    opts = SourceOptions(open_timeout_s=3, read_timeout_s=2, stall_timeout_s=1.0, backoff_initial_s=0.2,
                         backoff_max_s=0.5)
    plan = plan_source(SourceConfig(id="cam", url=mjpeg_server.url, options=opts))
    stats = StreamStats("cam", plan.display_url)
    states: list[tuple[float, str]] = []
    thread = CaptureThread(plan, FrameRing(32), lambda f: __import__("torch").from_numpy(f), stats,
                           capacity_for=lambda fps: 32, on_frame=lambda: None,
                           on_state=lambda s: states.append((time.monotonic(), str(s.state))))
    thread.start()
    try:
        for outage in range(4):
            running = sum(s == "running" for _, s in states)
            assert watch(thread, 20, lambda: sum(s == "running" for _, s in states) > running, every=0.1), states
            watch(thread, 5.0, every=0.1)  # the pipeline's main loop runs the watchdog every 0.1 s
            if outage < 3:
                mjpeg_server.drop(1.5)
    finally:
        thread.stop()
        thread.join(10)
    assert mjpeg_server.clients >= 4 and stats.reconnects >= 3, states
    runs = [t for t, s in states if s == "running"]
    stalls = [t for t, s in states if s == "stalled"]
    assert not [(r, st) for r in runs for st in stalls if 0 <= st - r <= 5.0], states


# ---- a slow model is not a stuck one ------------------------------------------------------------
def test_stuck_means_ten_times_the_slowest_batch_and_at_least_30_s():
    assert inference.stuck_after(None) == inference.FIRST_BATCH_S  # nothing measured: lazy init may be slow
    assert inference.stuck_after(0.05) == 30.0
    assert inference.stuck_after(9.0) == 90.0  # a base model at 9 s a window on two cores is slow, not stuck

    class Worker(inference.InferenceWorker):
        def __init__(self):  # only the clock-keeping part
            self.busy_since, self.slowest_s = None, None

    w = Worker()
    assert w.overdue(100.0) is None  # idle
    w.busy_since, w.slowest_s = 0.0, 9.0
    assert w.overdue(89.0) is None and w.overdue(91.0) == 91.0


PATCHED = Path(__file__).resolve().parents[1] / "fixtures" / "patched_run.py"


@pytest.mark.timeout(180)
def test_a_slow_model_raises_no_false_alarm_and_a_hung_batch_one_error(tiny_model, bikes_mp4, tmp_path):
    """File mode, a model that takes 0.3 s a batch, stall timeout 0.25 s, "stuck" floor lowered to 0.5 s:
    the source waits on the model (not stalled) and batches 0.3 s long are not stuck; then one batch
    hangs for 8 s: one ERROR after 10 x the slowest batch (~3 s), one INFO when it ends."""
    cfg = feeds.write_config(tmp_path / "run.yaml", [{"id": "clip", "url": str(bikes_mp4)}],
                             options="stall_timeout_s: 0.25, ring_capacity: 24")
    prefix = [sys.executable, str(PATCHED), "--slow-forward", "0.3", "--hang-at", "6", "--hang-s", "8",
              "--stuck-floor", "0.5", "--"]
    with feeds.Pipeline(["--config", str(cfg), "--model", str(tiny_model), "--publish", feeds.ANY_PORT,
                         "--mode", "file", "--max-windows", "40"], tmp_path / "run.log", prefix=prefix) as run:
        assert run.proc.wait(150) == 0, run.stderr()[-3000:]
    err = run.stderr()
    assert "stalled" not in err, err[-3000:]
    stuck = [line for line in err.splitlines() if "may be stuck" in line]
    assert len(stuck) == 1 and " ERROR " in stuck[0], err[-3000:]
    slowest = float(re.search(r"the slowest batch before took ([\d.]+) s", stuck[0]).group(1))
    running = float(re.search(r"running one batch for ([\d.]+) s", stuck[0]).group(1))
    assert slowest >= 0.3 and running >= 10 * slowest - 0.5, stuck[0]  # not before 10 x the slowest batch
    assert err.count("the long inference batch has finished") == 1

"""The stall watchdog on a trickle: a frozen RTSP server makes OpenCV return one stale buffered frame
after each read timeout, so a rule of "no frame for stall_timeout_s" alone never fires. Here a fake
capture reproduces that trickle deterministically (no server, no timing race on frame content)."""

from __future__ import annotations

import dataclasses
import threading
import time

import numpy as np
import pytest

from streamer.sources.capture import CaptureThread
from streamer.config import SourceConfig, SourceOptions
from streamer.core.ring import FrameRing
from streamer.sources.table import KINDS, plan_source
from streamer.core.stats import StreamStats

pytestmark = pytest.mark.timeout(30)


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

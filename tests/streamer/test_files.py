"""Video files through the capture thread: a corrupt block is read past and counted (R7, R9), a
resolution change mid-file is seen and stated (R8). The media are made by ffmpeg (streamer/testing/media.py)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

import feeds
from streamer.testing import media
from streamer.config import SourceConfig
from streamer.core.ring import FrameRing
from streamer.core.stats import StreamStats
from streamer.sources.avfile import AvFileCapture
from streamer.sources.capture import CaptureThread
from streamer.sources.props import Prop
from streamer.sources.table import plan_source

pytestmark = pytest.mark.timeout(120)


def run_file(path, capacity: int = 1024):
    """Read a whole file in file mode through a capture thread; returns (states, ring, stats, frame shapes)."""
    plan = plan_source(SourceConfig(id="f", url=str(path)))
    stats = StreamStats("f", plan.display_url)
    states: list[tuple[str, str]] = []
    shapes: list[tuple[int, ...]] = []

    def preprocess(frame):
        shapes.append(frame.shape)
        return __import__("torch").zeros(1)

    thread = CaptureThread(plan, FrameRing(capacity, blocking=False), preprocess, stats,
                           capacity_for=lambda fps: capacity, on_frame=lambda: None,
                           on_state=lambda s: states.append((s.state, s.reason)))
    thread.start()
    thread.join(90)
    assert not thread.is_alive()
    return states, thread.ring, stats, shapes


def decodable_frames(path) -> tuple[int, int]:
    """(frames that decode, failed reads before the end), reading on past every failure with OpenCV."""
    cap = cv2.VideoCapture(str(path))
    good, failed, failed_in_a_row = 0, 0, 0
    while failed_in_a_row < 200:  # well past the end
        ok, _ = cap.read()
        if ok:
            good, failed, failed_in_a_row = good + 1, failed + failed_in_a_row, 0
        else:
            failed_in_a_row += 1
    cap.release()
    return good, failed


def test_property_ids_are_opencvs():
    for prop in Prop:
        assert prop == getattr(cv2, f"CAP_PROP_{prop.name}")


def test_a_corrupt_block_mid_file_is_read_past_and_counted(tmp_path):
    path = media.corrupt_mp4(tmp_path)
    good, failed = decodable_frames(path)
    assert failed > 0 and good < 500  # the block really broke frames in the middle
    states, ring, stats, _ = run_file(path)
    assert stats.frames == ring.head == good  # every decodable frame used, not just those before the block
    assert stats.decode_errors > 0
    assert states[-1] == ("ended", "end of stream")
    assert sorted(set(ring.frame_no[: ring.head].tolist())) == list(range(good))


def test_a_clean_file_ends_without_decode_errors(tmp_path):
    states, ring, stats, _ = run_file(media.make_clip(tmp_path / "clean.mp4", seconds=4))
    assert stats.frames == 100 and stats.decode_errors == 0 and states[-1] == ("ended", "end of stream")
    assert np.all(np.diff(ring.t[:100]) == pytest.approx(0.04))  # media time from the file's own timestamps


def test_a_truncated_file_ends_with_the_frames_it_had(tmp_path):
    clip = media.make_clip(tmp_path / "whole.ts", seconds=4)
    cut = tmp_path / "cut.ts"
    data = clip.read_bytes()
    cut.write_bytes(data[: len(data) // 2] + bytes(len(data) // 2))  # second half zeros: garbage, no end marker
    states, _, stats, _ = run_file(cut)
    assert 0 < stats.frames < 100
    assert states[-1][0] == "ended"


def test_a_resolution_change_mid_file_is_seen_and_frames_keep_their_size(tmp_path):
    states, ring, stats, shapes = run_file(media.two_size_ts(tmp_path))
    assert {s[:2] for s in shapes} == {(240, 320), (544, 1280)}  # decoded at each part's own size, not squashed
    first_big = shapes.index((544, 1280, 3))
    assert all(s == (240, 320, 3) for s in shapes[:first_big]) and all(s == (544, 1280, 3) for s in shapes[first_big:])
    changed = [r for s, r in states if s == "running" and r]
    assert changed == ["resolution changed to 1280x544 (was 320x240); frames are resized to the model input"]
    segments = ring.segment[: ring.head]
    assert len(set(segments[:first_big])) == 1 and len(set(segments[first_big:])) == 1
    assert segments[first_big] != segments[first_big - 1]  # no window mixes the two sizes


def test_avfile_capture_answers_like_opencv(tmp_path):
    path = media.make_clip(tmp_path / "c.mp4", seconds=2)
    ours, theirs = AvFileCapture(str(path), 5, 5), cv2.VideoCapture(str(path))
    try:
        for _ in range(10):
            (ok1, a), (ok2, b) = ours.read(), theirs.read()
            assert ok1 and ok2 and np.array_equal(a, b)  # the same pixels, BGR
            for prop in (Prop.POS_MSEC, Prop.POS_FRAMES, Prop.FPS, Prop.FRAME_COUNT, Prop.FRAME_WIDTH,
                         Prop.FRAME_HEIGHT):
                assert ours.get(prop) == pytest.approx(theirs.get(prop)), prop.name
        assert not ours.at_end()
        while ours.read()[0]:
            pass
        assert ours.at_end()
    finally:
        ours.release()
        theirs.release()


def test_a_file_that_is_not_a_video_fails_with_the_usual_reason(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("not a video\n")
    states, _, stats, _ = run_file(path)
    assert states[-1][0] == "failed" and "not a video" in states[-1][1] and stats.frames == 0


def test_a_stopped_file_capture_ends_promptly(tmp_path):
    """File mode waits for ring space; stop ends that wait (the thread owns nothing that blocks)."""
    plan = plan_source(SourceConfig(id="f", url=str(media.make_clip(tmp_path / "s.mp4", seconds=4))))
    stats = StreamStats("f", plan.display_url)
    thread = CaptureThread(plan, FrameRing(8, blocking=True), lambda f: __import__("torch").zeros(1), stats,
                           capacity_for=lambda fps: 8, on_frame=lambda: None, on_state=lambda s: None)
    thread.start()
    assert feeds.wait_until(lambda: thread.ring.head == 8, 30, interval=0.01)  # full: the writer waits
    thread.stop()
    thread.join(5)
    assert not thread.is_alive() and stats.state == "stopped"

"""The clips of a stream share one encoding: overlapping clips are encoded once, each starts on an IDR frame and
decodes whole; a clip announced too late for it gets its own encoder; one stream's trouble stays its own.

Frames come from the test pattern at 640 px wide (its bar gives the frame number mod 160 after lossy H.264,
as in test_clips.py). The writer's rounds are run by the test (``step``) every two frames, as the thread
does every POLL_S at 25 fps; the recorder holds the shared encoding ``pre_s + SHARE_MARGIN_S`` = 4 s
(100 frames) behind the newest frame.
"""

from __future__ import annotations

import time

import av
import cv2
import numpy as np
import pytest

import streamer.ops.clipencoder as clipencoder
import streamer.ops.clipfile as clipfile
from streamer.config import ClipsConfig
from streamer.core.stats import StatsRegistry
from streamer.ops.clips import ClipRecorder
from streamer.testing.processes import read_frames
from streamer.sources.testpattern import TestPatternCapture

FPS = 25.0
WIDTH = 640  # bar period: 160 frames


def bar_frame(image: np.ndarray) -> int:
    """The test pattern's frame number mod 160, from where its white bar starts."""
    return int(np.argmax(image[:, :, 2].mean(axis=0) > 200)) // 4


def event(stream: str, phase: str, start: int, end: int | None, t0: float, eid: str) -> dict:
    return {"type": "event", "version": 1, "stream": stream, "id": eid, "phase": phase, "label": "move_right",
            "start_ts": t0 + start / FPS, "start_frame": start,
            "end_ts": None if end is None else t0 + end / FPS, "end_frame": end,
            "duration_s": 0.0 if end is None else (end - start) / FPS, "peak_score": 0.9, "published_ts": None}


class Rig:
    """A recorder for streams ``cam`` and ``cam2`` (test pattern each), fed frame by frame with a round every two
    frames, and event messages sent when the newest frame reaches the frame given."""

    def __init__(self, tmp_path, streams=("cam",), **cfg) -> None:
        self.stats = StatsRegistry()
        for stream in streams:
            self.stats.add(stream, "testpattern://")
        self.done: list[dict] = []
        config = ClipsConfig(dir=str(tmp_path), **{"pre_s": 1.0, "post_s": 1.0, **cfg})
        self.root = tmp_path / "clips"
        self.rec = ClipRecorder(config, self.stats, root=self.root, fps_for=lambda s: FPS, on_clip=self.done.append)
        self.caps = {s: TestPatternCapture(width=WIDTH, height=120, fps=FPS) for s in streams}
        self.index = -1
        self.t0 = time.time() - 10.0  # live clock: frame i was captured at t0 + i / FPS

    def run_to(self, last: int, messages: dict[int, list[dict]] | None = None) -> None:
        """Feed every stream frames up to ``last``; ``messages``: frame -> event messages sent after it."""
        for index in range(self.index + 1, last + 1):
            for stream, cap in self.caps.items():
                self.rec.on_frame(stream, index, self.t0 + index / FPS, cap.read()[1])
            for msg in (messages or {}).get(index, []):
                self.rec.on_sent(f"event.{msg['stream']}", msg)
            if index % 2:
                self.rec.step(final=False)
        self.index = last

    def clip(self, stream: str, eid: str, start: int, end: int, sent_start: int, sent_end: int) -> dict:
        """The messages of one event: start at frame ``start`` sent at ``sent_start``, end likewise."""
        return merge({sent_start: [event(stream, "start", start, None, self.t0, eid)]},
                     {sent_end: [event(stream, "end", start, end, self.t0, eid)]})

    def meta(self, eid: str) -> dict:
        found = [m for m in self.done if m["id"] == eid]
        assert found, f"clip {eid} was not finished; finished: {[m['id'] for m in self.done]}"
        return found[0]


def merge(*plans: dict) -> dict:
    out: dict = {}
    for plan in plans:
        for index, msgs in plan.items():
            out.setdefault(index, []).extend(msgs)
    return out


def check_clip(path, first: int, last: int) -> None:
    """The file holds frames ``first``..``last``: OpenCV decodes every one from frame 0, the first and last show the
    right bar, and the first packet is an IDR frame (NAL type 5) the MP4 marks as a sync sample."""
    frames = read_frames(path)
    assert len(frames) == last - first + 1, (path.name, len(frames), last - first + 1)
    assert bar_frame(frames[0]) == first % 160 and bar_frame(frames[-1]) == last % 160
    with av.open(str(path)) as container:
        packet = next(container.demux(video=0))
        assert packet.is_keyframe
        data, types = bytes(packet), []
        while data:  # MP4 samples: 4-byte big-endian NAL lengths
            size = int.from_bytes(data[:4], "big")
            types.append(data[4] & 0x1F)
            data = data[4 + size:]
        assert 5 in types, types
    with av.open(str(path)) as container:
        decoded = next(container.decode(video=0))
        assert decoded.key_frame and decoded.pts == 0


def keyframes(path) -> list[int]:
    with av.open(str(path)) as container:
        return [n for n, packet in enumerate(p for p in container.demux(video=0) if p.size) if packet.is_keyframe]


@pytest.fixture
def encodes(monkeypatch) -> list[int]:
    """Every frame any encoder (shared or a clip's own) is given, counted where both convert it."""
    calls: list[int] = []
    real = clipfile.yuv_frame

    def counting(frame, size):
        calls.append(1)
        return real(frame, size)

    monkeypatch.setattr(clipfile, "yuv_frame", counting)
    monkeypatch.setattr(clipencoder, "yuv_frame", counting)
    return calls


def test_overlapping_clips_of_a_stream_are_encoded_once(tmp_path, encodes):
    rig = Rig(tmp_path)
    # A: frames 40..90, announced 10 frames late; B: 80..130, announced 15 late, while A is open.
    # Clips (pre 1 s, post 1 s): A 15..115, B 55..155; together 15..155.
    plan = merge(rig.clip("cam", "a", 40, 90, 50, 100), rig.clip("cam", "b", 80, 130, 95, 140))
    rig.run_to(270, plan)  # the shared encoding, 100 frames behind, passes 156 at 256
    a, b = rig.meta("a"), rig.meta("b")
    assert (a["first_frame"], a["last_frame"], b["first_frame"], b["last_frame"]) == (15, 115, 55, 155)
    assert a["complete"] and b["complete"], (a["incomplete"], b["incomplete"])
    assert a["frames"] == b["frames"] == 101
    assert rig.rec.encoded == len(encodes) == 155 - 15 + 1  # not 2 x 101
    assert (rig.rec.shared_clips, rig.rec.own_clips) == (2, 0)
    check_clip(rig.root / "cam" / "a.mp4", 15, 115)
    check_clip(rig.root / "cam" / "b.mp4", 55, 155)
    assert keyframes(rig.root / "cam" / "a.mp4") == [0, 55 - 15]  # B's IDR frame, in A's file: the same packets
    assert not rig.rec._encodings, "the shared encoder outlived its clips"


def test_a_clip_announced_after_its_first_frame_was_encoded_gets_its_own_encoder(tmp_path, encodes):
    rig = Rig(tmp_path)
    # B's start (and end) come at frame 185: the shared encoding, 100 frames behind, has encoded frame 55,
    # B's first
    plan = merge(rig.clip("cam", "a", 40, 90, 50, 100), rig.clip("cam", "b", 80, 130, 185, 185))
    rig.run_to(300, plan)
    a, b = rig.meta("a"), rig.meta("b")
    assert (rig.rec.shared_clips, rig.rec.own_clips) == (1, 1)
    assert a["complete"] and b["complete"], (a["incomplete"], b["incomplete"])
    assert (b["first_frame"], b["last_frame"], b["frames"]) == (55, 155, 101)
    assert rig.rec.encoded == len(encodes) == 101 + 101  # B encodes its frames itself
    check_clip(rig.root / "cam" / "a.mp4", 15, 115)
    check_clip(rig.root / "cam" / "b.mp4", 55, 155)


@pytest.mark.parametrize("trouble", ["unwritable-dir", "encoder-error"])
def test_one_streams_failure_leaves_another_streams_shared_clips_alone(tmp_path, monkeypatch, encodes, trouble):
    rig = Rig(tmp_path, streams=("cam", "cam2"))
    if trouble == "unwritable-dir":
        rig.root.mkdir()
        (rig.root / "cam").write_text("a file where cam's clip folder should be")
    else:
        real = clipencoder.SharedEncoder.encode

        def encode(self, index, image, t, key, clips):
            if clips and clips[0].path.parent.name == "cam":
                raise av.error.InvalidDataError(1094995529, "Invalid data found when processing input")
            return real(self, index, image, t, key, clips)

        monkeypatch.setattr(clipencoder.SharedEncoder, "encode", encode)
    plan = merge(*(merge(rig.clip(s, f"a-{s}", 40, 90, 50, 100), rig.clip(s, f"b-{s}", 80, 130, 95, 140))
                   for s in ("cam", "cam2")))
    rig.run_to(270, plan)
    assert sorted(m["id"] for m in rig.done) == ["a-cam2", "b-cam2"]
    assert rig.rec.clip_for("cam", "a-cam") is None and rig.rec.clip_for("cam2", "a-cam2") == "cam2/a-cam2.mp4"
    warnings = rig.stats["cam"].snapshot()["warnings"]
    assert warnings and "cannot write" in warnings[0], warnings
    assert not rig.stats["cam2"].snapshot()["warnings"]
    assert rig.rec.encoded == 155 - 15 + 1  # cam2's frames, once
    check_clip(rig.root / "cam2" / "a-cam2.mp4", 15, 115)
    check_clip(rig.root / "cam2" / "b-cam2.mp4", 55, 155)
    assert not list(rig.root.glob("*/.*.part")), "a failed clip left its partial file"


def test_forget_finishes_the_streams_clips_and_closes_its_encoder(tmp_path):
    rig = Rig(tmp_path)
    rig.run_to(120, rig.clip("cam", "a", 40, 90, 50, 100))  # A's last frames are held back yet
    assert not rig.done and "cam" in rig.rec._encodings
    rig.rec.forget("cam")
    rig.rec.step(final=False)
    meta = rig.meta("a")
    assert (meta["first_frame"], meta["last_frame"]) == (15, 115) and meta["complete"], meta
    assert not rig.rec._encodings and "cam" not in rig.rec.buffers


def test_a_size_change_gives_a_clip_starting_after_it_its_own_encoder(tmp_path):
    """The shared encoder keeps the size it was opened with (later frames are resized to it, as a clip's own
    encoder does); a clip whose first frame has another size gets its own encoder, at that size."""
    rig = Rig(tmp_path)
    plan = merge(rig.clip("cam", "a", 40, 90, 50, 100), rig.clip("cam", "b", 80, 130, 95, 140))
    rig.run_to(50, plan)
    rig.caps["cam"] = TestPatternCapture(width=320, height=120, fps=FPS)  # from frame 51 on: B's first is 55
    rig.run_to(270, plan)
    assert (rig.rec.shared_clips, rig.rec.own_clips) == (1, 1)
    for eid, width in (("a", 640), ("b", 320)):
        assert rig.meta(eid)["complete"]
        cap = cv2.VideoCapture(str(rig.root / "cam" / f"{eid}.mp4"))
        assert cap.get(cv2.CAP_PROP_FRAME_WIDTH) == width and cap.get(cv2.CAP_PROP_FRAME_COUNT) == 101
        cap.release()


def test_the_hold_back_never_lets_frames_leave_a_small_buffer(tmp_path):
    """buffer_mb holds 3 s of this stream: the shared encoding holds back 1 s (3 s less HEADROOM_S), not 4 s,
    so nothing is missed, and a clip announced within that still shares."""
    from streamer.ops.clips import HEADROOM_S

    frame_mb = WIDTH * 120 * 3 / 1e6
    rig = Rig(tmp_path, buffer_mb=75 * frame_mb, pre_s=0.5)
    plan = merge(rig.clip("cam", "a", 40, 90, 45, 100), rig.clip("cam", "b", 80, 130, 82, 140))
    rig.run_to(150, plan)
    hold = rig.rec._hold(rig.rec.buffers["cam"])
    assert hold == pytest.approx(75 / FPS - HEADROOM_S, abs=0.05)
    rig.run_to(200)
    a, b = rig.meta("a"), rig.meta("b")
    assert a["complete"] and b["complete"] and rig.rec.missed == 0, (a["incomplete"], b["incomplete"])
    assert (rig.rec.shared_clips, rig.rec.own_clips) == (2, 0)


def test_frames_held_back_on_purpose_do_not_count_as_behind(tmp_path):
    """The writer is behind (and leaves the idle class) when a frame it encodes is late against the plan; the
    shared encoding's frames are 4 s old on purpose, which is not late."""
    rig = Rig(tmp_path)
    rig.t0 = time.time() - 299 / FPS  # frame 299, the last one fed, is captured now
    rig.run_to(299, rig.clip("cam", "a", 40, 250, 50, 260))  # the last round encodes frames 198..199
    assert rig.rec.buffers["cam"] and rig.rec._jobs["a"].last_index == 199
    assert rig.rec._lag < 1.0, rig.rec._lag  # 4 s (the hold-back) if counted against capture time


def test_a_shared_clip_has_the_quality_and_size_of_a_clip_with_its_own_encoder(tmp_path):
    # x264's rate control needs a frame rate; with only the millisecond time base it assumed 1000 fps and
    # gave each frame a fraction of the bits: half the size, 1.4 dB lower PSNR than a clip's own encoder
    cap = TestPatternCapture(width=160, height=120, fps=FPS)
    rng = np.random.default_rng(0)
    frames = [cv2.GaussianBlur(np.clip(cap.read()[1].astype(int) + rng.integers(-60, 60, (120, 160, 3)), 0, 255)
                               .astype(np.uint8), (7, 7), 2) for _ in range(100)]
    own = clipfile.ClipFile(tmp_path / "own.mp4", 26, "veryfast")
    for i, frame in enumerate(frames):
        own.add(frame, i / FPS)
    assert own.finish({})
    encoder, shared = clipencoder.SharedEncoder("cam", 26, "veryfast"), clipencoder.ClipMuxer(tmp_path / "shared.mp4")
    shared.open()
    for i, frame in enumerate(frames):
        assert encoder.encode(i, frame, i / FPS, i == 0, [shared]) == []
    assert encoder.flush() == [] and shared.finish({})

    def psnr(path):
        cap = cv2.VideoCapture(str(path))
        values = [cv2.PSNR(frame, cap.read()[1]) for frame in frames]
        cap.release()
        return float(np.mean(values))

    sizes = [(tmp_path / name).stat().st_size for name in ("own.mp4", "shared.mp4")]
    assert 0.9 < sizes[1] / sizes[0] < 1.1, sizes
    assert abs(psnr(tmp_path / "shared.mp4") - psnr(tmp_path / "own.mp4")) < 0.2

"""Sliding windows and batching: exact stride/hop in file mode, time spans, freshness under a slow model, fairness."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from streamer.core.ring import FrameRing
from streamer.core.scheduler import Scheduler, StreamCursor, WindowPlan, stagger
from streamer.core.stats import StreamStats

FRAME = torch.zeros((3, 2, 2))


def plan(**kw) -> WindowPlan:
    base = dict(num_frames=4, stride=None, span_s=None, hop=None, hop_s=None, freshness_s=2.0)
    base.update(kw)
    return WindowPlan(**base)


def make(stream: str, window: WindowPlan, *, live: bool, capacity: int = 64):
    ring = FrameRing(capacity, blocking=not live)
    stats = StreamStats(stream, stream)
    return ring, stats, StreamCursor(stream, ring, stats, window, live)


class Feeder:
    """Pushes frames with chosen timestamps; the frame's value is its frame number."""

    def __init__(self, ring: FrameRing, interval: float = 0.04) -> None:
        self.ring, self.n, self.t, self.segment = ring, 0, 0.0, 0
        ring.interval = interval

    def push(self, dt: float | None = None, mono: float | None = None, new_segment: bool = False) -> None:
        self.t += self.ring.interval if dt is None else dt
        self.segment += new_segment
        self.ring.push(torch.full((3, 2, 2), float(self.n)), t=self.t, mono=time.monotonic() if mono is None else mono,
                       wall=1e9 + self.t, frame_no=self.n, segment=self.segment)
        self.n += 1


def drain(scheduler: Scheduler) -> list:
    stop = threading.Event()
    out = []
    while (got := scheduler.next_batch(stop)) is not None:
        batch, windows = got
        for b, w in enumerate(windows):
            assert batch[b, :, 0, 0, 0].tolist() == [float(i) for i in w.frame_indices]  # gathered the right frames
            out.append(w)
    return out


def test_file_mode_emits_every_window_with_exact_stride_and_hop():
    ring, stats, cursor = make("a", plan(stride=3, hop=5), live=False, capacity=200)
    feeder = Feeder(ring)
    for _ in range(100):
        feeder.push()
    ring.end()
    windows = drain(Scheduler([cursor], max_batch=3, max_wait_ms=0))
    expected = [list(range(end - 9, end + 1, 3)) for end in range(9, 100, 5)]
    assert [w.frame_indices for w in windows] == expected
    assert cursor.done and stats.windows == len(expected)


def test_file_mode_with_a_small_ring_still_sees_every_window():
    ring, _, cursor = make("a", plan(stride=2, hop=3), live=False, capacity=12)
    scheduler = Scheduler([cursor], max_batch=2, max_wait_ms=0)
    feeder = Feeder(ring)
    stop = threading.Event()

    def produce():
        for _ in range(60):
            feeder.push()  # blocks while the ring is full
        ring.end()
        scheduler.notify()

    thread = threading.Thread(target=produce)
    thread.start()
    windows = drain(scheduler)
    thread.join(10)
    stop.set()
    assert [w.frame_indices[-1] for w in windows] == list(range(6, 60, 3))


def test_time_span_sampling_keeps_the_span_when_the_frame_rate_changes():
    ring, _, cursor = make("a", plan(span_s=2.0, hop_s=0.5, num_frames=8), live=False, capacity=400)
    feeder = Feeder(ring, interval=0.04)
    for _ in range(100):  # 4 s at 25 fps
        feeder.push()
    for _ in range(40):  # then 4 s at 10 fps
        feeder.push(dt=0.1)
    ring.end()
    windows = drain(Scheduler([cursor], max_batch=4, max_wait_ms=0))
    assert len(windows) >= 10
    for w in windows:
        ts = [t - 1e9 for t in w.frame_ts]
        assert abs((ts[-1] - ts[0]) - 2.0 * 7 / 8) <= 0.1  # the clip's span, within one frame interval
    ends = [w.frame_ts[-1] - 1e9 for w in windows]
    steps = [b - a for a, b in zip(ends, ends[1:])]
    assert all(abs(s - 0.5) <= 0.1 for s in steps)


def test_live_mode_under_a_model_2x_too_slow_takes_the_newest_window_and_counts_the_rest():
    ring, stats, cursor = make("a", plan(stride=2, hop=4), live=True, capacity=64)
    scheduler = Scheduler([cursor], max_batch=1, max_wait_ms=0)
    feeder = Feeder(ring)
    for _ in range(7):
        feeder.push()
    lags = []
    stop = threading.Event()
    for _ in range(50):
        _, windows = scheduler.next_batch(stop)
        lags.append(ring.head - 1 - windows[0].frame_indices[-1])  # frames newer than the clip, at inference
        for _ in range(8):  # the model takes as long as two hops
            feeder.push()
    assert lags == [0] * 50  # no backlog: the newest frame is in every clip, first to last
    assert stats.drops["stale"] == 49  # one hop skipped per slow inference, counted
    assert stats.windows == 50


def test_live_mode_skips_windows_older_than_the_freshness_budget():
    ring, stats, cursor = make("a", plan(stride=1, hop=1, freshness_s=0.5), live=True)
    feeder = Feeder(ring)
    old = time.monotonic() - 10.0
    for _ in range(6):
        feeder.push(mono=old)
    assert cursor.poll(time.monotonic()) is None
    assert stats.drops["stale"] == 1
    feeder.push()
    assert cursor.poll(time.monotonic()) == [3, 4, 5, 6]


def test_live_windows_never_span_a_gap():
    ring, stats, cursor = make("a", plan(stride=1, hop=1), live=True)
    feeder = Feeder(ring)
    now = time.monotonic
    for _ in range(4):
        feeder.push()
    assert cursor.poll(now()) == [0, 1, 2, 3]
    feeder.push(dt=5.0, new_segment=True)  # the source paused: frame 4 starts a new segment
    for _ in range(2):
        feeder.push()
        assert cursor.poll(now()) is None  # not enough frames since the gap
    feeder.push()
    assert cursor.poll(now()) == [4, 5, 6, 7]
    assert stats.drops["gap"] == 1


def test_batches_are_fair_across_streams():
    cursors, feeders = [], []
    for name in "abc":
        ring, _, cursor = make(name, plan(stride=1, hop=1), live=True)
        cursors.append(cursor)
        feeders.append(Feeder(ring))
    scheduler = Scheduler(cursors, max_batch=2, max_wait_ms=0)
    served = {"a": 0, "b": 0, "c": 0}
    stop = threading.Event()
    for _ in range(4):
        for f in feeders:
            f.push()
    for _ in range(30):
        _, windows = scheduler.next_batch(stop)
        assert len(windows) == 2 and len({w.stream for w in windows}) == 2
        for w in windows:
            served[w.stream] += 1
        for f in feeders:
            f.push()
    assert sorted(served.values()) == [20, 20, 20]


def test_a_late_window_leaves_the_hop_grid_where_it_was():
    """A window taken late (the model was busy) does not move the stream's grid of due times: the next one
    comes at the grid point nearest to a hop after it, at least half a hop later (never bunched: the issue
    was [509..537] then [510..538]), and the windows after it are back on the grid."""
    ring, stats, cursor = make("a", plan(span_s=1.12, num_frames=8, hop_s=0.24, freshness_s=10.0), live=True,
                               capacity=256)
    feeder = Feeder(ring, interval=0.04)  # hop 0.24 s = 6 frames

    def next_window() -> int:  # the model polls on every new frame until it gets one
        while (seqs := cursor.poll(time.monotonic())) is None:
            feeder.push()
        return seqs[-1]

    for _ in range(29):
        feeder.push()
    ends = [next_window()]
    for busy in (10, 0, 7, 0):  # frames the model is busy after a window before it polls again
        for _ in range(busy + 1):
            feeder.push()
        ends.append(next_window())
    steps = [b - a for a, b in zip(ends, ends[1:])]
    assert steps == [11, 7, 8, 4]  # 5 and 2 frames late; the next ones on the grid, 7 and 4 frames after them
    assert [(e - ends[0]) % 6 for e in ends] == [0, 5, 0, 2, 0]
    assert stats.drops["stale"] == 1  # +12 came a frame after the late window at +11: not served, counted


def test_live_streams_keep_their_own_point_of_the_hop_after_a_slow_batch():
    """Two streams started together, staggered: a slow batch makes both late and takes them together,
    after which each goes back to its own grid point, so they do not keep arriving as one batch (when
    lateness moved the grid, they stayed together for the rest of the run)."""
    window = plan(span_s=0.28, num_frames=4, hop_s=0.24, freshness_s=10.0)
    rings, cursors, stats = [], [], []
    for i, name in enumerate("ab"):
        ring, _, _ = make(name, window, live=True, capacity=128)
        rings.append(ring)
        stats.append(StreamStats(name, name))
        cursors.append(StreamCursor(name, ring, stats[-1], window, True, phase=stagger(i)))
    feeders = [Feeder(ring) for ring in rings]
    free_at, sizes, taken = 0, [], {"a": [], "b": []}
    for frame in range(400):
        for f in feeders:
            f.push()
        if frame < free_at:
            continue
        batch = [c.stream for c in cursors if c.poll(time.monotonic()) is not None]
        for stream in batch:
            taken[stream].append(frame)
        if batch:
            sizes.append((frame, len(batch)))
            free_at = frame + (9 if len(sizes) % 10 == 0 else 2)  # every tenth batch is slow
    together = [i for i, (_, n) in enumerate(sizes) if n == 2]
    assert together == list(range(0, len(sizes), 10))  # the first windows, then only right after a slow batch
    for st in stats:  # one window a hop: every grid point passed is a window or a counted stale drop
        frames = taken[st.stream]
        assert len(frames) + st.drops["stale"] == pytest.approx((frames[-1] - frames[0]) / 6 + 1, abs=1)

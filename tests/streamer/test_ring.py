"""Ring buffer: wrap-around, ordering, torn-read detection under a concurrent writer, file-mode backpressure."""

from __future__ import annotations

import threading

import pytest
import torch

from streamer.core.ring import FrameRing, reserve


def push(ring: FrameRing, value: int, **kw) -> bool:
    frame = torch.full((3, 4, 4), float(value))
    return ring.push(frame, t=value / 10, mono=value, wall=1e9 + value, pts=value / 10, frame_no=value,
                     segment=0, **kw)


def test_wrap_around_keeps_the_newest_capacity_frames():
    ring = FrameRing(5)
    for i in range(12):
        assert push(ring, i)
    assert ring.head == 12 and ring.low == 7
    out = torch.empty((3, 3, 4, 4))
    assert ring.gather([8, 10, 11], out)
    assert out[:, 0, 0, 0].tolist() == [8.0, 10.0, 11.0]
    assert ring.times(7, 12).tolist() == pytest.approx([0.7, 0.8, 0.9, 1.0, 1.1])
    assert not ring.gather([6, 8, 10], out)  # 6 was overwritten
    assert not ring.gather([10, 12], out)  # 12 does not exist yet
    assert ring.frames.shape == (5, 3, 4, 4)  # preallocated once, never grown


def test_concurrent_writer_never_yields_a_torn_or_misordered_window():
    ring = FrameRing(16)
    stop = threading.Event()

    def writer():
        i = 0
        while not stop.is_set() and i < 200_000:
            push(ring, i)
            i += 1

    thread = threading.Thread(target=writer)
    thread.start()
    out = torch.empty((4, 3, 4, 4))
    good = torn = 0
    try:
        while good < 300:
            head = ring.head
            if head < 20:
                continue
            seqs = [head - 10, head - 7, head - 4, head - 1]
            if ring.gather(seqs, out):
                # every frame of an accepted window is whole and is the frame asked for
                assert out.flatten(1).min(1).values.tolist() == [float(s) for s in seqs]
                assert out.flatten(1).max(1).values.tolist() == [float(s) for s in seqs]
                good += 1
            else:
                torn += 1
    finally:
        stop.set()
        thread.join()
    assert good == 300


def test_blocking_mode_waits_for_the_consumer():
    ring = FrameRing(4, blocking=True)
    for i in range(4):
        assert push(ring, i)
    stop = threading.Event()
    done = threading.Event()

    def writer():
        push(ring, 4, stop=stop)
        done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    assert not done.wait(0.3)  # slot of frame 0 is still needed
    assert ring.head == 4
    ring.release_before(1)
    assert done.wait(5)
    thread.join()
    assert ring.head == 5 and ring.low == 1


def test_blocking_push_gives_up_when_stopped():
    ring = FrameRing(2, blocking=True)
    push(ring, 0)
    push(ring, 1)
    stop = threading.Event()
    stop.set()
    assert push(ring, 2, stop=stop) is False
    assert ring.head == 2


def test_reserve_grows_only_an_empty_ring():
    ring = FrameRing(4)
    reserve(ring, 10)
    assert ring.capacity == 10 and len(ring.t) == 10
    push(ring, 0)
    reserve(ring, 20)
    assert ring.capacity == 10

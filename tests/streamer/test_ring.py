"""Ring buffer: wrap-around, ordering, torn-read detection under a concurrent writer, file-mode backpressure,
growing while readers read."""

from __future__ import annotations

import threading

import pytest
import torch

from streamer.core.ring import FrameRing


def push(ring: FrameRing, value: int, **kw) -> bool:
    frame = torch.full((3, 4, 4), float(value))
    return ring.push(frame, t=value / 10, mono=value, wall=1e9 + value, frame_no=value,
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


def start_writer(ring: FrameRing, stop: threading.Event, limit: int, grow_every: int = 0) -> threading.Thread:
    """A thread pushing frames 0, 1, 2, ... until ``stop`` (growing the ring by 8 every ``grow_every``)."""

    def writer():
        i = 0
        while not stop.is_set() and i < limit:
            push(ring, i)
            if grow_every and i % grow_every == grow_every - 1 and ring.capacity < 64:
                ring.grow(ring.capacity + 8)
            i += 1

    thread = threading.Thread(target=writer)
    thread.start()
    return thread


def assert_whole(out: torch.Tensor, seqs: list[int]) -> None:
    """Every frame of a gathered window is whole and is the frame asked for."""
    assert out.flatten(1).min(1).values.tolist() == [float(s) for s in seqs]
    assert out.flatten(1).max(1).values.tolist() == [float(s) for s in seqs]


def test_concurrent_writer_never_yields_a_torn_or_misordered_window():
    ring = FrameRing(16)
    stop = threading.Event()
    thread = start_writer(ring, stop, 200_000)
    out = torch.empty((4, 3, 4, 4))
    good = torn = 0
    try:
        while good < 300:
            head = ring.head
            if head < 20:
                continue
            seqs = [head - 10, head - 7, head - 4, head - 1]
            if ring.gather(seqs, out):
                assert_whole(out, seqs)
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


def test_grow_keeps_every_intact_frame_with_its_seq():
    ring = FrameRing(4)
    for i in range(10):  # seqs 6..9 intact, in slots 2, 3, 0, 1
        push(ring, i)
    ring.grow(7)
    assert ring.capacity == 7 and len(ring.t) == 7 and ring.frames.shape[0] == 7
    assert ring.low == 6 and ring.head == 10
    out = torch.empty((4, 3, 4, 4))
    assert ring.gather([6, 7, 8, 9], out)
    assert out[:, 0, 0, 0].tolist() == [6.0, 7.0, 8.0, 9.0]
    assert ring.times(6, 10).tolist() == pytest.approx([0.6, 0.7, 0.8, 0.9])
    assert ring.frame_no[ring.slots([6, 9])].tolist() == [6, 9]
    for i in range(10, 13):  # room for 7 now: nothing older than 6 comes back, nothing is lost early
        push(ring, i)
    assert ring.low == 6 and ring.gather([6, 9, 12], out[:3])
    push(ring, 13)
    assert ring.low == 7 and not ring.gather([6], out[:1])
    ring.grow(5)  # never shrinks
    assert ring.capacity == 7


def test_growing_under_a_reader_never_yields_a_torn_window():
    """The writer grows the ring while it pushes; a reader holding the ring's lock (as the scheduler
    does) only ever gathers whole windows of the frames it asked for."""
    ring = FrameRing(8)
    stop = threading.Event()
    thread = start_writer(ring, stop, 5_000_000, grow_every=500)
    out = torch.empty((3, 3, 4, 4))
    good = 0
    try:
        while good < 300 and thread.is_alive():
            with ring.lock:
                head = ring.head
                if head < 8:
                    continue
                seqs = [head - 7, head - 4, head - 1]
                t = ring.times(head - 7, head).tolist()
                ok = ring.gather(seqs, out)  # checks last that nothing from head - 7 on was overwritten
            if ok:
                assert_whole(out, seqs)
                assert t == pytest.approx([s / 10 for s in range(head - 7, head)])
                good += 1
    finally:
        stop.set()
        thread.join()
    assert good == 300 and ring.capacity > 8


@pytest.mark.gpu
def test_grow_on_the_device_keeps_every_frame():
    ring = FrameRing(4, device="cuda")
    for i in range(6):
        push(ring, i)
    ring.grow(8)
    out = torch.empty((4, 3, 4, 4), device="cuda")
    assert ring.frames.is_cuda and ring.gather([2, 3, 4, 5], out)
    assert out[:, 0, 0, 0].tolist() == [2.0, 3.0, 4.0, 5.0]

"""Per-source ring buffer of preprocessed frames: fixed capacity, preallocated, overwrite-oldest.

One writer (the source's capture thread) and any number of readers. The writer publishes a frame by
advancing ``head`` after its data is in place; before it overwrites a slot it raises ``low`` (the
oldest sequence number still intact), so a reader that copied a window checks ``low`` afterwards
and knows whether the copy is whole (a seqlock without a lock on the read path).

In blocking mode (``mode: file``) the writer instead waits until the consumer has released the slot
it is about to overwrite (:meth:`release_before`), so every window of a file is seen.

Sequence numbers (``seq``) count pushes from 0; ``seq % capacity`` is the slot.

The writer may :meth:`grow` the ring (when the measured frame rate needs more frames than it holds):
it copies the frames still intact into larger storage, keeping their sequence numbers. Readers hold
:attr:`FrameRing.lock` while they look at the ring and gather a window, and ``grow`` takes it, so a
reader never sees half-resized storage; the writer takes the lock for nothing else.

With ``device`` set (e.g. ``cuda``), frame storage lives on that device (see :mod:`streamer.core.device`):
the writer synchronizes its current stream before it publishes a frame, and a reader synchronizes
its own stream after a gather before the seqlock check, so the check covers a finished copy.
"""

from __future__ import annotations

import threading
from typing import Sequence

import numpy as np


class FrameRing:
    def __init__(self, capacity: int, *, blocking: bool = False, device=None) -> None:
        if capacity < 2:
            raise ValueError(f"ring capacity must be >= 2, got {capacity}")
        self.capacity = int(capacity)
        self.blocking = blocking
        self.device = device  # where frames live; None: where the first pushed frame is
        self.frames = None  # torch.Tensor (capacity, *frame_shape), allocated at the first push
        self.t = np.zeros(capacity, np.float64)  # sampling clock: capture monotonic (live) or media time (file)
        self.mono = np.zeros(capacity, np.float64)  # capture time, time.monotonic()
        self.wall = np.zeros(capacity, np.float64)  # capture time, time.time()
        self.frame_no = np.zeros(capacity, np.int64)  # frame number as the source counts reads
        self.segment = np.zeros(capacity, np.int64)  # bumps after a time gap; a window never spans two
        self.labels: list[str | None] = [None] * capacity  # ground truth, when the capture provides it
        self.head = 0  # next seq to write == number of frames pushed
        self.low = 0  # oldest seq whose slot is intact
        self.ended = False  # the writer will push no more (end of stream / stopped)
        self.interval = 1.0 / 30.0  # nominal seconds between frames, set by the writer from the source's fps
        self._needed_from = 0  # blocking mode: the consumer still needs seq >= this
        self._space = threading.Condition(threading.Lock())
        self._on_cuda = False
        self.lock = threading.Lock()  # readers: while they poll and gather; the writer: only to grow

    # ---- writer side -------------------------------------------------------------------------
    def allocate(self, frame_shape: Sequence[int], dtype=None) -> None:
        """Preallocate storage for ``capacity`` frames of ``frame_shape`` (called once, by the writer)."""
        import torch

        self.frames = torch.empty((self.capacity, *frame_shape), dtype=dtype or torch.float32, device=self.device)
        self._on_cuda = self.frames.is_cuda

    def push(self, frame, *, t: float, mono: float, wall: float, frame_no: int, segment: int,
             label: str | None = None, stop: threading.Event | None = None) -> bool:
        """Store one preprocessed frame; False if ``stop`` was set while waiting for space (blocking mode)."""
        seq = self.head
        if seq >= self.capacity:
            if self.blocking and seq - self._needed_from >= self.capacity:
                with self._space:
                    while seq - self._needed_from >= self.capacity:
                        if stop is not None and stop.is_set():
                            return False
                        self._space.wait(0.1)
            # the slot of seq - capacity is about to be overwritten (after a grow, low may already be higher)
            self.low = max(self.low, seq - self.capacity + 1)
        slot = seq % self.capacity
        if self.frames is None:
            self.allocate(tuple(frame.shape), frame.dtype)
        self.frames[slot].copy_(frame)
        if self._on_cuda:  # the copy (and the preprocessing queued before it) is done before publishing
            _sync_current(self.frames.device)
        self.t[slot] = t
        self.mono[slot] = mono
        self.wall[slot] = wall
        self.frame_no[slot] = frame_no
        self.segment[slot] = segment
        self.labels[slot] = label
        self.head = seq + 1  # publish
        return True

    def end(self) -> None:
        self.ended = True

    def grow(self, capacity: int) -> None:
        """Hold ``capacity`` slots from now on, keeping every intact frame and its seq (writer thread only)."""
        if capacity <= self.capacity:
            return
        keep = range(max(self.low, self.head - self.capacity), self.head)  # seqs still intact
        old, new = self.slots(keep), [s % capacity for s in keep]
        with self.lock:
            for name in ("t", "mono", "wall", "frame_no", "segment"):
                before = getattr(self, name)
                after = np.zeros(capacity, before.dtype)
                after[new] = before[old]
                setattr(self, name, after)
            labels: list[str | None] = [None] * capacity
            for o, n in zip(old, new):
                labels[n] = self.labels[o]
            self.labels = labels
            if self.frames is not None:
                frames = self.frames.new_empty((capacity, *self.frames.shape[1:]))
                frames[new] = self.frames[old]
                if self._on_cuda:  # the copy is done before a reader can gather from it
                    _sync_current(frames.device)
                self.frames = frames
            self.low = keep.start
            self.capacity = int(capacity)

    # ---- reader side -------------------------------------------------------------------------
    def release_before(self, seq: int) -> None:
        """Blocking mode: frames older than ``seq`` are no longer needed; the writer may overwrite them."""
        if seq > self._needed_from:
            with self._space:
                self._needed_from = seq
                self._space.notify()

    def slots(self, seqs: Sequence[int]) -> list[int]:
        cap = self.capacity
        return [s % cap for s in seqs]

    def times(self, lo: int, hi: int) -> np.ndarray:
        """Sampling-clock values of seqs ``lo..hi-1`` in order (a copy of at most ``hi - lo`` values)."""
        cap = self.capacity
        a, b = lo % cap, hi % cap
        if hi - lo <= 0:
            return self.t[:0]
        if a < b:
            return self.t[a:b].copy()
        return np.concatenate((self.t[a:], self.t[:b]))

    def gather(self, seqs: Sequence[int], out) -> bool:
        """Copy frames ``seqs`` into ``out`` (T, ...); False if any was overwritten meanwhile (discard ``out``)."""
        import torch

        first = min(seqs)
        if first < self.low or max(seqs) >= self.head:
            return False
        index = torch.tensor(self.slots(seqs), dtype=torch.long)
        if self._on_cuda:
            index = index.to(self.frames.device)
        torch.index_select(self.frames, 0, index, out=out)
        if self._on_cuda:  # the gather ran to its end before low is read
            _sync_current(self.frames.device)
        return first >= self.low  # the writer raises low before overwriting: still intact?


def _sync_current(device) -> None:
    import torch

    torch.cuda.current_stream(device).synchronize()

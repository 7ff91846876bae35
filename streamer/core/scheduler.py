"""Sliding windows over every stream's ring, batched fairly for the model.

The inference thread pulls: :meth:`Scheduler.next_batch` polls each stream's :class:`StreamCursor`
round-robin (the starting stream rotates per batch), gathers each ready window straight from the
ring into a preallocated batch tensor, and waits at most ``max_wait_ms`` for a fuller batch.

``mode: file`` cursors emit every window in order (the capture thread waits for ring space, so
nothing is lost). ``mode: live`` cursors only ever take the window ending at the newest frame. With a
time hop (``hop_s``) each live stream keeps its own grid of due times, ``hop_s`` apart, placed at its
own point of the hop (:func:`stagger`: streams started together take turns instead of arriving as one
batch); a window taken late does not move the grid, and the next one is due at the grid point nearest
to a hop after it (at least half a hop later, never bunched). Lateness used to move each stream's
windows onto the time the model got free, which drew streams together into ever larger batches
(docs/ARCHITECTURE.md). Grid points that pass while a window waits, and windows whose newest frame is
older than ``freshness_s``, are counted as ``stale`` drops. Because windows are chosen when the model is ready, no backlog builds:
the age of the newest frame at inference stays flat however slow the model (R5, R12).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass

import numpy as np

from streamer.core.ring import FrameRing
from streamer.core.stats import StreamStats
from streamer.core.windows import nearest, stride_indices, time_targets

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WindowPlan:
    """A resolved window config: num_frames known, exactly one sampling rule and one hop rule."""

    num_frames: int
    stride: int | None  # frames between samples, or
    span_s: float | None  # clip duration in seconds
    hop: int | None  # frames between window ends, or
    hop_s: float | None  # seconds between window ends
    freshness_s: float


@dataclass
class Window:
    stream: str
    stats: StreamStats
    seqs: list[int]
    frame_indices: list[int]
    frame_ts: list[float]
    newest_mono: float
    label: str | None


GOLDEN = (5 ** 0.5 - 1) / 2


def stagger(index: int) -> float:
    """Where in the hop the ``index``-th live stream's windows fall, as a fraction of the hop: the golden
    ratio sequence, so any number of streams (added and removed at any time) stay spread out."""
    return (index * GOLDEN) % 1.0


class StreamCursor:
    """Where the next window of one stream ends, and whether it is ready."""

    def __init__(self, stream: str, ring: FrameRing, stats: StreamStats, plan: WindowPlan, live: bool,
                 phase: float = 0.0) -> None:
        self.stream, self.ring, self.stats, self.plan, self.live = stream, ring, stats, plan, live
        self.phase = phase  # live time hop: the grid's offset, a fraction of hop_s (see stagger)
        self.done = False
        self.last_end = -1  # seq of the last window's newest frame
        self.last_due: float | None = None  # file mode: the hop grid's last point; live: the next due point
        self.seg_start = 0  # first seq of the segment windows are taken from
        self.seg_id = 0
        self.pending_release = 0
        self._due: float | None = None  # file mode: the hop-grid time the chosen end was nearest to

    # ---- helpers ------------------------------------------------------------------------------
    def _t(self, seq: int) -> float:
        return float(self.ring.t[seq % self.ring.capacity])

    def _samples(self, end: int, lo: int) -> list[int] | None:
        """Seqs of the window ending at ``end``, or None if its history is not (or no longer) in the ring."""
        p, ring = self.plan, self.ring
        if p.stride is not None:
            seqs = stride_indices(end, p.num_frames, p.stride)
            return seqs if seqs[0] >= lo else None
        targets = time_targets(self._t(end), p.num_frames, p.span_s)
        if self.live and targets[0] < self._t(lo) - 0.5 * ring.interval:
            return None  # not enough history yet (file mode: the first window starts at the segment)
        ts = ring.times(lo, end + 1)
        return (nearest(ts, targets) + lo).tolist()

    def _new_segment(self, end: int) -> None:
        """The newest frame starts (or lies in) a segment after a gap: restart the window grid there."""
        ring, cap = self.ring, self.ring.capacity
        seg = int(ring.segment[end % cap])
        s = end
        while s - 1 >= max(ring.low, self.seg_start) and int(ring.segment[(s - 1) % cap]) == seg:
            s -= 1
        if self.last_end >= 0:
            self.stats.drop("gap")
        self.seg_start, self.seg_id = s, seg
        self.last_end, self.last_due = -1, None
        self.pending_release = max(self.pending_release, s)

    # ---- the decision -------------------------------------------------------------------------
    def poll(self, now: float) -> list[int] | None:
        """Seqs of the next window if one is ready (cursor advanced), else None."""
        ring, p = self.ring, self.plan
        ended = ring.ended  # read before head: if ended, head is final
        head = ring.head
        if head == 0:
            self.done = ended
            return None
        newest = head - 1
        if int(ring.segment[newest % ring.capacity]) != self.seg_id:
            self._new_segment(newest)
        lo = max(ring.low, self.seg_start)
        end = self._live_end(newest) if self.live else self._file_end(newest, lo)
        if end is None:
            self.done = ended  # ended was read before head: no later frame can make a window
            return None
        seqs = self._samples(end, lo)
        if seqs is None:  # live: not enough history in the ring yet
            self.done = ended
            return None
        self._advance(end)
        if self.live:
            age = now - float(ring.mono[end % ring.capacity])
            if age > p.freshness_s:
                self.stats.drop("stale")
                return None
        return seqs

    def _live_end(self, newest: int) -> int | None:
        p = self.plan
        if p.hop is not None:
            return newest if self.last_end < 0 or newest >= self.last_end + p.hop else None
        tol = 0.5 * self.ring.interval
        t = self._t(newest)
        if self.last_due is None:  # the first window of a segment: at this stream's next grid point
            self.last_due = self._grid(t - tol, up=True)
        return newest if t >= self.last_due - tol else None

    def _grid(self, t: float, up: bool = False) -> float:
        """This stream's hop-grid point nearest to ``t`` (``up``: the first at or after ``t``)."""
        hop = self.plan.hop_s
        offset = self.phase * hop
        steps = (t - offset) / hop
        return offset + (math.ceil(steps) if up else round(steps)) * hop

    def _file_end(self, newest: int, lo: int) -> int | None:
        p = self.plan
        tol = 0.5 * self.ring.interval
        self._due = None
        if self.last_end < 0:  # first window of a segment
            if p.stride is not None:
                end = self.seg_start + (p.num_frames - 1) * p.stride
                return end if end <= newest else None
            due = self._t(self.seg_start) + p.span_s * (p.num_frames - 1) / p.num_frames
        elif p.hop is not None:
            end = self.last_end + p.hop
            return end if end <= newest else None
        else:
            due = self.last_due + p.hop_s
        if self._t(newest) < due - tol:
            return None
        ts = self.ring.times(lo, newest + 1)
        end = int(nearest(ts, np.array([due]))[0]) + lo
        self._due = due
        return end

    def _advance(self, end: int) -> None:
        p = self.plan
        if self.live and p.hop_s is not None:
            # the grid point nearest to a hop after this window: on time, the next point; late, the grid
            # stays where it was and the next window still comes at least half a hop after this one
            due = self._grid(self._t(end) + p.hop_s)
            if self.last_end >= 0:  # grid points between the one this window was due at and the next: not served
                skipped = round((due - self.last_due) / p.hop_s) - 1
                if skipped > 0:
                    self.stats.drop("stale", skipped)
            self.last_due = due
        elif self.live and self.last_end >= 0:
            skipped = (end - self.last_end) // p.hop - 1
            if skipped > 0:
                self.stats.drop("stale", skipped)
        elif p.hop_s is not None:
            self.last_due = self._due if self._due is not None else self._t(end)
        self.last_end = end


class Scheduler:
    """Batches ready windows of all streams, fairly, into one preallocated tensor."""

    def __init__(self, cursors: list[StreamCursor], max_batch: int, max_wait_ms: float) -> None:
        #: copy-on-write: replaced whole by :meth:`add` and :meth:`remove` (streams added and removed while it
        #: runs, streamer/streams.py); the inference thread reads one tuple per pass and never sees it change
        self.cursors: tuple[StreamCursor, ...] = tuple(cursors)
        self._change = threading.Lock()  # writers only (the control thread, the main thread)
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000.0
        self.wakeup = threading.Event()
        self._rr = 0
        self._batch = None  # torch.Tensor (max_batch, T, C, H, W), allocated at the first window
        self._warned_shape: set[str] = set()

    def notify(self) -> None:
        """Called by capture threads after every frame (and at their end)."""
        self.wakeup.set()

    def add(self, cursor: StreamCursor) -> None:
        """Schedule one more stream from the next pass on."""
        with self._change:
            self.cursors = (*self.cursors, cursor)
        self.notify()

    def remove(self, stream: str) -> None:
        """Stop scheduling a stream; a window of it already taken still completes."""
        with self._change:
            self.cursors = tuple(c for c in self.cursors if c.stream != stream)
        self._warned_shape.discard(stream)

    def all_done(self) -> bool:
        """Every stream has ended (a run with no stream at all waits for one to be added)."""
        cursors = self.cursors
        return bool(cursors) and all(c.done for c in cursors)

    def next_batch(self, stop: threading.Event):
        """Block until at least one window is ready; return (batch tensor view, windows), or None at the end."""
        windows: list[Window] = []
        deadline = None
        while True:
            self.wakeup.clear()
            cursors = self.cursors  # one consistent list for this pass
            self._collect(cursors, windows)
            if len(windows) >= self.max_batch:
                break
            if windows:
                if deadline is None:
                    deadline = time.monotonic() + self.max_wait_s
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.wakeup.wait(left)
            else:
                if stop.is_set() or self.all_done():
                    return None
                self.wakeup.wait(0.1)
        self._rr = (self._rr + 1) % max(1, len(cursors))
        return self._batch[: len(windows)], windows

    def _collect(self, cursors: tuple[StreamCursor, ...], windows: list[Window]) -> None:
        n = len(cursors)
        progress = True
        while progress and len(windows) < self.max_batch:
            progress = False
            for j in range(n):
                if len(windows) >= self.max_batch:
                    return
                cursor = cursors[(self._rr + j) % n]
                if cursor.done:
                    continue
                window = self._take(cursor, len(windows))
                if window is not None:
                    windows.append(window)
                    progress = True

    def _take(self, cursor: StreamCursor, slot: int) -> Window | None:
        with cursor.ring.lock:  # the capture thread may grow the ring; not while we look at it
            return self._take_locked(cursor, slot)

    def _take_locked(self, cursor: StreamCursor, slot: int) -> Window | None:
        now = time.monotonic()
        seqs = cursor.poll(now)
        ring = cursor.ring
        if seqs is None:
            if cursor.pending_release:
                ring.release_before(cursor.pending_release)
            return None
        cap = ring.capacity
        slots = [s % cap for s in seqs]
        frame_indices = ring.frame_no[slots].tolist()
        frame_ts = ring.wall[slots].tolist()
        newest_mono = float(ring.mono[slots[-1]])
        label = ring.labels[slots[-1]]
        if self._batch is None:
            import torch

            shape = tuple(ring.frames.shape[1:])
            self._batch = torch.empty((self.max_batch, len(seqs), *shape), dtype=ring.frames.dtype,
                                      device=ring.frames.device)  # on the ring's device: no host round trip
        if tuple(ring.frames.shape[1:]) != tuple(self._batch.shape[2:]):
            self._shape_mismatch(cursor, tuple(ring.frames.shape[1:]))
            return None
        if not ring.gather(seqs, self._batch[slot]):
            cursor.stats.drop("overwritten")
            return None
        if not cursor.live:
            nxt = seqs[0] + (cursor.plan.hop if cursor.plan.hop is not None else 0)
            ring.release_before(max(nxt, cursor.pending_release))
        cursor.stats.windows += 1
        return Window(cursor.stream, cursor.stats, seqs, frame_indices, frame_ts, newest_mono, label)

    def _shape_mismatch(self, cursor: StreamCursor, shape: tuple) -> None:
        cursor.stats.drop("shape_mismatch")
        if cursor.stream not in self._warned_shape:
            self._warned_shape.add(cursor.stream)
            log.error("[%s] preprocessed frames are %s but the batch holds %s; use a preprocessing "
                      "config with a fixed crop size", cursor.stream, shape, tuple(self._batch.shape[2:]))

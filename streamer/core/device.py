"""The device data path: frames go to the model's device as uint8 and stay there until the logits.

Per source, a :class:`DeviceStage` (called by that source's capture thread) copies the decoded uint8
frame into a pinned host staging buffer, uploads it with a non-blocking copy on the thread's own side
stream, and runs the preprocessing arithmetic (channel order, resize, crop, normalize) on the device,
in the dtype the model's first layer takes. The ring (:class:`streamer.core.ring.FrameRing` with
``device=``) keeps those frames on the device; the scheduler gathers windows there by index into a
device batch; the model runs on it; only the top-k scores come back to the host.

Ordering, by construction:
- the capture thread's CUDA work (upload, preprocessing, the copy into the ring slot) runs on its
  side stream, made current for that thread on the first frame; the ring synchronizes the writer's
  current stream before it publishes the frame, so a reader never sees a slot whose copy is queued;
- a reader synchronizes its own stream after a gather before it checks that the slots were not
  overwritten meanwhile (the ring's seqlock), so the check covers the finished copy;
- a staging buffer is reused only after the event recorded behind its upload has completed.

On ``device="cpu"`` the same code runs without streams or pinning (the CPU tests prove the logic);
the output equals :class:`model.preprocess.Preprocessor` on CPU bit for bit.
"""

from __future__ import annotations

import contextlib
import logging

import numpy as np
import torch

from model.preprocess import Preprocessor

log = logging.getLogger(__name__)

STAGING_BUFFERS = 2  #: pinned buffers per source: the next frame is staged while the last one uploads


class PinnedStaging:
    """A small pool of pinned uint8 host buffers of one frame shape, each guarded by a CUDA event."""

    def __init__(self, shape: tuple[int, ...], count: int = STAGING_BUFFERS, pin: bool = True) -> None:
        self.shape = tuple(shape)
        self.buffers = [torch.empty(self.shape, dtype=torch.uint8, pin_memory=pin) for _ in range(count)]
        self.events: list[torch.cuda.Event | None] = [None] * count
        self._next = 0

    def take(self) -> tuple[int, torch.Tensor]:
        """The next buffer, once the upload that last read it has completed."""
        i = self._next
        self._next = (i + 1) % len(self.buffers)
        event = self.events[i]
        if event is not None:
            event.synchronize()  # the previous non-blocking copy out of this buffer is done
            self.events[i] = None
        return i, self.buffers[i]

    def guard(self, i: int, stream) -> None:
        """Record, on ``stream``, the point after which buffer ``i`` may be overwritten."""
        event = torch.cuda.Event()
        event.record(stream)
        self.events[i] = event


class DeviceStage:
    """``__call__(frame)``: uint8 ``H x W x 3`` numpy (BGR unless ``input_order``) -> ``(3, h, w)`` on the device.

    One per source, called only by that source's capture thread. ``dtype`` is what the ring stores
    (the model's input dtype); the values are those of the float32 preprocessing rounded once to it.
    """

    def __init__(self, preprocessor: Preprocessor, dtype: torch.dtype = torch.float32) -> None:
        self.pre = preprocessor
        self.device = preprocessor.device
        self.dtype = dtype
        self.cuda = self.device.type == "cuda"
        self.stream = torch.cuda.Stream(self.device) if self.cuda else None
        self._staging: PinnedStaging | None = None
        self._thread_set: bool = False

    def stream_context(self):
        """Make the side stream current for the calling thread (a no-op on CPU)."""
        return torch.cuda.stream(self.stream) if self.cuda else contextlib.nullcontext()

    def _adopt_stream(self) -> None:
        """First call, in the capture thread: the side stream becomes that thread's current stream, so the
        ring's copy into its slot and its synchronize see the same stream as the preprocessing."""
        if self.cuda and not self._thread_set:
            torch.cuda.set_stream(self.stream)
            self._thread_set = True

    def upload(self, frame: np.ndarray) -> torch.Tensor:
        """uint8 ``(H, W, 3)`` on the device (non-blocking copy from pinned memory on the side stream)."""
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            got = f"{type(frame).__name__} {getattr(frame, 'dtype', '')} {getattr(frame, 'shape', '')}"
            raise ValueError(f"frame must be a uint8 H x W x 3 array, got {got}")
        if not self.cuda:
            return torch.from_numpy(np.ascontiguousarray(frame))  # (H, W, 3) uint8, the caller's memory
        if self._staging is None or self._staging.shape != frame.shape:
            self._staging = PinnedStaging(frame.shape)  # first frame or a resolution change (R8)
        i, host = self._staging.take()
        host.numpy()[...] = frame  # one host copy into page-locked memory
        x = torch.empty(frame.shape, dtype=torch.uint8, device=self.device)  # allocated on the side stream
        x.copy_(host, non_blocking=True)  # (H, W, 3) uint8, asynchronous DMA
        self._staging.guard(i, self.stream)
        return x

    def __call__(self, frame: np.ndarray) -> torch.Tensor:
        self._adopt_stream()
        with self.stream_context():
            x = self.upload(frame)  # (H, W, 3) uint8 on the device
            return self.transform(x)

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 ``(H, W, 3)`` already on the device -> normalized ``(3, h, w)`` in ``self.dtype``."""
        y = self.pre.transform(x)  # the Preprocessor's own steps: the same numbers as on the host path
        return y if self.dtype == torch.float32 else y.to(self.dtype)


__all__ = ["DeviceStage", "PinnedStaging", "STAGING_BUFFERS"]

"""Tile previews: the newest raw frame of a stream, scaled down, annotated, as JPEG, on request only.

Capture threads hand over a reference to each new frame (:meth:`Previews.frame`: one dict store,
no copy, no encode). Pages ask for previews (the preview socket, or a one-off GET): time is cut
into slots of ``1 / preview_fps``; the first request in a slot encodes (in one worker thread, off
the event loop) and every other request in that slot, from any page, gets the same bytes object. A
frame that has not changed (a stalled camera) is not encoded again. With no page open nothing is
encoded.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

from streamer.ops.annotate import draw
from streamer.supervisor import lower_priority


class Previews:
    def __init__(self, streams: list[str], width: int, fps: float, tiles: dict[str, dict]) -> None:
        self.streams = set(streams)
        self.width, self.interval = width, 1.0 / fps
        self.tiles = tiles  # the console state's tiles: the label and state drawn on the preview
        self._frames: dict[str, tuple[float, object]] = {}
        self._cache: dict[str, tuple[int, tuple, bytes]] = {}  # stream -> (slot, (frame time, lines), jpeg)
        self._locks: dict[str, asyncio.Lock] = {}
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="console-preview",
                                        initializer=lower_priority)
        self.encoded = 0

    def add(self, stream: str) -> None:
        self.streams = self.streams | {stream}  # copy-on-write: the event loop reads it

    def forget(self, stream: str) -> None:
        """A removed stream: no preview any more, and its last frame is let go."""
        self.streams = self.streams - {stream}
        self._frames.pop(stream, None)
        self._cache.pop(stream, None)
        self._locks.pop(stream, None)

    def frame(self, stream: str, wall: float, image) -> None:
        """The newest frame of ``stream`` (capture thread)."""
        self._frames[stream] = (wall, image)

    async def jpeg(self, stream: str, at: float | None = None) -> bytes | None:
        """The stream's preview for the slot that holds ``at`` (monotonic; default now), encoded at most
        once per slot and only when the frame or its labels changed; None before the first frame."""
        slot = int((time.monotonic() if at is None else at) // self.interval)
        lock = self._locks.setdefault(stream, asyncio.Lock())
        async with lock:
            cached = self._cache.get(stream)
            if cached is not None and cached[0] >= slot:
                return cached[2]
            newest = self._frames.get(stream)
            if newest is None:
                return None
            key = (newest[0], self._lines(stream))
            if cached is not None and cached[1] == key:  # nothing new to show: same bytes, no encode
                self._cache[stream] = (slot, key, cached[2])
                return cached[2]
            data = await asyncio.get_running_loop().run_in_executor(self._pool, self._encode, newest[1], key[1])
            self._cache[stream] = (slot, key, data)
            self.encoded += 1
            return data

    def _lines(self, stream: str) -> tuple[str, ...]:
        tile = self.tiles.get(stream, {})
        top = tile.get("top") or []
        first = f"{top[0]['label']} {top[0]['score']:.2f}" if top else "(waiting for the first window)"
        return first, f"{stream} {tile.get('state', '')}"

    def _encode(self, image, lines: tuple[str, ...]) -> bytes:
        import cv2

        h, w = image.shape[:2]
        if w > self.width:
            image = cv2.resize(image, (self.width, max(1, round(h * self.width / w))), interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".jpg", draw(image, lines), [cv2.IMWRITE_JPEG_QUALITY, 80])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        return buf.tobytes()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

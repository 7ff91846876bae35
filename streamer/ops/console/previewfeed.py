"""The page's preview feed: one WebSocket per page (``/api/previews``) carries every tile's JPEG.

Why a socket and not an image URL per tile: a page showing 8 tiles at 5 previews a second made 40
HTTP requests a second, each parsed, authorised and answered in the pipeline's process, and a
browser opens at most 6 HTTP/1.1 connections to one host, so a long-lived stream per tile would
starve the page's other requests. One socket per page, authorised once at the upgrade, costs one
frame write per preview.

The page says which tiles it shows, as text: ``{"watch": ["cam-1", ...], "period_s": 0.2}``
(``period_s`` is raised to ``1 / ui.preview_fps`` and capped at 10 s; a hidden page sends an empty
list). The server answers with one binary message a round, holding the tiles whose preview changed
since the last one sent (a stalled camera costs nothing): per tile a 2-byte big-endian length, the
stream id in UTF-8, a 4-byte big-endian length, the JPEG. The page answers each round with
``{"ack": 1}``, and the next round waits for it: a page that cannot keep up (a phone, a browser on a
busy machine) gets fewer rounds instead of a backlog, since the browser reads the socket eagerly
and TCP alone would not slow the server down. Every page shares the encoded bytes: a page's rounds
are at least one slot apart, so it gets each slot's preview once (:meth:`Previews.jpeg`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time

from streamer.ops.console.preview import Previews

log = logging.getLogger(__name__)

MAX_CONTROL_BYTES = 64 * 1024
_MAX_PERIOD_S = 10.0


def pack(previews: list[tuple[str, bytes]]) -> bytes:
    """One round's binary message: each tile's stream id and JPEG, lengths first."""
    out = []
    for stream, jpeg in previews:
        name = stream.encode("utf-8")
        out += [len(name).to_bytes(2, "big"), name, len(jpeg).to_bytes(4, "big"), jpeg]
    return b"".join(out)


def unpack(message: bytes) -> list[tuple[str, bytes]]:
    """The inverse of :func:`pack` (for clients written in Python: tests, the benchmark's pages)."""
    out, i = [], 0
    while i < len(message):
        n = int.from_bytes(message[i:i + 2], "big")
        stream = message[i + 2:i + 2 + n].decode("utf-8")
        i += 2 + n
        size = int.from_bytes(message[i:i + 4], "big")
        out.append((stream, message[i + 4:i + 4 + size]))
        i += 4 + size
    return out


class Watch:
    """What one page asked for: the streams its visible tiles show and how often."""

    def __init__(self, interval: float) -> None:
        self.floor = interval
        self.streams: list[str] = []
        self.period = interval
        self.changed = asyncio.Event()
        self.acked = asyncio.Event()
        self.acked.set()

    def update(self, text: str, known: set[str]) -> str | None:
        """Apply one control message; an error message for the log if it is not one."""
        try:
            msg = json.loads(text)
            if isinstance(msg, dict) and "ack" in msg:
                self.acked.set()
                return None
            streams = msg["watch"]
            period = float(msg.get("period_s", self.floor))
        except (ValueError, KeyError, TypeError) as exc:
            return f"not a watch message ({exc.__class__.__name__})"
        if not isinstance(streams, list) or not all(isinstance(s, str) for s in streams):
            return "watch must be a list of stream ids"
        self.streams = [s for s in dict.fromkeys(streams) if s in known]
        self.period = self.floor if math.isnan(period) else min(max(period, self.floor), _MAX_PERIOD_S)
        self.changed.set()
        return None


async def feed(ws, previews: Previews) -> None:
    """Serve one page's socket until it closes (``ws``: a prepared aiohttp WebSocketResponse)."""
    from aiohttp import WSMsgType

    watch = Watch(previews.interval)
    sender = asyncio.create_task(_send(ws, previews, watch))
    try:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                problem = watch.update(msg.data, previews.streams)
                if problem is not None:
                    log.debug("console preview socket: %s; ignored", problem)
            elif msg.type == WSMsgType.ERROR:
                break
    finally:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)


async def _send(ws, previews: Previews, watch: Watch) -> None:
    sent: dict[str, bytes] = {}  # stream -> the preview this page has now
    while not ws.closed:
        await watch.acked.wait()  # the page has shown the last round
        t0 = time.monotonic()
        watch.changed.clear()
        round_ = []
        for stream in watch.streams:
            if stream not in previews.streams:
                continue
            jpeg = await previews.jpeg(stream, at=t0)  # rounds >= one slot apart: a fresh preview each
            if jpeg is not None and jpeg is not sent.get(stream):
                round_.append((stream, jpeg))
                sent[stream] = jpeg
        if round_:
            watch.acked.clear()
            await ws.send_bytes(pack(round_))
        try:  # the next round, or at once when the page shows other tiles
            await asyncio.wait_for(watch.changed.wait(), max(0.0, watch.period - (time.monotonic() - t0)))
        except TimeoutError:
            pass

"""Console pages as the server sees them, without a browser: for ``benchmarks/bench_console.py``.

Each "page" does what the console's page does on the network (streamer/ops/console/static/app.js):
one Server-Sent Events stream (``/api/updates``) and, for every stream's tile, a preview fetched
again 200 ms after the last one loaded, each tile on a kept-alive connection of its own. It renders
nothing, so it stands in for operators watching from their own machines: what the pipeline's
machine should pay for pages is the server side only. It speaks HTTP/1.1 over plain asyncio streams
(no client library), because it runs on the pipeline's machine all the same and its own load shows
up in the pipeline's numbers: side by side against the same console, 3 pages for 15 s, 1440 previews
took 0.74-0.79 s of CPU this way and 1.53-1.60 s with aiohttp's client.

    python -m benchmarks.page_client URL --pages 3 --seconds 16 --settle 4

Prints one JSON line at the end: updates and previews received after ``--settle``, each tile
update's delay from ``published_ts`` to its arrival here (seconds), and this process's CPU seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from urllib.parse import urlsplit

PREVIEW_PERIOD_S = 0.2  # the page's period with up to 16 tiles


class Connection:
    """One kept-alive HTTP/1.1 connection to the console."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, path: str) -> tuple[int, dict[str, str]]:
        """Send a GET and read the status line and headers (the body is the caller's)."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n\r\n".encode())
        head = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(head[0].split(" ", 2)[1])
        headers = {}
        for line in head[1:]:
            if line:
                key, _, value = line.partition(":")
                headers[key.strip().lower()] = value.strip()
        return status, headers

    async def body(self, headers: dict[str, str]) -> bytes:
        if headers.get("transfer-encoding") == "chunked":
            return b"".join([chunk async for chunk in self.chunks()])
        return await self.reader.readexactly(int(headers.get("content-length", 0)))

    async def chunks(self):
        """The chunks of a chunked body, as they arrive."""
        while True:
            size = int((await self.reader.readline()).strip(), 16)
            if size == 0:
                await self.reader.readline()
                return
            chunk = await self.reader.readexactly(size)
            await self.reader.readexactly(2)
            yield chunk

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def page(host: str, port: int, until: float, settle_at: float, out: dict) -> None:
    streams: set[str] = set()
    previews: dict[str, asyncio.Task] = {}
    shown: dict[str, float] = {}  # stream -> published_ts of the result its tile shows (a status repeats it)

    async def preview(stream: str) -> None:
        conn = Connection(host, port)
        try:
            while time.time() < until:
                t0 = time.monotonic()
                status, headers = await conn.request(f"/api/streams/{stream}/preview.jpg")
                data = await conn.body(headers)
                if time.time() >= settle_at and status == 200 and data:
                    out["previews"] += 1
                await asyncio.sleep(max(0.0, PREVIEW_PERIOD_S - (time.monotonic() - t0)))
        finally:
            conn.close()

    def on_event(kind: str | None, data: dict, arrived: float) -> None:
        tiles = data["streams"] if kind == "snapshot" else [data] if kind == "tile" else []
        for tile in tiles:
            if tile["stream"] not in streams:
                streams.add(tile["stream"])
                previews[tile["stream"]] = asyncio.create_task(preview(tile["stream"]))
        published = data.get("published_ts") if kind == "tile" else None
        if published and shown.get(data["stream"]) != published:  # a new result, as the page counts
            shown[data["stream"]] = published
            if arrived >= settle_at:
                out["updates"] += 1
                out["latencies"].append(arrived - published)

    conn = Connection(host, port)
    try:
        async with asyncio.timeout(until - time.time() + 5.0):  # no update at all: the page still ends
            await updates(conn, until, on_event)
    except TimeoutError:
        pass
    finally:
        conn.close()
        for task in previews.values():
            task.cancel()
        await asyncio.gather(*previews.values(), return_exceptions=True)


async def updates(conn: Connection, until: float, on_event) -> None:
    """Read the page's Server-Sent Events until ``until``, handing each to ``on_event``."""
    status, headers = await conn.request("/api/updates")
    if status != 200:
        raise SystemExit(f"page client: /api/updates answered {status}")
    pending = b""
    async for chunk in conn.chunks():
        arrived = time.time()
        pending += chunk
        *events, pending = pending.split(b"\n\n")
        for event in events:
            kind, data = None, None
            for line in event.decode("utf-8").split("\n"):
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    data = json.loads(line[6:])
            if data is not None:
                on_event(kind, data, arrived)
        if arrived >= until:
            return


async def main_async(url: str, pages: int, seconds: float, settle_s: float) -> dict:
    parts = urlsplit(url)
    out = {"updates": 0, "previews": 0, "latencies": []}
    start = time.time()
    await asyncio.gather(*(page(parts.hostname, parts.port, start + seconds, start + settle_s, out)
                           for _ in range(pages)))
    out["cpu_s"] = time.process_time()
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("url")
    p.add_argument("--pages", type=int, default=3)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--settle", type=float, default=0.0, help="what arrives before this is not counted")
    args = p.parse_args(argv)
    try:  # the stand-in for other machines takes only CPU time nothing else wants
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        pass
    print(json.dumps(asyncio.run(main_async(args.url.rstrip("/"), args.pages, args.seconds, args.settle))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

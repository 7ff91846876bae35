"""Console pages as the server sees them, without a browser: for ``benchmarks/bench_console.py``.

Each "page" does what the console's page does on the network (streamer/ops/console/static/app.js):
one Server-Sent Events stream (``/api/updates``) and one preview WebSocket (``/api/previews``) that
watches every tile (all on screen), 5 previews a second (1 with more than 16 tiles), and acks each
round at once. It renders
nothing, so it stands in for operators watching from their own machines: what the pipeline's
machine should pay for pages is the server side only. It speaks HTTP/1.1 and WebSocket over plain
asyncio streams (no client library), because it runs on the pipeline's machine all the same and its
own load shows up in the pipeline's numbers: side by side against the same console, 3 pages for 15
s, 1440 previews (then one HTTP request each) took 0.74-0.79 s of CPU this way and 1.53-1.60 s with
aiohttp's client.

    python -m benchmarks.page_client URL --pages 3 --seconds 16 --settle 4

Prints one JSON line at the end: updates and previews received after ``--settle``, each tile
update's delay from ``published_ts`` to its arrival here (seconds), and this process's CPU seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import time
from urllib.parse import urlsplit

from streamer.ops.console.previewfeed import unpack


def preview_period(tiles: int) -> float:
    """What the page asks for (app.js ``sendWatch``)."""
    return 1.0 if tiles > 16 else 0.2


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


class Socket(Connection):
    """A WebSocket (RFC 6455) on a connection of its own: text out (masked, as a client must), frames in."""

    async def upgrade(self, path: str) -> None:
        key = base64.b64encode(os.urandom(16)).decode()
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nUpgrade: websocket\r\n"
                          f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                          .encode())
        head = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        if int(head.split(" ", 2)[1]) != 101:
            raise RuntimeError(f"page client: {path} answered {head.splitlines()[0]}")

    def send(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        n = len(payload)
        size = bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big")
        body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))  # control messages: a few bytes
        self.writer.write(bytes([0x80 | opcode]) + size + mask + body)

    async def receive(self) -> tuple[int, bytes]:
        """The next data frame (opcode, payload); pings are answered on the way, a close ends with opcode 8."""
        while True:
            b0, b1 = await self.reader.readexactly(2)
            n = b1 & 0x7F
            if n >= 126:
                n = int.from_bytes(await self.reader.readexactly(2 if n == 126 else 8), "big")
            payload = await self.reader.readexactly(n)  # a server's frames are not masked
            opcode = b0 & 0x0F
            if opcode == 0x9:
                self.send(0xA, payload)
            elif opcode != 0xA:
                return opcode, payload


async def page(host: str, port: int, until: float, settle_at: float, out: dict) -> None:
    streams: list[str] = []
    shown: dict[str, float] = {}  # stream -> published_ts of the result its tile shows (a status repeats it)
    socket = Socket(host, port)

    async def previews() -> None:
        await socket.upgrade("/api/previews")
        watch()
        while True:
            opcode, payload = await socket.receive()
            if opcode == 0x8:
                return
            if opcode == 0x2:
                if time.time() >= settle_at:
                    out["previews"] += sum(1 for _, jpeg in unpack(payload) if jpeg)
                socket.send(0x1, b'{"ack":1}')  # as the page does once it has shown a round

    def watch() -> None:
        if socket.writer is not None:
            socket.send(0x1, json.dumps({"watch": streams, "period_s": preview_period(len(streams))}).encode())

    def on_event(kind: str | None, data: dict, arrived: float) -> None:
        tiles = data["streams"] if kind == "snapshot" else [data] if kind == "tile" else []
        new = [tile["stream"] for tile in tiles if tile["stream"] not in streams]
        if new:
            streams.extend(new)
            watch()
        published = data.get("published_ts") if kind == "tile" else None
        if published and shown.get(data["stream"]) != published:  # a new result, as the page counts
            shown[data["stream"]] = published
            if arrived >= settle_at:
                out["updates"] += 1
                out["latencies"].append(arrived - published)

    conn = Connection(host, port)
    feed = asyncio.create_task(previews())
    try:
        async with asyncio.timeout(until - time.time() + 5.0):  # no update at all: the page still ends
            await updates(conn, until, on_event)
    except TimeoutError:
        pass
    finally:
        conn.close()
        feed.cancel()
        failed = (await asyncio.gather(feed, return_exceptions=True))[0]
        socket.close()
    if isinstance(failed, Exception) and not isinstance(failed, (asyncio.CancelledError, ConnectionError)):
        raise failed


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

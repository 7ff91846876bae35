"""The page's preview socket (/api/previews): only watched tiles, at most preview_fps, shared by pages,
nothing for a frame that did not change, and only to the console's own pages (S10)."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import aiohttp
import cv2
import numpy as np
import pytest

from streamer.config import UiConfig
from streamer.ops.console.previewfeed import unpack
from streamer.ops.console.server import Console

TOKEN = "correct-horse-battery"


@pytest.fixture
def console(request):
    ui = getattr(request, "param", {})
    console = Console(UiConfig(address="127.0.0.1:0", preview_fps=5.0, preview_width=160, **ui), ["cam", "yard"])
    console.start_and_wait()
    yield console
    console.stop()


def socket_url(console: Console) -> str:
    return console.url.replace("http://", "ws://") + "api/previews"


class Feeder(threading.Thread):
    """A camera at 30 fps: each frame's brightness is its index, so a preview says which frame it shows."""

    def __init__(self, console: Console, stream: str) -> None:
        super().__init__(daemon=True)
        self.console, self.stream, self.stop = console, stream, threading.Event()

    def run(self) -> None:
        i = 0
        while not self.stop.wait(1 / 30):
            self.console.on_frame(self.stream, i, time.time(), np.full((480, 640, 3), i % 250, np.uint8))
            i += 1


async def page(url: str, watch: list[str], seconds: float, headers: dict | None = None,
               ack: bool = True) -> list[tuple[str, bytes]]:
    got = []
    async with aiohttp.ClientSession() as session, session.ws_connect(url, headers=headers) as ws:
        await ws.send_str(json.dumps({"watch": watch}))
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                msg = await ws.receive(timeout=left)
            except TimeoutError:
                break
            if msg.type == aiohttp.WSMsgType.BINARY:
                got += unpack(msg.data)
                if ack:
                    await ws.send_str('{"ack": 1}')
    return got


def test_watched_tiles_only_at_most_preview_fps_and_encoded_once_for_all_pages(console):
    feeders = [Feeder(console, "cam"), Feeder(console, "yard")]
    for f in feeders:
        f.start()
    try:
        time.sleep(0.2)
        seconds = 2.0

        async def pages():
            return await asyncio.gather(page(socket_url(console), ["cam"], seconds),
                                        page(socket_url(console), ["cam", "no-such-stream"], seconds))

        first, second = asyncio.run(pages())
    finally:
        for f in feeders:
            f.stop.set()
    for got in (first, second):
        assert {stream for stream, _ in got} == {"cam"}  # the unwatched tile and the unknown id: nothing
        assert 6 <= len(got) <= seconds * 5 + 1, len(got)  # 5 a second, each a new frame
        image = cv2.imdecode(np.frombuffer(got[-1][1], np.uint8), cv2.IMREAD_COLOR)
        assert image.shape[:2] == (120, 160)  # scaled to preview_width
    # Two pages, one encode per slot: not twice the previews they received between them.
    assert console.previews.encoded <= seconds * 5 + 2, console.previews.encoded


def test_a_frame_that_did_not_change_is_sent_once_and_encoded_once(console):
    console.on_frame("cam", 0, time.time(), np.zeros((120, 160, 3), np.uint8))  # then the camera stalls
    got = asyncio.run(page(socket_url(console), ["cam"], 1.5))
    assert [stream for stream, _ in got] == ["cam"]
    assert console.previews.encoded == 1


def test_a_page_elsewhere_cannot_open_the_socket(console):
    async def attempt(origin: str) -> int:
        try:
            await page(socket_url(console), ["cam"], 0.1, {"Origin": origin})
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status
        return 101

    host = console.url.split("//")[1].rstrip("/")
    assert asyncio.run(attempt(f"http://{host}")) == 101
    assert asyncio.run(attempt("http://attacker.example")) == 403
    assert asyncio.run(attempt("null")) == 403


@pytest.mark.parametrize("console", [{"token": TOKEN}], indirect=True)
def test_the_socket_needs_the_token(console):
    async def attempt(headers: dict) -> int:
        try:
            await page(socket_url(console), ["cam"], 0.1, headers)
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status
        return 101

    assert asyncio.run(attempt({})) == 401
    assert asyncio.run(attempt({"Authorization": "Bearer wrong-token-xyz"})) == 401
    assert asyncio.run(attempt({"Authorization": f"Bearer {TOKEN}"})) == 101


def test_a_page_that_does_not_ack_gets_no_backlog(console):
    """The next round waits for the page's ack: a page that has not shown the last one gets nothing more."""
    feeder = Feeder(console, "cam")
    feeder.start()
    try:
        time.sleep(0.2)
        silent = asyncio.run(page(socket_url(console), ["cam", "yard"], 1.5, ack=False))
        acking = asyncio.run(page(socket_url(console), ["cam"], 1.5))
    finally:
        feeder.stop.set()
    assert [stream for stream, _ in silent] == ["cam"]  # one round, then nothing
    assert len(acking) >= 5  # the same feed, acked: a round every 1 / preview_fps


def test_a_round_holds_every_changed_tile():
    from streamer.ops.console.previewfeed import pack

    tiles = [("cam", b"\xff\xd8jpeg-1"), ("yard-é", b""), ("x" * 300, b"\xff\xd8" + bytes(70000))]
    assert unpack(pack(tiles)) == tiles

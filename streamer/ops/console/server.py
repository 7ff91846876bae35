"""The console's web server: one thread, ``console``, owns an asyncio loop and an aiohttp server.

Fed from other threads without ever blocking them: :meth:`Console.on_sent` (publisher thread)
and :meth:`Console.on_clip` (clip writer) put into a bounded inbox (full: dropped and counted) and
wake the loop; :meth:`Console.on_frame` (capture threads) only keeps a reference to the newest raw
frame (R27). Pages get a snapshot, then live updates over Server-Sent Events (``/api/updates``); each page
has a bounded queue, and a page that falls behind gets a fresh snapshot instead of a backlog.
Previews go to each page over one WebSocket (``/api/previews``, :mod:`previewfeed`), encoded only
while a page shows the tile, at most ``ui.preview_fps`` a second per stream however many pages
watch, scaled to ``ui.preview_width``.

Routes: ``/`` the page, ``/static/<file>``, ``/login``, ``/api/state``, ``/api/updates``,
``/api/previews``, ``/api/streams/<id>/preview.jpg`` (one preview, for scripts),
``/clips/<stream>/<event id>.mp4`` (only names the clip writer makes, resolved inside the clip
folder, else 404: S11).
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import re
import threading
from importlib import resources
from pathlib import Path

from model.errors import PublisherError
from streamer.ops.console import auth, previewfeed
from streamer.ops.console.hub import ConsoleState
from streamer.ops.console.preview import Previews
from streamer.config import UiConfig
from streamer.supervisor import join_or_warn

log = logging.getLogger(__name__)

_STATIC = {"app.js": "application/javascript", "style.css": "text/css"}
_CLIP_NAME = re.compile(r"^[A-Za-z0-9_-]+\.mp4$")
_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob:; media-src 'self'; "
                               "frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_RESYNC = ("snapshot", None)
_STOP = ("stop", None)


def _event(kind: str, data: dict) -> bytes:
    """One Server-Sent Event."""
    return f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode("utf-8")


def _page(name: str) -> str:
    return resources.files("streamer.ops.console").joinpath("static", name).read_text(encoding="utf-8")


class Console(threading.Thread):
    def __init__(self, config: UiConfig, streams: list[str], *, clips_root: Path | None = None) -> None:
        super().__init__(name="console", daemon=False)
        self.config = config
        self.streams = list(streams)
        self.clips_root = clips_root.resolve() if clips_root is not None else None
        self.state = ConsoleState(self.streams, max_events=config.events, timeline_s=config.timeline_s)
        self.previews = Previews(self.streams, config.preview_width, config.preview_fps, self.state.tiles)
        self._token = config.token.get_secret_value() if config.token is not None else None
        self._files = {name: _page(name) for name in (*_STATIC, "index.html", "login.html")}
        self._inbox: queue.Queue = queue.Queue(maxsize=10000)
        self._clients: set[asyncio.Queue] = set()
        self._sockets: set = set()  # the pages' preview sockets, closed on stop
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Event | None = None
        self._drain_scheduled = False
        self._stop_requested = threading.Event()
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.url = ""
        self.dropped = 0  # messages the inbox had no room for

    # ---- other threads --------------------------------------------------------------------------
    def on_sent(self, topic: str, payload: dict) -> None:
        self._put(payload)

    def on_clip(self, meta: dict) -> None:
        self._put({"type": "clip", "meta": meta})

    def on_frame(self, stream: str, index: int, wall: float, image) -> None:
        self.previews.frame(stream, wall, image)

    def add_stream(self, stream: str) -> None:
        """A stream added while running: previews from now on (its tile appears with its first status)."""
        self.previews.add(stream)

    def forget(self, stream: str) -> None:
        self.previews.forget(stream)

    def _put(self, item: dict) -> None:
        try:
            self._inbox.put_nowait(item)
        except queue.Full:
            self.dropped += 1
            return
        loop = self._loop
        if loop is not None and not self._drain_scheduled:
            self._drain_scheduled = True
            try:
                loop.call_soon_threadsafe(self._drain)
            except RuntimeError:  # the loop has closed: shutting down
                pass

    # ---- lifecycle ------------------------------------------------------------------------------
    def start_and_wait(self, timeout: float = 10.0) -> None:
        """Start the thread and wait until the server listens; PublisherError if it cannot bind."""
        self.start()
        if not self.ready.wait(timeout) and self.error is None:
            self.error = PublisherError(f"the console did not start within {timeout:.0f} s")
        if self.error is not None:
            self.stop()
            raise self.error

    def request_stop(self) -> None:
        self._stop_requested.set()
        loop, stopped = self._loop, self._stopped
        if loop is not None and stopped is not None:
            try:
                loop.call_soon_threadsafe(stopped.set)
            except RuntimeError:
                pass

    def stop(self, timeout: float = 5.0) -> None:
        self.request_stop()
        join_or_warn(self, timeout)

    def run(self) -> None:
        try:
            asyncio.run(self._serve())
        except Exception as exc:
            if not self.ready.is_set():
                self.error = exc if isinstance(exc, PublisherError) else PublisherError(f"console: {exc}")
            else:
                log.exception("console thread failed; the page is gone, the pipeline carries on")
        finally:
            self.previews.close()

    async def _serve(self) -> None:
        from aiohttp import web

        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        runner = web.AppRunner(self._app(), handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            cfg = self.config
            site = web.TCPSite(runner, cfg.host, cfg.port)
            try:
                await site.start()
            except OSError as exc:
                raise PublisherError(f"cannot serve the console on {cfg.address}: {exc.strerror}; pick a free "
                                     f"address with --ui HOST:PORT, or --ui off") from None
            port = runner.addresses[0][1]
            host = f"[{cfg.host}]" if ":" in cfg.host else cfg.host
            self.url = f"http://{host}:{port}/"
            log.info("console: open %s in a browser%s", self.url, "" if self._token is None else " (token required)")
            self.ready.set()
            if self._stop_requested.is_set():
                return
            self._drain()
            await self._stopped.wait()
        finally:
            self._broadcast(_STOP)
            await asyncio.gather(*(ws.close(code=1001, message=b"console stopping") for ws in list(self._sockets)),
                                 return_exceptions=True)
            await runner.cleanup()

    # ---- the loop -------------------------------------------------------------------------------
    def _drain(self) -> None:
        self._drain_scheduled = False
        while True:
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                return
            if item.get("type") == "clip":
                updates = self.state.clip_done(item["meta"])
            else:
                updates = self.state.apply(item)
            for update in updates:
                self._broadcast(update)

    def _broadcast(self, update: tuple[str, dict | None]) -> None:
        """Queue ``update`` for every page, encoded once however many pages there are (as it is now:
        a tile changes in place)."""
        if not self._clients:
            return
        item = update if update is _STOP or update is _RESYNC else _event(*update)
        for client in list(self._clients):
            try:
                client.put_nowait(item)
            except asyncio.QueueFull:  # a slow page: drop its backlog, send it a snapshot
                while not client.empty():
                    client.get_nowait()
                client.put_nowait(_RESYNC if item is not _STOP else _STOP)

    def _app(self):
        from aiohttp import web

        @web.middleware
        async def guard(request, handler):
            return await self._guard(request, handler)

        app = web.Application(middlewares=[guard], client_max_size=4096)
        app.router.add_get("/", self._index)
        app.router.add_get("/login", self._login_form)
        app.router.add_post("/login", self._login)
        app.router.add_get("/static/{name}", self._static)
        app.router.add_get("/api/state", self._api_state)
        app.router.add_get("/api/updates", self._updates)
        app.router.add_get("/api/previews", self._preview_socket)
        app.router.add_get("/api/streams/{stream}/preview.jpg", self._preview)
        app.router.add_get("/clips/{stream}/{name}", self._clip)
        app.on_response_prepare.append(self._headers)
        return app

    @staticmethod
    async def _headers(request, response) -> None:
        for key, value in _HEADERS.items():
            response.headers.setdefault(key, value)

    # ---- handlers -------------------------------------------------------------------------------
    async def _guard(self, request, handler):
        """Every request passes here first: the token (or, without one, a loopback Host) or 401/403 (S10)."""
        from aiohttp import web

        login = request.path == "/login" and self._token is not None
        if login or auth.request_ok(self._token, request.headers, request.cookies):
            return await handler(request)
        if self._token is None:
            return web.Response(status=403, text="the console answers only to loopback host names\n")
        if request.path == "/" and request.method == "GET":
            return web.Response(status=401, text=self._files["login.html"].replace("{message}", ""),
                                content_type="text/html")
        return web.Response(status=401, text="401: send the console token (Authorization: Bearer ...)\n",
                            headers={"WWW-Authenticate": 'Bearer realm="timesformer-console"'})

    async def _index(self, request):
        from aiohttp import web

        return web.Response(text=self._files["index.html"], content_type="text/html")

    async def _static(self, request):
        from aiohttp import web

        name = request.match_info["name"]
        if name not in _STATIC:
            raise web.HTTPNotFound()
        return web.Response(text=self._files[name], content_type=_STATIC[name])

    async def _login_form(self, request):
        from aiohttp import web

        if self._token is None:
            raise web.HTTPFound("/")
        return web.Response(text=self._files["login.html"].replace("{message}", ""), content_type="text/html")

    async def _login(self, request):
        from aiohttp import web

        if self._token is None:
            raise web.HTTPFound("/")
        form = await request.post()
        if auth.token_ok(self._token, str(form.get("token", ""))):
            response = web.Response(status=303, headers={"Location": "/"})
            response.set_cookie(auth.COOKIE, auth.session_value(self._token), httponly=True, samesite="Strict",
                                path="/")
            return response
        await asyncio.sleep(0.5)  # slows down guessing
        return web.Response(status=401, content_type="text/html",
                            text=self._files["login.html"].replace("{message}", "Wrong token."))

    async def _api_state(self, request):
        from aiohttp import web

        return web.json_response(self.state.snapshot())

    async def _updates(self, request):
        from aiohttp import web

        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "X-Accel-Buffering": "no"})
        await response.prepare(request)
        client: asyncio.Queue = asyncio.Queue(maxsize=256)
        self._clients.add(client)
        try:
            items: list = [_RESYNC]
            while True:
                chunks = [_event("snapshot", self.state.snapshot()) if item is _RESYNC else item
                          for item in items if item is not _STOP]
                stop = any(item is _STOP for item in items)
                if chunks:
                    await response.write(b"".join(chunks))  # what queued meanwhile goes in one write
                if stop:
                    break
                items = [await self._next(client, response)]
                while not client.empty():
                    items.append(client.get_nowait())
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self._clients.discard(client)
        return response

    @staticmethod
    async def _next(client: asyncio.Queue, response):
        """The page's next update; a comment every 15 s meanwhile keeps proxies from closing the stream."""
        while True:
            try:
                return await asyncio.wait_for(client.get(), 15.0)
            except asyncio.TimeoutError:
                await response.write(b": keep-alive\n\n")

    async def _preview_socket(self, request):
        """The page's preview feed; only from a page this console served (a WebSocket is not bound by
        the browser's same-origin rules, so a page elsewhere could otherwise open one to loopback)."""
        from aiohttp import web

        if not auth.same_origin(request.headers):
            return web.Response(status=403, text="the preview socket answers only to the console's own pages\n")
        ws = web.WebSocketResponse(max_msg_size=previewfeed.MAX_CONTROL_BYTES, heartbeat=30.0)
        await ws.prepare(request)
        self._sockets.add(ws)
        try:
            await previewfeed.feed(ws, self.previews)
        finally:
            self._sockets.discard(ws)
        return ws

    async def _preview(self, request):
        from aiohttp import web

        stream = request.match_info["stream"]
        if stream not in self.previews.streams:
            raise web.HTTPNotFound()
        jpeg = await self.previews.jpeg(stream)
        if jpeg is None:
            return web.Response(status=204)
        return web.Response(body=jpeg, content_type="image/jpeg")

    async def _clip(self, request):
        from aiohttp import web

        path = self.clip_path(request.match_info["stream"], request.match_info["name"])
        if path is None:
            raise web.HTTPNotFound()
        return web.FileResponse(path, headers={"Content-Type": "video/mp4"})

    def clip_path(self, stream: str, name: str) -> Path | None:
        """The clip file a URL names, only if it is a finished clip inside the clip folder (S11)."""
        root = self.clips_root
        if root is None or stream not in self.previews.streams or not _CLIP_NAME.match(name):
            return None
        path = (root / stream / name).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            return None
        return path

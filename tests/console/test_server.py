"""The console's HTTP side without a pipeline: token (S10), clip paths (S11), no credentials, previews on demand.

A :class:`Console` runs on a free loopback port (port 0, read back) and is fed messages as the
publisher would; requests go out through ``http.client`` so paths reach the server exactly as written.
"""

from __future__ import annotations

import http.client
import json
import time

import numpy as np
import pytest

from streamer.ops.console.server import Console
from streamer.config import UiConfig

TOKEN = "correct-horse-battery"


def status(stream: str, **extra) -> dict:
    return {"type": "status", "version": 1, "stream": stream, "source": "rtsp://admin:hunter2@10.0.0.5/live",
            "state": "backoff", "reason": "could not open rtsp://admin:hunter2@10.0.0.5/live; retry 1 in 0.5 s",
            "state_since": 0.0, "fps": 0.0, "published_ts": time.time(),
            "counters": {"frames": 0, "windows": 0, "results": 0, "drops": {"stale": 2}, "decode_errors": 0,
                         "reconnects": 1}, **extra}


@pytest.fixture
def clip_dir(tmp_path):
    root = tmp_path / "clips"
    (root / "cam").mkdir(parents=True)
    (root / "cam" / "run-cam-1.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 fake clip")
    (tmp_path / "secret.mp4").write_bytes(b"outside the clip dir")
    (tmp_path / "config.yaml").write_text("ui: {token: nope}\n")
    return root


def serve(clip_dir, **ui) -> Console:
    console = Console(UiConfig(address="127.0.0.1:0", **ui), ["cam"], clips_root=clip_dir)
    console.start_and_wait()
    return console


def get(console: Console, path: str, headers: dict | None = None, method: str = "GET", body: str | None = None):
    host, port = console.url.split("//")[1].rstrip("/").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def wait_for(predicate, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    return None


def test_token_required_bearer_or_login_cookie(clip_dir):
    console = serve(clip_dir, token=TOKEN)
    try:
        for path in ("/", "/api/state", "/api/updates", "/static/app.js", "/clips/cam/run-cam-1.mp4",
                     "/api/streams/cam/preview.jpg"):
            assert get(console, path)[0] == 401, path  # no token
            assert get(console, path, {"Authorization": "Bearer wrong-token-xyz"})[0] == 401, path
            assert get(console, path, {"Cookie": "tfs_session=" + TOKEN})[0] == 401, path  # the token is not the cookie
        status_code, _, body = get(console, "/api/state", {"Authorization": f"Bearer {TOKEN}"})
        assert status_code == 200 and json.loads(body)["streams"][0]["stream"] == "cam"
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        assert get(console, "/login", form, "POST", "token=wrong-token-xyz")[0] == 401
        code, headers, _ = get(console, "/login", form, "POST", f"token={TOKEN}")
        assert code == 303
        cookie = headers["Set-Cookie"].split(";", 1)[0]
        assert TOKEN not in cookie and "HttpOnly" in headers["Set-Cookie"]
        assert get(console, "/", {"Cookie": cookie})[0] == 200
        assert get(console, "/clips/cam/run-cam-1.mp4", {"Cookie": cookie})[0] == 200
    finally:
        console.stop()
    assert not console.is_alive()


@pytest.mark.parametrize("path", [
    "/clips/cam/../../secret.mp4",
    "/clips/cam/%2e%2e/%2e%2e/secret.mp4",
    "/clips/cam/..%2f..%2fsecret.mp4",
    "/clips/cam/%2e%2e%2f%2e%2e%2fconfig.yaml",
    "/clips/..%2fsecret.mp4/x.mp4",
    "/clips/cam//etc/passwd",
    "/clips/cam/%2fetc%2fpasswd",
    "/clips//tmp/secret.mp4",
    "/clips/%2e%2e/secret.mp4",
    "/clips/cam/run-cam-1.json",
    "/clips/other/run-cam-1.mp4",
    "/clips/cam/.run-cam-1.mp4.part",
])
def test_clip_paths_cannot_leave_the_clip_dir(clip_dir, path):
    console = serve(clip_dir)
    try:
        assert get(console, "/clips/cam/run-cam-1.mp4")[0] == 200
        code, _, body = get(console, path)
        assert code == 404, (path, code)
        assert b"outside the clip dir" not in body and b"nope" not in body
    finally:
        console.stop()


def test_no_stream_credentials_in_the_page_or_its_api(clip_dir):
    console = serve(clip_dir)
    try:
        console.on_sent("status.cam", status("cam", warnings=["webhook http://bob:pw123@hooks.example/x: HTTP 503"]))
        assert wait_for(lambda: console.state.tiles["cam"]["state"] == "backoff")
        _, _, state = get(console, "/api/state")
        _, _, page = get(console, "/")
        for body in (state, page):
            assert b"hunter2" not in body and b"admin:" not in body and b"pw123" not in body
        tile = json.loads(state)["streams"][0]
        assert tile["source"] == "rtsp://***@10.0.0.5/live" and tile["drops"] == 2
    finally:
        console.stop()


def test_loopback_console_without_token_refuses_foreign_host_names(clip_dir):
    console = serve(clip_dir)
    try:
        assert get(console, "/api/state", {"Host": "localhost:8080"})[0] == 200
        assert get(console, "/api/state", {"Host": "attacker.example:8080"})[0] == 403  # DNS rebinding
    finally:
        console.stop()


def test_preview_encoded_only_when_asked_and_at_most_preview_fps(clip_dir):
    console = serve(clip_dir, preview_fps=2.0, preview_width=160)
    try:
        assert get(console, "/api/streams/cam/preview.jpg")[0] == 204  # no frame yet
        frame = np.zeros((480, 640, 3), np.uint8)
        for i in range(50):
            console.on_frame("cam", i, time.time(), frame)
        assert console.previews.encoded == 0  # frames arrive; nobody watches: nothing encoded
        code, headers, jpeg = get(console, "/api/streams/cam/preview.jpg")
        assert code == 200 and headers["Content-Type"] == "image/jpeg"
        import cv2

        image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert image.shape[:2] == (120, 160)  # scaled to preview_width
        for _ in range(5):  # within one interval, every request gets the same bytes
            assert get(console, "/api/streams/cam/preview.jpg")[2] == jpeg
        assert console.previews.encoded == 1
        assert get(console, "/api/streams/nope/preview.jpg")[0] == 404
    finally:
        console.stop()


def test_updates_stream_snapshot_then_live_tiles_and_clip_buttons(clip_dir):
    console = serve(clip_dir)
    host, port = console.url.split("//")[1].rstrip("/").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", "/api/updates")
        stream = conn.getresponse()
        assert stream.status == 200 and stream.getheader("Content-Type").startswith("text/event-stream")

        def next_update() -> tuple[str, dict]:
            kind = data = None
            while True:
                line = stream.fp.readline().decode().rstrip("\n")
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    data = json.loads(line[6:])
                elif line == "" and kind:
                    return kind, data

        assert next_update()[0] == "snapshot"
        result = {"type": "result", "stream": "cam", "seq": 7, "top_k": [{"label": "wave", "score": 0.9}],
                  "window": {}, "latency_ms": {"capture_to_publish": 12.0}, "published_ts": time.time()}
        console.on_sent("result.cam", result)
        kind, tile = next_update()
        assert kind == "tile" and tile["top"][0]["label"] == "wave" and tile["p50_ms"] == 12.0
        event = {"type": "event", "stream": "cam", "id": "run-cam-1", "phase": "end", "label": "wave",
                 "start_ts": 1.0, "end_ts": 2.0, "duration_s": 1.0, "peak_score": 0.9, "clip": "cam/run-cam-1.mp4"}
        console.on_sent("event.cam", event)
        kind, entry = next_update()
        assert kind == "event" and entry["clip"] is None and entry["clip_pending"]
        console.on_clip({"id": "run-cam-1", "clip": "cam/run-cam-1.mp4", "complete": True})
        kind, entry = next_update()
        assert kind == "event" and entry["clip"] == "/clips/cam/run-cam-1.mp4"
    finally:
        conn.close()
        console.stop()
    assert not console.is_alive()


def test_busy_port_fails_start_with_one_line(clip_dir):
    first = serve(clip_dir)
    try:
        port = first.url.rstrip("/").rsplit(":", 1)[1]
        second = Console(UiConfig(address=f"127.0.0.1:{port}"), ["cam"])
        with pytest.raises(Exception) as info:
            second.start_and_wait()
        assert "cannot serve the console" in str(info.value) and "\n" not in str(info.value)
        assert not second.is_alive()
    finally:
        first.stop()

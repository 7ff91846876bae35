"""RTSP credentials never appear in logs, status messages or errors (S6): a canary password, usernames
with a dot, through every path a URL takes (running, refused, black hole, config errors, tracebacks)."""

from __future__ import annotations

import logging
import sys

import pytest

import feeds
import run_stream
from streamer.redact import RedactingFormatter, redact

CANARY = "C4nary-pw"


@pytest.mark.parametrize("url", [
    f"rtsp://first.last:{CANARY}@127.0.0.1:8554/live",
    f"rtsp://first.last:{CANARY}@ss@127.0.0.1/live",  # "@" inside the password
    f"rtsp://a.b.c:{CANARY}/x@127.0.0.1/live",  # "/" inside the password
    f"rtsps://svc.account@example:{CANARY}@127.0.0.1:322/s?channel=1",
    f"http://127.0.0.1/cam.mjpg?user=admin&password={CANARY}",
    f"error: could not open 'rtsp://j.doe:{CANARY}@127.0.0.1/x'; retry",
])
def test_redact_hides_the_canary(url):
    shown = redact(url)
    assert CANARY not in shown and "***" in shown
    assert "127.0.0.1" in shown  # still says where


def test_log_formatter_redacts_messages_arguments_and_tracebacks():
    fmt = RedactingFormatter("%(levelname)s %(message)s")
    url = f"rtsp://first.last:{CANARY}@127.0.0.1/live"
    try:
        raise RuntimeError(f"backend failed on {url}")
    except RuntimeError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "opening %s", (url,), sys.exc_info())
    text = fmt.format(record)
    assert CANARY not in text and text.count("rtsp://***@127.0.0.1/live") == 2


@pytest.mark.rtsp
@pytest.mark.timeout(90)
def test_canary_password_never_leaks_from_a_running_pipeline(tiny_model, rtsp_ready, bikes_mp4, tmp_path):
    address = feeds.free_tcp_address()
    with feeds.RtspServer(bikes_mp4, tmp_path) as server, feeds.BlackHole() as hole:
        server.start()
        port = server.port
        sources = [  # the server ignores credentials; the pipeline must still never show them
            {"id": "good", "url": f"rtsp://first.last:{CANARY}@127.0.0.1:{port}/live"},
            {"id": "refused", "url": f"rtsp://admin.user:{CANARY}@ss@127.0.0.1:{feeds.free_port()}/x"},
            {"id": "hole", "url": f"rtsp://j.doe:{CANARY}@127.0.0.1:{hole.port}/y"},
        ]
        cfg = feeds.write_config(tmp_path / "c.yaml", sources,
                                 options="open_timeout_s: 2, read_timeout_s: 2, backoff_initial_s: 0.2, backoff_max_s: 1")
        with feeds.Recorder(address, tmp_path / "m.jsonl") as rec, \
                feeds.Pipeline(["--config", str(cfg), "--model", str(tiny_model), "--publish", address,
                                "--log-level", "DEBUG"], tmp_path / "run.log") as pipe:
            assert feeds.wait_until(lambda: len(rec.results("good")) >= 3, 40), pipe.stderr()[-2000:]
            assert feeds.wait_until(lambda: (s := rec.latest_status("hole")) and s["counters"]["reconnects"] >= 1, 15)
            server.kill()  # the good stream now goes through backoff too, with its URL in the reason
            assert feeds.wait_until(lambda: rec.latest_status("good")["state"] in ("stalled", "backoff"), 10)
            assert pipe.terminate(10) == 0
        wire = (tmp_path / "m.jsonl").read_text()
        log = pipe.stderr()
    assert CANARY not in log and CANARY not in wire
    assert f"rtsp://***@127.0.0.1:{port}/live" in wire  # the status names the source, without credentials
    assert "rtsp://***@127.0.0.1" in log and "backoff" in log


def test_canary_never_in_config_errors(capsys):
    for argv in (["--source", f"cam=rtps://first.last:{CANARY}@127.0.0.1/live"],  # unknown scheme
                 ["--source", f"rtsp://first.last:{CANARY}@127.0.0.1/live", "--mode", "file"],  # mode not possible
                 ["--source", f"cam=rtsp://first.last:{CANARY}@127.0.0.1/live", "--publish", "udp://x"]):
        assert run_stream.main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and CANARY not in err

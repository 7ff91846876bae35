"""A camera that does not exist is a one-line error at start, and native OpenCV/FFmpeg output goes
through our log once per cause instead of raw onto stderr on every retry. No camera needed: the
machine's /dev is replaced by a folder where a test needs cameras to exist."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

import feeds
from model.errors import SourceError
from streamer.config import SourceConfig
from streamer.sources.cameras import available_cameras, camera_device, check_camera_exists
from streamer.sources.nativelog import NativeLogCapture, cause_of
from streamer.sources.table import check_available, plan_source

NO_VIDEO7 = pytest.mark.skipif(Path("/dev/video7").exists(), reason="this machine has a /dev/video7")


@pytest.fixture
def dev(tmp_path) -> Path:
    """A /dev with cameras 0, 2 and 10 (and things that are not cameras)."""
    for name in ("video0", "video2", "video10", "videodev", "null"):
        (tmp_path / name).touch()
    return tmp_path


def test_camera_urls_name_devices():
    assert camera_device("3") == "/dev/video3" and camera_device("/dev/video1") == "/dev/video1"
    assert camera_device("rtsp://h/x") is None and camera_device("clip.mp4") is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="cameras are device files on Linux only")
def test_a_missing_camera_is_one_line_naming_the_cameras_that_exist(dev):
    assert available_cameras(dev) == [str(dev / "video0"), str(dev / "video2"), str(dev / "video10")]
    check_camera_exists("cam", "2", dev)  # there: no error
    check_camera_exists("cam", "/dev/video10", dev)
    check_camera_exists("cam", "rtsp://h/x", dev)  # not a camera: not checked here
    with pytest.raises(SourceError) as info:
        check_camera_exists("cam", "7", dev)
    message = str(info.value)
    assert "\n" not in message and "source 'cam': camera 7 (/dev/video7) does not exist" in message
    assert message.endswith(f"cameras on this machine: {dev}/video0, {dev}/video2, {dev}/video10")


@NO_VIDEO7
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="cameras are device files on Linux only")
def test_a_planned_missing_camera_is_not_available():
    plan = plan_source(SourceConfig(id="c", url="7"))  # the config is fine ...
    with pytest.raises(SourceError, match=r"camera 7 \(/dev/video7\) does not exist"):
        check_available(plan)  # ... the camera is not there


@NO_VIDEO7
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="cameras are device files on Linux only")
@pytest.mark.timeout(120)
def test_run_stream_with_a_missing_camera_exits_1_with_one_line(tmp_path):
    log = tmp_path / "err.txt"
    with open(log, "w") as err:
        code = subprocess.run(feeds.run_stream_argv("--source", "7"), cwd=feeds.REPO, env=feeds.ENV,
                              stdout=subprocess.DEVNULL, stderr=err, timeout=100).returncode
    lines = log.read_text().splitlines()
    assert code == 1
    assert len(lines) == 1 and lines[0].startswith("error: source 's0': camera 7 (/dev/video7) does not exist;"), lines


def test_cause_ignores_what_changes_between_retries():
    a = "[tcp @ 0x7fd494045ec0] Connection to tcp://127.0.0.1:41234?timeout=0 failed: Connection refused"
    b = "[tcp @ 0x55d0aa12c0c0] Connection to tcp://127.0.0.1:41234?timeout=0 failed: Connection refused"
    assert cause_of(a) == cause_of(b)
    assert cause_of("[ WARN:0@0.019] can't open camera by index") == cause_of("[ WARN:1@3.700] can't open camera by index")
    assert cause_of(a) != cause_of("[rtsp @ 0x1] method DESCRIBE failed: 404 Not Found")


def test_native_lines_are_logged_once_per_cause_then_at_debug(tmp_path, caplog):
    target = tmp_path / "stderr.txt"
    fd = os.open(target, os.O_WRONLY | os.O_CREAT)
    caplog.set_level(logging.DEBUG, logger="streamer.sources.nativelog")
    try:
        capture = NativeLogCapture(fd).start()
        for port in (5001, 5002, 5003):  # what FFmpeg writes on each retry, straight to the fd
            os.write(fd, f"[tcp @ 0x{port:x}] Connection to tcp://admin:pw@h:{port} failed\n".encode())
        os.write(fd, b"\n[ WARN:0@1.5] global cap_v4l.cpp:914 can't open camera by index\n")
        capture.stop()
        os.write(fd, b"after\n")  # the fd is itself again
    finally:
        os.close(fd)
    records = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "streamer.sources.nativelog"]
    assert records[0] == ("WARNING", "native: [tcp @ 0x1389] Connection to tcp://***@h:5001 failed")  # redacted (S6)
    assert [level for level, _ in records] == ["WARNING", "DEBUG", "DEBUG", "WARNING"]
    assert capture.lines == 4 and target.read_text() == "after\n"


@pytest.mark.timeout(120)
def test_retries_of_a_refused_source_print_the_native_line_once(tmp_path):
    cfg = feeds.write_config(tmp_path / "run.yaml", [{"id": "cam", "url": feeds.refused_url()}],
                             options="open_timeout_s: 2, read_timeout_s: 2, backoff_initial_s: 0.05, backoff_max_s: 0.1")
    log = tmp_path / "err.txt"
    with open(log, "w") as err:
        code = subprocess.run(feeds.run_stream_argv("--config", str(cfg), "--duration", "4", "--publish",
                                                    feeds.free_tcp_address()),
                              cwd=feeds.REPO, env=feeds.ENV, stdout=subprocess.DEVNULL, stderr=err, timeout=100).returncode
    text = log.read_text()
    assert code == 0, text[-2000:]
    assert text.count("] connecting") >= 4  # several retries ...
    refused = [line for line in text.splitlines() if "Connection refused" in line]
    assert len(refused) == 1, refused  # ... one native line, through our log
    assert " WARNING streamer.sources.nativelog: native: [tcp @ " in refused[0]

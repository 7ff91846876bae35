"""sd_notify without a dependency: datagrams on $NOTIFY_SOCKET (path or abstract), watchdog pings."""

from __future__ import annotations

import os
import socket
import uuid

import pytest

from streamer.control.sdnotify import Notifier


@pytest.fixture(params=["path", "abstract"])
def listener(request, tmp_path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if request.param == "path":
        address = str(tmp_path / "notify")
        sock.bind(address)
    else:
        name = f"timesformer-test-{uuid.uuid4().hex}"
        sock.bind("\0" + name)
        address = "@" + name
    sock.settimeout(5)
    yield address, sock
    sock.close()


def test_ready_reloading_stopping_reach_systemd(listener):
    address, sock = listener
    notifier = Notifier({"NOTIFY_SOCKET": address})
    assert notifier.active
    assert notifier.ready("4 streams")
    assert sock.recv(4096) == b"READY=1\nSTATUS=4 streams"
    assert notifier.reloading()
    lines = sock.recv(4096).decode().split("\n")
    assert lines[0] == "RELOADING=1" and lines[1].startswith("MONOTONIC_USEC=") and int(lines[1].split("=")[1]) > 0
    assert notifier.stopping()
    assert sock.recv(4096) == b"STOPPING=1"


def test_watchdog_pings_every_half_period(listener):
    address, sock = listener
    notifier = Notifier({"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())})
    assert notifier.watchdog_s == 2.0
    sent = []
    sock.setblocking(False)
    for now in (100.0, 100.5, 100.99, 101.0, 101.5, 102.1):
        notifier.tick(now)
        try:
            sent.append((now, sock.recv(64)))
        except BlockingIOError:
            pass
    assert sent == [(100.0, b"WATCHDOG=1"), (101.0, b"WATCHDOG=1"), (102.1, b"WATCHDOG=1")]


def test_outside_systemd_nothing_is_sent():
    notifier = Notifier({})
    assert not notifier.active and notifier.ready() is False
    notifier.tick(0.0)
    assert Notifier({"NOTIFY_SOCKET": "vsock:2:1234"}).active is False  # not supported: nothing sent
    # a watchdog meant for another process (WATCHDOG_PID) is not ours to ping
    assert Notifier({"WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"}).watchdog_s is None


def test_a_gone_socket_warns_once(tmp_path, caplog):
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert notifier.ready() is False and notifier.stopping() is False
    assert [r.getMessage() for r in caplog.records if "NOTIFY_SOCKET" in r.getMessage()] == [
        "cannot notify systemd on NOTIFY_SOCKET: No such file or directory"]

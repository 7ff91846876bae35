"""The control socket and its client: round trips, bad frames, oversize requests, timeouts, CURVE, S10."""

from __future__ import annotations

import functools
import json
import threading
import time

import pytest
import zmq

import feeds
from model.errors import ConfigError, ControlError, PublisherError
from streamer.control import Client, requests
from streamer.control.server import ControlServer
from streamer.outputs import security

pytestmark = pytest.mark.timeout(60)


def test_every_operation_round_trips(server, service, zmq_context, reply_fields):
    with Client(server.endpoint, context=zmq_context) as ctl:
        added = ctl.add({"id": "door", "url": "rtsp://u:p@10.0.0.5/live", "options": {"open_timeout_s": 2}})
        assert reply_fields(added) == {
            "ok": True, "op": "add", "version": 1, "id": "door", "session": "00000001", "state": "connecting"}
        assert service.sources["door"].options.open_timeout_s == 2.0
        assert [s["id"] for s in ctl.list()] == ["door"]
        assert ctl.list()[0]["url"] == "rtsp://***@10.0.0.5/live"
        assert ctl.update({"id": "door", "url": "1"})["session"] == "00000002"
        assert reply_fields(ctl.health()) == {"ok": True, "op": "health", "version": 1, "healthy": False, "streams": 1,
                                "problems": ["door: connecting"]}
        service.config_sources = [service.sources["door"]]
        assert ctl.reload()["unchanged"] == 1
        assert ctl.remove("door")["id"] == "door"
        with pytest.raises(ControlError, match=r"^no stream 'door'; running: none$"):
            ctl.remove("door")
        assert ctl.call({"op": "remove", "id": "door"})["ok"] is False  # call() returns refusals as they came
    assert feeds.wait_until(lambda: server.served == 9, 5)  # counted just after each send


def test_a_refused_request_changes_nothing(server, service, zmq_context):
    with Client(server.endpoint, context=zmq_context) as ctl:
        for i in range(4):
            ctl.add({"id": f"c{i}", "url": str(i)})
        with pytest.raises(ControlError, match="run.max_sources is 4"):
            ctl.add({"id": "c4", "url": "4"})
        service.shutting_down = True
        with pytest.raises(ControlError, match="shutting down"):
            ctl.remove("c0")
        assert list(service.sources) == ["c0", "c1", "c2", "c3"]


def test_frames_that_are_not_one_request_get_an_error_and_the_server_carries_on(server, zmq_context, reply_fields):
    dealer = zmq_context.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(server.endpoint)
    dealer.send_multipart([b"", b"{\"op\": \"list\"}", b"extra"])
    assert dealer.poll(5000)
    frames = dealer.recv_multipart()
    assert frames[0] == b"" and json.loads(frames[1])["error"] == "request: send one JSON object in one frame"
    dealer.send_multipart([b"{\"op\": \"list\"}"])  # a DEALER without the empty delimiter is answered too
    assert dealer.poll(5000)
    assert reply_fields(json.loads(dealer.recv_multipart()[0])) == {"ok": True, "op": "list", "version": 1,
                                                                     "sources": []}
    dealer.close()
    assert server.malformed == 1  # counted before the reply went out


def test_an_oversize_request_gets_nothing_and_others_are_served(service, zmq_context):
    srv = ControlServer("tcp://127.0.0.1:*", functools.partial(requests.handle, service), zmq_context,
                        max_request_bytes=1024)
    srv.start_and_wait()
    try:
        with Client(srv.endpoint, context=zmq_context, timeout=1.0) as big:
            with pytest.raises(ControlError, match="no reply from"):
                big.call({"op": "add", "source": {"id": "x", "url": "y" * 5000}})
        with Client(srv.endpoint, context=zmq_context) as ctl:
            assert ctl.list() == []
        assert service.calls == ["list"] and srv.is_alive()
    finally:
        srv.stop()


def test_no_reply_is_a_timeout_and_the_client_recovers(service, zmq_context):
    address = feeds.free_tcp_address()
    with Client(address, context=zmq_context, timeout=0.3) as ctl:
        start = time.monotonic()
        with pytest.raises(ControlError, match=r"no reply from tcp://127\.0\.0\.1:\d+ within 0\.3 s"):
            ctl.list()
        assert time.monotonic() - start < 2.0
        srv = ControlServer(address, functools.partial(requests.handle, service), zmq_context)
        srv.start_and_wait()
        try:
            ctl.timeout = 5.0
            assert ctl.list() == []  # a fresh socket: the REQ that got no reply was dropped
        finally:
            srv.stop()


def test_a_reply_that_is_not_a_control_reply_is_an_error(zmq_context):
    rep = zmq_context.socket(zmq.REP)
    port = rep.bind_to_random_port("tcp://127.0.0.1")

    def answer() -> None:
        if rep.poll(5000):
            rep.recv()
            rep.send(b"[1, 2]")

    t = threading.Thread(target=answer, name="not-a-control-socket")
    t.start()
    try:
        with Client(f"tcp://127.0.0.1:{port}", context=zmq_context) as ctl:
            with pytest.raises(ControlError, match="is not a control reply; is that address a control socket"):
                ctl.list()
    finally:
        t.join(10)
        rep.close(linger=0)


def test_a_busy_address_is_a_one_line_error(server, service, zmq_context):
    other = ControlServer(server.endpoint, functools.partial(requests.handle, service), zmq_context)
    with pytest.raises(PublisherError, match=r"cannot bind the control socket to tcp://127\.0\.0\.1:\d+: .*--control"):
        other.start_and_wait()
    other.join(5)
    assert not other.is_alive()


@pytest.mark.parametrize("address", ["tcp://0.0.0.0:5557", "tcp://*:5557", "tcp://10.1.2.3:5557"])
def test_an_address_others_can_reach_is_refused_without_curve(address, service, zmq_context):
    with pytest.raises(ConfigError, match=r"^control\.address: .* can be reached from other machines.*CURVE"):
        ControlServer(address, functools.partial(requests.handle, service), zmq_context)


def test_curve_admits_only_allowed_clients(tmp_path, service, zmq_context, monkeypatch):
    security.generate_keypair(tmp_path / "server", "server")
    security.generate_keypair(tmp_path / "clients", "alice")
    security.generate_keypair(tmp_path / "others", "mallory")
    curve = security.CurveServer(zmq_context, tmp_path / "server" / "server.key_secret", tmp_path / "clients").start()
    # bound on loopback for the test; the server is told the address is reachable, as 0.0.0.0 would be
    monkeypatch.setattr("streamer.control.server.is_loopback", lambda address: False)
    srv = ControlServer("tcp://127.0.0.1:*", functools.partial(requests.handle, service), zmq_context,
                        secure=curve.secure)
    srv.start_and_wait()
    try:
        alice = security.client_options(tmp_path / "server" / "server.key", tmp_path / "clients" / "alice.key_secret")
        mallory = security.client_options(tmp_path / "server" / "server.key",
                                          tmp_path / "others" / "mallory.key_secret")
        with Client(srv.endpoint, context=zmq_context, curve=alice) as ctl:
            assert ctl.add({"id": "door", "url": "0"})["id"] == "door"
        for options in (mallory, None):
            with Client(srv.endpoint, context=zmq_context, curve=options, timeout=1.0) as ctl:
                with pytest.raises(ControlError, match="no reply"):
                    ctl.remove("door")
        assert list(service.sources) == ["door"] and service.calls == ["add"]
    finally:
        srv.stop()
        curve.stop()

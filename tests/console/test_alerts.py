"""Alerts: webhooks against local HTTP servers (one that fails first, one that hangs) and MQTT against a
local mosquitto the test starts. Each sender runs behind a real :class:`Publisher`, as in the pipeline."""

from __future__ import annotations

import json
import logging
import os
import pwd
import shutil
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import feeds
import pytest

from streamer.config import MqttAlert, PublisherConfig, WebhookAlert
from streamer.configfile import build_config
from streamer.configlayers import expand_env
from streamer.core.stats import StatsRegistry
from streamer.ops.alerts import Alerts, MqttSender, Outbox, WebhookSender
from streamer.outputs import protocol
from streamer.outputs.publisher import Publisher


def event(i: int, phase: str = "start", stream: str = "cam", label: str = "wave") -> dict:
    return {"type": "event", "version": 1, "stream": stream, "id": f"run-{stream}-{i}", "phase": phase,
            "label": label, "start_ts": 1.0, "start_frame": 0, "end_ts": None, "end_frame": None,
            "duration_s": 0.0, "peak_score": 0.9, "published_ts": None}


class Receiver:
    """A local HTTP server: answers 503 to the first ``fail_first`` POSTs, hangs while ``hang`` is set."""

    def __init__(self, fail_first: int = 0, hang: bool = False) -> None:
        self.fail_first, self.accepted, self.requests, self.auth = fail_first, [], 0, None
        self.hang = threading.Event()
        if hang:
            self.hang.set()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests += 1
                while outer.hang.is_set():
                    time.sleep(0.05)
                if outer.requests <= outer.fail_first:
                    self.send_response(503)
                    self.end_headers()
                    return
                outer.auth = self.headers.get("Authorization")
                outer.accepted.append((self.headers["X-Event-Id"], self.headers["X-Event-Phase"], body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://hook:s3cret@127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, name="test-receiver")
        self.thread.start()

    def close(self) -> None:
        self.hang.clear()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def publisher_with(listener, stats: StatsRegistry) -> tuple[Publisher, threading.Event]:
    stop = threading.Event()
    pub = Publisher(PublisherConfig(address=feeds.free_tcp_address(), heartbeat_s=60.0, queue_size=10000), stats)
    pub.listeners.append(listener)
    pub.start(stop)
    return pub, stop


def test_outbox_drops_oldest_and_counts():
    box = Outbox(2)
    assert box.put(1) is None and box.put(2) is None
    assert box.put(3) == 1 and box.dropped == 1
    assert [box.get(0), box.get(0), box.get(0)] == [2, 3, None]


def test_webhook_retries_until_the_receiver_recovers_every_event_once(caplog):
    receiver = Receiver(fail_first=3)
    stats = StatsRegistry()
    stats.add("cam", "testpattern://")
    sender = WebhookSender(WebhookAlert(kind="webhook", url=receiver.url, backoff_initial_s=0.05,
                                        backoff_max_s=0.2, classes=("wave",)), stats)
    pub, stop = publisher_with(sender.on_sent, stats)
    sender.start()
    caplog.set_level(logging.INFO)
    try:
        for i in range(10):
            pub.publish("event.cam", event(i))
            pub.publish("event.cam", event(100 + i, label="jump"))  # a class not asked for
            pub.publish("event.cam", {**event(i), "phase": "update"})  # a phase not asked for
        assert feeds.wait_until(lambda: len(receiver.accepted) >= 10, timeout=30)
        assert feeds.wait_until(lambda: sender.delivered == 10, timeout=5)
    finally:
        sender.stop()
        pub.stop()
        receiver.close()
    ids = [(eid, phase) for eid, phase, _ in receiver.accepted]
    assert ids == [(f"run-cam-{i}", "start") for i in range(10)]  # in order, each accepted once
    assert [body["id"] for _, _, body in receiver.accepted] == [eid for eid, _ in ids]
    assert receiver.requests == 13  # three 503s, then one request per event
    assert receiver.auth == "Basic aG9vazpzM2NyZXQ="  # hook:s3cret from the URL
    assert not stats["cam"].snapshot()["warnings"]  # recovered: the warning is gone
    assert "s3cret" not in caplog.text and "HTTP 503" in caplog.text


def test_hanging_webhook_never_delays_the_publisher():
    receiver = Receiver(hang=True)
    stats = StatsRegistry()
    cam = stats.add("cam", "testpattern://")
    sender = WebhookSender(WebhookAlert(kind="webhook", url=receiver.url, timeout_s=30.0, queue_size=20), stats)
    pub, stop = publisher_with(sender.on_sent, stats)
    sender.start()
    try:
        n = 300
        for i in range(n):
            pub.publish("event.cam", event(i))
            msg = protocol.result_message(stream="cam", session="s", seq=i, frame_indices=[i], frame_ts=[time.time()],
                                          top_k=[{"label": "wave", "score": 0.9}], model={}, inference_ms=1.0,
                                          age_ms=1.0, batch_size=1)
            pub.publish("result.cam", msg, capture_mono=time.monotonic(), stats=cam)
        assert feeds.wait_until(lambda: pub.sent >= 2 * n, timeout=20), pub.sent  # (plus heartbeat statuses)
        assert receiver.requests == 1 and sender.delivered == 0  # the sender is stuck in its first request
        # a publisher waiting on the hanging request would show ~30 s here; it never waited at all
        assert max(cam.latency_ms) < 1000.0, max(cam.latency_ms)
        assert sender.outbox.dropped == n - 1 - 20  # one in flight, 20 queued, the oldest others dropped
        assert "dropped (queue full)" in cam.snapshot()["warnings"][0]
        assert "s3cret" not in cam.snapshot()["warnings"][0]
    finally:
        receiver.hang.clear()
        sender.stop(35.0)
        pub.stop()
        receiver.close()


def test_alert_config_reads_secrets_from_env_and_never_shows_them(monkeypatch):
    monkeypatch.setenv("HOOK_URL", "https://hooks.example/T000/B000/XXXXSECRET")
    monkeypatch.setenv("TIMESFORMER_MQTT_PASSWORD", "mqtt-secret-pw")
    cfg = build_config(expand_env({"sources": ["testpattern://"], "alerts": [
        {"kind": "webhook", "url": "${HOOK_URL}", "headers": {"Authorization": "Bearer header-secret"}},
        {"kind": "mqtt", "host": "127.0.0.1", "username": "bob", "password": "${TIMESFORMER_MQTT_PASSWORD}"}]}))
    hook, mqtt = cfg.alerts
    assert hook.url.get_secret_value().endswith("XXXXSECRET") and mqtt.password.get_secret_value() == "mqtt-secret-pw"
    shown = repr(cfg) + str(cfg)
    for secret in ("XXXXSECRET", "header-secret", "mqtt-secret-pw"):
        assert secret not in shown
    assert isinstance(Alerts(cfg.alerts, StatsRegistry()).senders[1], MqttSender)


# ---- MQTT ---------------------------------------------------------------------------------------
@pytest.fixture
def mosquitto(tmp_path):
    """A mosquitto broker on a free loopback port with a password file (user alice / wonderland-pw)."""
    if shutil.which("mosquitto") is None and not os.path.exists("/usr/sbin/mosquitto"):
        if os.environ.get("CI"):
            pytest.fail("CI is set but mosquitto is missing (apt-get install mosquitto)")
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    passwd = tmp_path / "passwd"
    subprocess.run([shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd", "-b", "-c", str(passwd),
                    "alice", "wonderland-pw"], check=True, capture_output=True)
    os.chmod(passwd, 0o600)
    port = feeds.free_port()
    conf = tmp_path / "mosquitto.conf"
    user = pwd.getpwuid(os.getuid()).pw_name  # as root it would switch to "mosquitto", which cannot read tmp_path
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {passwd}\n"
                    f"persistence false\nuser {user}\n")
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=open(tmp_path / "mosquitto.log", "w"))
    try:
        import socket

        def listening():
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0
        assert feeds.wait_until(listening, timeout=10), (tmp_path / "mosquitto.log").read_text()
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def subscribe(port: int, topic: str) -> tuple[object, list]:
    import paho.mqtt.client as mqtt

    got: list = []
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.username_pw_set("alice", "wonderland-pw")
    client.on_message = lambda c, u, m: got.append((m.topic, m.payload.decode(), m.qos, m.retain))
    client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client, got


def test_mqtt_events_and_retained_status(mosquitto, monkeypatch, caplog):
    monkeypatch.setenv("BROKER_PW", "wonderland-pw")
    caplog.set_level(logging.DEBUG)
    cfg = build_config(expand_env({"sources": ["testpattern://"], "alerts": [
        {"kind": "mqtt", "host": "127.0.0.1", "port": mosquitto, "topic_prefix": "tfs", "username": "alice",
         "password": "${BROKER_PW}"}]})).alerts[0]
    stats = StatsRegistry()
    cam = stats.add("cam", "testpattern://")
    sender = MqttSender(cfg, stats)
    pub, stop = publisher_with(sender.on_sent, stats)
    live, got = subscribe(mosquitto, "tfs/#")
    sender.start()
    try:
        assert sender.connected.wait(10)
        pub.publish_status(cam)
        pub.publish("event.cam", event(1))
        pub.publish("event.cam", {**event(1), "phase": "end", "end_ts": 2.0, "end_frame": 25})
        assert feeds.wait_until(lambda: len([g for g in got if g[0] == "tfs/cam/event"]) == 2, timeout=10), got
        events = [json.loads(p) for t, p, q, r in got if t == "tfs/cam/event"]
        assert [e["phase"] for e in events] == ["start", "end"] and events[0]["id"] == "run-cam-1"
        assert all(q == 1 for t, p, q, r in got if t == "tfs/cam/event")
        late, got_late = subscribe(mosquitto, "tfs/+/status")  # a late subscriber gets the retained status
        try:
            assert feeds.wait_until(lambda: got_late, timeout=10)
            topic, payload, qos, retained = got_late[0]
            assert topic == "tfs/cam/status" and retained and json.loads(payload)["state"] == "connecting"
        finally:
            late.loop_stop()
            late.disconnect()
        assert ("tfs/available", "online", 1, False) in got or any(g[:2] == ("tfs/available", "online") for g in got)
    finally:
        sender.stop()
        pub.stop()
        live.loop_stop()
        live.disconnect()
    assert not sender.is_alive()
    assert "wonderland-pw" not in caplog.text


def test_mqtt_broker_down_warns_and_keeps_what_waits():
    stats = StatsRegistry()
    cam = stats.add("cam", "testpattern://")
    cfg = MqttAlert(kind="mqtt", host="127.0.0.1", port=feeds.free_port(), username="alice",
                    password="wonderland-pw")  # nothing listens there
    sender = MqttSender(cfg, stats)
    sender.start()
    try:
        assert feeds.wait_until(lambda: cam.snapshot()["warnings"], timeout=10)
        assert "cannot connect" in cam.snapshot()["warnings"][0]
        sender.on_sent("event.cam", event(1))  # waits in the outbox meanwhile
        assert len(sender.outbox) == 1
    finally:
        sender.stop()
    assert not sender.is_alive()

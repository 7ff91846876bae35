"""run_stream.py as a service, in its own process: SIGHUP/reload, the state file across restarts and
``kill -9`` (R24), CURVE and loopback on the control socket (S10), systemd readiness, health."""

from __future__ import annotations

import random
import signal
import socket
import subprocess
import sys
import threading
import uuid

import pytest

import feeds
from model.errors import ControlError
from streamer.control import Client
from streamer.outputs import security

pytestmark = pytest.mark.timeout(300)


def url(fps: int, n: int = 0) -> str:
    return f"testpattern://?fps={fps}&width=64&height=48&frames={n}"


def write_sources(path, sources: dict[str, str], extra: str = "") -> None:
    lines = ["sources:"] + [f"  - {{id: {i}, url: '{u}'}}" for i, u in sources.items()]
    path.write_text("\n".join(lines) + "\nwindow: {stride: 1, hop: 2}\nevents: {enabled: false}\n" + extra)


def start(tmp_path, model, *args: str, name: str = "run", env: dict | None = None) -> feeds.Pipeline:
    return feeds.Pipeline(["--model", str(model), "--publish", "tcp://127.0.0.1:*", *args], tmp_path / f"{name}.log",
                          env=env)


def client(run: feeds.Pipeline, **options) -> Client:
    return Client(run.endpoint("control"), timeout=options.pop("timeout", 10.0), **options)


def listed(ctl: Client) -> dict[str, dict]:
    return {s["id"]: s for s in ctl.list()}


def test_sighup_applies_the_config_by_id_and_refuses_a_bad_file(tmp_path, tiny_model):
    config = tmp_path / "service.yaml"
    write_sources(config, {"keep": url(20), "gone": url(10), "change": url(10)})
    with start(tmp_path, tiny_model, "--config", str(config)) as run, client(run) as ctl, \
            feeds.Recorder(run.endpoint(), tmp_path / "messages.jsonl") as rec:
        assert feeds.wait_until(lambda: len(rec.results("keep")) >= 3, 60), run.stderr()
        before = listed(ctl)
        write_sources(config, {"keep": url(20), "change": url(15), "new": url(10)})
        run.proc.send_signal(signal.SIGHUP)
        assert feeds.wait_until(lambda: set(listed(ctl)) == {"keep", "change", "new"}, 30), run.stderr()
        after = listed(ctl)
        assert after["keep"]["session"] == before["keep"]["session"]
        assert after["change"]["session"] != before["change"]["session"] and "fps=15" in after["change"]["url"]
        assert feeds.wait_until(lambda: rec.results("new"), 60)
        n = len(rec.results("keep"))
        assert feeds.wait_until(lambda: len(rec.results("keep")) >= n + 3, 30)
        seqs = [m["seq"] for m in rec.results("keep")]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # untouched: no hiccup, no gap
        assert rec.latest_status("gone")["state"] == "removed"
        # a file that fails validation: one error line, nothing changes
        config.write_text("sources:\n  - {id: keep, url: 'testpattern://', optionz: {}}\n")
        run.proc.send_signal(signal.SIGHUP)
        assert feeds.wait_until(lambda: "reload refused" in run.stderr(), 30)
        with pytest.raises(ControlError, match=r"sources\[0\]\.optionz: unknown key"):
            ctl.reload()  # the same through the control socket
        refused = [line for line in run.stderr().splitlines() if "reload refused" in line]
        assert len(refused) == 2 and all(" ERROR " in line and "optionz: unknown key" in line for line in refused)
        assert listed(ctl).keys() == after.keys() and listed(ctl)["keep"]["session"] == before["keep"]["session"]
        assert run.terminate(15) == 0, run.stderr()


def test_the_state_file_is_the_source_list_after_a_restart(tmp_path, tiny_model):
    state = tmp_path / "state.json"
    args = ["--source", f"first={url(10)}", "--state", str(state)]
    with start(tmp_path, tiny_model, *args) as run, client(run) as ctl:
        ctl.add({"id": "added", "url": url(5), "options": {"ring_capacity": 32}})
        ctl.remove("first")
        expected = listed(ctl)
        assert run.terminate(15) == 0, run.stderr()
    assert oct(state.stat().st_mode & 0o777) == "0o600"
    with start(tmp_path, tiny_model, *args, name="again") as run, client(run) as ctl:
        restored = listed(ctl)
        assert {i: s["url"] for i, s in restored.items()} == {i: s["url"] for i, s in expected.items()}
        assert restored["added"]["session"] != expected["added"]["session"]  # a restart is a new session
        assert "sources from the state file" in run.stderr()
        assert run.terminate(15) == 0, run.stderr()


def random_ops(ctl: Client, rng: random.Random, count: int, kill) -> tuple[dict, tuple | None]:
    """``count`` random add/remove/update requests; ``kill()`` fired at a random one. Returns the last
    acknowledged set ({id: url}) and the request that got no answer (the kill came first), if any."""
    acked = {s["id"]: s["url"] for s in ctl.list()}
    kill_at = rng.randrange(count)
    for k in range(count):
        ids = sorted(acked)
        op = rng.choice(["add", "add", "remove", "update"]) if len(ids) > 1 else "add"
        stream = f"k{k}" if op == "add" else rng.choice(ids)
        request = {"op": "remove", "id": stream} if op == "remove" else \
            {"op": op, "source": {"id": stream, "url": url(5, k)}}
        if k == kill_at:
            threading.Timer(rng.uniform(0.0, 0.005), kill).start()
        try:
            reply = ctl.call(request)
        except ControlError:
            return acked, (op, stream, url(5, k))
        if reply["ok"]:
            if op == "remove":
                acked.pop(stream)
            else:
                acked[stream] = url(5, k)
    return acked, None


def test_kill_9_during_operations_restores_the_last_acknowledged_set(tmp_path, tiny_model):
    state = tmp_path / "state.json"
    rng = random.Random(15)
    for round_ in range(3):
        with start(tmp_path, tiny_model, "--source", f"keep={url(10)}", "--state", str(state),
                   name=f"round{round_}") as run, client(run, timeout=3.0) as ctl:
            acked, inflight = random_ops(ctl, rng, 50, run.proc.kill)
            run.proc.wait(20)
            assert run.proc.returncode == -signal.SIGKILL
        with start(tmp_path, tiny_model, "--source", f"keep={url(10)}", "--state", str(state),
                   name=f"restart{round_}") as again, client(again) as ctl:
            restored = {s["id"]: s["url"] for s in ctl.list()}
            assert again.terminate(15) == 0, again.stderr()
        if restored != acked:  # the kill came after the file was written and before the answer
            assert inflight is not None, (restored, acked)
            op, stream, where = inflight
            expected = {k: v for k, v in acked.items() if k != stream}
            if op != "remove":
                expected[stream] = where
            assert restored == expected


def curve_keys(tmp_path):
    """A server key pair, ``ops`` allowed (in clients/) and ``eve`` not (in others/); (config, ops, eve)
    with ops' and eve's CURVE client options."""
    security.generate_keypair(tmp_path / "server", "server")
    security.generate_keypair(tmp_path / "clients", "ops")
    security.generate_keypair(tmp_path / "others", "eve")
    config = tmp_path / "curve.yaml"
    config.write_text(f"publisher: {{curve_secret_key: {tmp_path / 'server' / 'server.key_secret'}, "
                      f"curve_allow_dir: {tmp_path / 'clients'}}}\n")
    server_key = tmp_path / "server" / "server.key"
    return (config, security.client_options(server_key, tmp_path / "clients" / "ops.key_secret"),
            security.client_options(server_key, tmp_path / "others" / "eve.key_secret"))


def test_control_off_loopback_needs_curve_and_curve_admits_only_allowed_clients(tmp_path, tiny_model):
    exposed = subprocess.run(feeds.run_stream_argv("--source", url(10), "--control", "tcp://0.0.0.0:5557"),
                             cwd=feeds.REPO, env=feeds.ENV, capture_output=True, text=True, timeout=120)
    assert exposed.returncode == 2
    assert exposed.stderr.startswith("error: control.address: tcp://0.0.0.0:5557 can be reached from other machines")
    config, ops, eve = curve_keys(tmp_path)
    with start(tmp_path, tiny_model, "--config", str(config), "--source", f"cam={url(10)}") as run:
        address = run.endpoint("control")
        with Client(address, curve=ops) as ctl:
            assert [s["id"] for s in ctl.list()] == ["cam"]
        for options in (eve, None):
            with Client(address, curve=options, timeout=1.5) as other, pytest.raises(ControlError, match="no reply"):
                other.remove("cam")
        with Client(address, curve=ops) as ctl:
            assert [s["id"] for s in ctl.list()] == ["cam"]
        assert run.terminate(15) == 0, run.stderr()


def test_reload_and_sighup_read_the_curve_allow_folder_again(tmp_path, tiny_model, control_schema):
    config, ops, eve = curve_keys(tmp_path)
    with start(tmp_path, tiny_model, "--config", str(config), "--source", f"cam={url(10)}") as run:
        address = run.endpoint("control")
        with Client(address, curve=eve, timeout=1.5) as other, pytest.raises(ControlError, match="no reply"):
            other.list()
        (tmp_path / "clients" / "eve.key").write_bytes((tmp_path / "others" / "eve.key").read_bytes())
        with Client(address, curve=ops) as ctl:
            reply = ctl.reload()  # the control socket's reload
        assert reply["allow_list_keys"] == 2 and "allow_list_error" not in reply and reply["unchanged"] == 1
        control_schema("reply", reply)
        with Client(address, curve=eve) as other:
            assert [s["id"] for s in other.list()] == ["cam"]
        (tmp_path / "clients" / "eve.key").unlink()
        run.proc.send_signal(signal.SIGHUP)  # SIGHUP: the same
        assert feeds.wait_until(lambda: run.stderr().count("CURVE allow-list reloaded") == 2, 30), run.stderr()
        with Client(address, curve=eve, timeout=1.5) as other, pytest.raises(ControlError, match="no reply"):
            other.list()
        (tmp_path / "clients" / "broken.key").write_text("not a certificate\n")  # refused: the keys in force stay
        with Client(address, curve=ops) as ctl:
            reply = ctl.reload()
            assert reply["allow_list_keys"] == 1 and "broken.key" in reply["allow_list_error"]
            control_schema("reply", reply)
            assert [s["id"] for s in ctl.list()] == ["cam"]
        assert "CURVE allow-list reload refused, the 1 key(s) in force stay" in run.stderr()
        assert run.terminate(15) == 0, run.stderr()


def test_systemd_readiness_reload_and_stop_notifications(tmp_path, tiny_model):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    name = f"timesformer-test-{uuid.uuid4().hex}"
    sock.bind("\0" + name)
    sock.settimeout(120)
    env = {**feeds.ENV, "NOTIFY_SOCKET": "@" + name}
    config = tmp_path / "service.yaml"
    write_sources(config, {"cam": url(10)})
    try:
        with start(tmp_path, tiny_model, "--config", str(config), env=env) as run:
            assert sock.recv(4096) == b"READY=1\nSTATUS=1 stream(s)"
            with client(run) as ctl:
                assert [s["id"] for s in ctl.list()] == ["cam"]  # serving once READY=1 was sent
            run.proc.send_signal(signal.SIGHUP)
            assert sock.recv(4096).startswith(b"RELOADING=1\nMONOTONIC_USEC=")
            assert sock.recv(4096) == b"READY=1\nSTATUS=1 stream(s)"
            assert run.terminate(15) == 0, run.stderr()
            assert sock.recv(4096) == b"STOPPING=1"
    finally:
        sock.close()


def test_ctl_health_follows_the_streams(tmp_path, tiny_model):
    refused = f"rtsp://127.0.0.1:{feeds.free_port()}/nothing"
    with start(tmp_path, tiny_model, "--source", f"cam={url(10)}") as run:
        base = [sys.executable, "-m", "streamer.ctl", "--address", run.endpoint("control")]

        def health() -> subprocess.CompletedProcess:
            return subprocess.run(base + ["health"], cwd=feeds.REPO, env=feeds.ENV, capture_output=True, text=True,
                                  timeout=60)

        assert feeds.wait_until(lambda: health().returncode == 0, 60), run.stderr()
        added = subprocess.run(base + ["add", "door", refused, "--option", "open_timeout_s=1"], cwd=feeds.REPO,
                               env=feeds.ENV, capture_output=True, text=True, timeout=60)
        assert added.returncode == 0 and added.stdout.startswith("add: door (session "), added.stderr
        sick = feeds.wait_until(lambda: (lambda h: h if h.returncode == 1 else None)(health()), 60)
        assert sick is not None and sick.stdout == ""
        assert sick.stderr.startswith("error: unhealthy: door: ") and sick.stderr.count("\n") == 1
        assert run.terminate(15) == 0, run.stderr()

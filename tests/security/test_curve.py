"""CURVE with a client allow-list (S2), key files (S3), loopback by default and the loud warning (S1).

The encrypted end-to-end test runs run_stream.py in its own process with a CURVE config and three
subscribers on 127.0.0.1: one whose key is in the allow-list (receives results), one with a valid
but unknown key, and a plaintext one (both receive nothing).
"""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys
import threading

import pytest
import zmq
import zmq.auth

import feeds
from model.errors import ConfigError, PublisherError
from streamer.outputs import security
from streamer.config import PublisherConfig
from streamer.outputs.publisher import Publisher
from streamer.core.stats import StatsRegistry
from streamer.subscribe import Subscriber

pytestmark = pytest.mark.timeout(90)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_keys_command_writes_secret_0600_and_never_overwrites(tmp_path):
    folder = tmp_path / "keys"
    cmd = [sys.executable, "-m", "streamer.keys", str(folder), "--name", "server"]
    done = subprocess.run(cmd, cwd=feeds.REPO, env=feeds.ENV, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    public, secret = folder / "server.key", folder / "server.key_secret"
    assert mode(secret) == 0o600 and mode(public) == 0o644 and mode(folder) == 0o700
    assert "secret-key" not in public.read_text()
    # ZeroMQ's own certificate reader understands the files
    pub, sec = zmq.auth.load_certificate(str(secret))
    assert pub == security.load_public_key(public) and security.load_secret_key(secret) == (pub, sec)
    again = subprocess.run(cmd, cwd=feeds.REPO, env=feeds.ENV, capture_output=True, text=True, timeout=60)
    assert again.returncode == 1 and again.stderr.startswith("error: ") and "already exists" in again.stderr
    assert security.load_secret_key(secret) == (pub, sec)  # untouched


def test_keys_command_makes_every_folder_it_creates_0700_under_umask_000(tmp_path):
    base = tmp_path / "base"
    base.mkdir()
    os.chmod(base, 0o755)
    folder = base / "keys" / "server"  # keys/ does not exist either
    done = subprocess.run([sys.executable, "-m", "streamer.keys", str(folder)], cwd=feeds.REPO, env=feeds.ENV,
                          capture_output=True, text=True, timeout=60, preexec_fn=lambda: os.umask(0))
    assert done.returncode == 0, done.stderr
    assert mode(base / "keys") == 0o700 and mode(folder) == 0o700
    assert mode(folder / "server.key_secret") == 0o600 and mode(folder / "server.key") == 0o644
    assert mode(base) == 0o755  # a folder that existed is left alone


def test_secret_key_readable_by_others_is_refused(tmp_path):
    _, secret = security.generate_keypair(tmp_path, "server")
    os.chmod(secret, 0o644)
    with pytest.raises(PublisherError, match=r"readable by other users \(mode 0644\); run: chmod 600"):
        security.load_secret_key(secret)


@pytest.mark.parametrize("setup, message", [
    (lambda d: None, "does not exist"),
    (lambda d: d.mkdir(), "holds no \\*.key files"),
    (lambda d: (d.mkdir(), (d / "x.key").write_text("public-key = \"short\"\n")), "no public-key line"),
])
def test_allow_list_fails_closed(tmp_path, setup, message):
    folder = tmp_path / "clients"
    setup(folder)
    with pytest.raises(PublisherError, match=message):
        security.load_allow_list(folder)


def test_curve_needs_an_allow_list():
    with pytest.raises(ConfigError, match="curve_allow_dir: CURVE needs both"):
        PublisherConfig(curve_secret_key="server.key_secret")


@pytest.mark.parametrize("address, loopback", [
    ("tcp://127.0.0.1:5555", True), ("tcp://127.8.9.10:1", True), ("tcp://localhost:5555", True),
    ("tcp://[::1]:5555", True), ("ipc:///tmp/x", True), ("inproc://x", True),
    ("tcp://*:5555", False), ("tcp://0.0.0.0:5555", False), ("tcp://10.0.0.5:5555", False),
    ("tcp://eth0:5555", False), ("tcp://[::]:5555", False), ("tcp://camera.example:5555", False),
])
def test_is_loopback(address, loopback):
    assert security.is_loopback(address) is loopback


def test_default_address_is_loopback():
    assert security.is_loopback(PublisherConfig().address)


def _start_publisher(config: PublisherConfig, ctx) -> Publisher:
    pub = Publisher(config, StatsRegistry(), ctx)
    pub.start(threading.Event())
    return pub


@pytest.mark.parametrize("curve", [False, True])
def test_warning_on_a_reachable_bind_only_without_curve(curve, tmp_path, monkeypatch, caplog):
    # The address is loopback (tests send nothing elsewhere); the publisher is told it is not.
    monkeypatch.setattr("streamer.outputs.publisher.is_loopback", lambda address: False)
    options = {}
    if curve:
        security.generate_keypair(tmp_path / "server", "server")
        security.generate_keypair(tmp_path / "clients", "alice")
        options = {"curve_secret_key": str(tmp_path / "server" / "server.key_secret"),
                   "curve_allow_dir": str(tmp_path / "clients")}
    ctx = zmq.Context()
    with caplog.at_level(logging.WARNING, logger="streamer.outputs.publisher"):
        pub = _start_publisher(PublisherConfig(address=feeds.free_tcp_address(), **options), ctx)
        pub.stop()
    ctx.term()
    warned = [r for r in caplog.records if "NOT ENCRYPTED" in r.getMessage()]
    assert bool(warned) is not curve


def test_bad_key_file_fails_at_start_with_one_line(tiny_model, tmp_path):
    security.generate_keypair(tmp_path / "clients", "alice")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"sources: ['testpattern://']\npublisher: {{address: '{feeds.free_tcp_address()}', "
                   f"curve_secret_key: '{tmp_path / 'missing.key_secret'}', curve_allow_dir: '{tmp_path / 'clients'}'}}\n")
    done = subprocess.run([sys.executable, str(feeds.REPO / "run_stream.py"), "--config", str(cfg), "--model",
                           str(tiny_model), "--status-line", "off"],
                          cwd=feeds.REPO, env=feeds.ENV, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "missing.key_secret does not exist" in lines[0]
    assert "connecting" not in done.stderr  # no camera touched without the encryption asked for


def test_allowed_key_receives_unknown_key_and_plaintext_receive_nothing(tiny_model, tmp_path):
    server_pub, server_secret = security.generate_keypair(tmp_path / "server", "server")
    _, alice_secret = security.generate_keypair(tmp_path / "clients", "alice")
    _, mallory_secret = security.generate_keypair(tmp_path / "outsiders", "mallory")  # valid key, not allowed
    address = feeds.free_tcp_address()
    cfg = tmp_path / "c.yaml"
    cfg.write_text("sources: [{id: cam, url: 'testpattern://?width=64&height=48&fps=25'}]\n"
                   f"publisher: {{address: '{address}', curve_secret_key: '{server_secret}', "
                   f"curve_allow_dir: '{tmp_path / 'clients'}'}}\n")
    ctx = zmq.Context()
    alice = Subscriber(address, ("result.", "status."), context=ctx,
                       curve=security.client_options(server_pub, alice_secret))
    mallory = Subscriber(address, ("result.", "status."), context=ctx,
                         curve=security.client_options(server_pub, mallory_secret))
    plain = Subscriber(address, ("result.", "status."), context=ctx)
    cli = subprocess.Popen([sys.executable, "-m", "streamer.subscribe", address, "--json", "--count", "2",
                            "--timeout", "30", "--server-key", str(server_pub), "--client-key", str(alice_secret)],
                           cwd=feeds.REPO, env=feeds.ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        with feeds.Pipeline(["--config", str(cfg), "--model", str(tiny_model), "--log-level", "DEBUG"],
                            tmp_path / "run.log") as pipe:
            got = []
            while len([m for _, m in got if m["type"] == "result"]) < 10:
                msg = alice.recv(timeout=30)
                assert msg is not None, pipe.stderr()[-2000:]
                got.append(msg)
            # the others had the same time, and get a few seconds more
            assert mallory.recv(timeout=3) is None
            assert plain.recv(timeout=0.5) is None
            cli_out, cli_err = cli.communicate(timeout=30)  # the CLI client with the allowed key
            assert pipe.terminate(10) == 0
        log = pipe.stderr()
    finally:
        cli.kill()
        for sub in (alice, mallory, plain):
            sub.close()
        ctx.term()
    assert {m["stream"] for _, m in got} == {"cam"}
    printed = [json.loads(line) for line in cli_out.splitlines()]  # results, and events if any
    assert cli.returncode == 0 and [m["type"] for m in printed].count("result") == 2, cli_err
    assert "refused a subscriber with an unknown CURVE key" in log
    assert "CURVE on: 1 allowed client key(s)" in log
    assert "NOT ENCRYPTED" not in log

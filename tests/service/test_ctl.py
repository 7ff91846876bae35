"""``python -m streamer.ctl``: each operation, exit 0 on ok and 1 with one ``error:`` line otherwise."""

from __future__ import annotations

import functools
import json
import subprocess
import sys

import pytest

import feeds
from streamer import ctl
from streamer.control import requests
from streamer.control.entries import parse_source
from streamer.control.server import ControlServer
from streamer.outputs import security

pytestmark = pytest.mark.timeout(60)


def run(capsys, server, *argv: str) -> tuple[int, str, str]:
    code = ctl.main(["--address", server.endpoint, *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_add_list_update_remove(capsys, server, service):
    code, out, err = run(capsys, server, "add", "door", "rtsp://admin:pw@10.0.0.5/live", "--mode", "live",
                         "--option", "open_timeout_s=2.5", "--option", "loop=false", "--option", "ring_capacity=32")
    assert (code, out, err) == (0, "add: door (session 00000001, connecting)\n", "")
    options = service.sources["door"].options
    assert (options.open_timeout_s, options.loop, options.ring_capacity) == (2.5, False, 32)  # typed as YAML is
    code, out, _ = run(capsys, server, "list")
    assert code == 0
    header, row = out.splitlines()
    assert header.split() == ["ID", "STATE", "MODE", "FPS", "RESULTS", "DROPS", "URL"]
    assert row.split() == ["door", "connecting", "live", "25.0", "2", "1", "rtsp://***@10.0.0.5/live"]
    code, out, _ = run(capsys, server, "list", "--json")
    assert code == 0 and [s["id"] for s in json.loads(out)] == ["door"]
    assert run(capsys, server, "update", "door", "0")[:2] == (0, "update: door (session 00000002, connecting)\n")
    assert run(capsys, server, "remove", "door")[:2] == (0, "removed: door\n")


@pytest.mark.parametrize("argv, error", [
    (["remove", "ghost"], "error: no stream 'ghost'; running: none\n"),
    (["add", "cam", "0", "--option", "max_fps=-1"], "error: source.options.max_fps: must be > 0, got -1\n"),
    (["add", "cam", "0", "--option", "colour=red"], "error: source.options.colour: unknown key; known keys here: "),
    (["add", "cam", "0", "--option", "loop"], "error: --option 'loop': write KEY=VALUE"),
    (["add", "bad id", "0"], "error: source.id: 'bad id' must be non-empty"),
])
def test_refusals_exit_1_with_one_line(capsys, server, argv, error):
    code, out, err = run(capsys, server, *argv)
    assert code == 1 and out == "" and err.startswith(error) and err.count("\n") == 1


def test_health_exit_status(capsys, server, service):
    assert run(capsys, server, "health")[:2] == (0, "healthy: 0 stream(s)\n")
    run(capsys, server, "add", "door", "0")
    code, out, err = run(capsys, server, "health")
    assert (code, out, err) == (1, "", "error: unhealthy: door: connecting\n")
    service.states["door"] = "running"
    assert run(capsys, server, "health")[:2] == (0, "healthy: 1 stream(s)\n")


def test_reload(capsys, server, service):
    run(capsys, server, "add", "a", "0")
    run(capsys, server, "add", "b", "1")
    service.config_sources = [service.sources["a"], parse_source({"id": "c", "url": "synthetic://"})]
    code, out, _ = run(capsys, server, "reload")
    assert (code, out) == (0, "reloaded: added ['c'], removed ['b'], updated [], 1 unchanged\n")


def test_reload_reports_the_curve_allow_list_and_a_refused_folder_is_exit_1(capsys, server, service):
    service.allow_list = {"allow_list_keys": 2}
    assert run(capsys, server, "reload") == (0, "reloaded: added [], removed [], updated [], 0 unchanged; CURVE "
                                                "allow-list: 2 key(s)\n", "")
    service.allow_list = {"allow_list_keys": 2, "allow_list_error": "key file /k/x.key holds no public-key line"}
    code, out, err = run(capsys, server, "reload")
    assert (code, err) == (1, "error: CURVE allow-list not reloaded: key file /k/x.key holds no public-key line\n")
    assert out.startswith("reloaded: ")


def test_no_service_is_exit_1(capsys):
    code = ctl.main(["--address", feeds.free_tcp_address(), "--timeout", "0.3", "list"])
    _, err = capsys.readouterr()
    assert code == 1 and err.startswith("error: no reply from tcp://127.0.0.1:") and err.count("\n") == 1


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        ctl.main(["frobnicate"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        ctl.main(["--server-key", "k", "list"])
    assert exc.value.code == 2 and "--server-key and --client-key go together" in capsys.readouterr().err


def test_as_a_command_with_curve_keys(tmp_path, service, zmq_context, monkeypatch):
    security.generate_keypair(tmp_path / "server", "server")
    security.generate_keypair(tmp_path / "clients", "ops")
    curve = security.CurveServer(zmq_context, tmp_path / "server" / "server.key_secret", tmp_path / "clients").start()
    srv = ControlServer("tcp://127.0.0.1:*", functools.partial(requests.handle, service), zmq_context,
                        secure=curve.secure)
    srv.start_and_wait()
    try:
        base = [sys.executable, "-m", "streamer.ctl", "--address", srv.endpoint, "--timeout", "3"]
        keys = ["--server-key", str(tmp_path / "server" / "server.key"),
                "--client-key", str(tmp_path / "clients" / "ops.key_secret")]
        done = subprocess.run(base + keys + ["add", "cam", "synthetic://"], cwd=feeds.REPO, env=feeds.ENV,
                              capture_output=True, text=True, timeout=60)
        assert (done.returncode, done.stdout, done.stderr) == (0, "add: cam (session 00000001, connecting)\n", "")
        plain = subprocess.run(base + ["list"], cwd=feeds.REPO, env=feeds.ENV, capture_output=True, text=True,
                               timeout=60)
        assert plain.returncode == 1 and plain.stderr.startswith("error: no reply from")
        assert list(service.sources) == ["cam"]
    finally:
        srv.stop()
        curve.stop()

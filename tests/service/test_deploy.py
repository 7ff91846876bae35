"""Deployment recipes: the systemd unit (checked by systemd-analyze verify) and the Dockerfile."""

from __future__ import annotations

import configparser
import json
import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest

import feeds

DEPLOY = feeds.REPO / "deploy"
UNIT = DEPLOY / "timesformer-stream.service"
DOCKERFILE = DEPLOY / "Dockerfile"
PREFIX = "/opt/timesformer-stream"


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string(UNIT.read_text())
    return parser


def exec_start() -> list[str]:
    return shlex.split(unit()["Service"]["ExecStart"])


def test_unit_is_a_restarting_notify_service_with_its_own_user_and_state():
    service = unit()["Service"]
    assert service["Type"] == "notify" and service["NotifyAccess"] == "main"
    assert service["Restart"] == "on-failure" and service["KillSignal"] == "SIGTERM"
    assert service["DynamicUser"] == "yes" and "User" not in service
    argv = exec_start()
    assert argv[:2] == [f"{PREFIX}/venv/bin/python", f"{PREFIX}/run_stream.py"]
    state = argv[argv.index("--state") + 1]
    assert state == f"%S/{service['StateDirectory']}/sources.json"  # %S: /var/lib, the state directory root
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"


def test_the_recipes_pass_flags_run_stream_accepts():
    import run_stream

    args = run_stream.build_parser().parse_args(exec_start()[2:])
    assert args.state == "%S/timesformer-stream/sources.json"
    assert str(args.config) == "/etc/timesformer-stream/config.yaml"
    entry = next(v for k, v in dockerfile_instructions() if k == "ENTRYPOINT")
    argv = json.loads(entry)
    assert argv[:2] == ["python", "/app/run_stream.py"]
    args = run_stream.build_parser().parse_args(argv[2:])
    assert args.state == "/var/lib/timesformer-stream/sources.json" and args.publish == "tcp://0.0.0.0:5555"


def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        reason = "systemd-analyze is not installed (apt-get install systemd)"
        if os.environ.get("CI"):  # .ci/run installs it
            pytest.fail(f"CI is set but {reason}")
        pytest.skip(reason)
    return path


def test_unit_passes_systemd_analyze_verify(tmp_path):
    # verify also checks that ExecStart exists: point the install prefix at this checkout
    text = UNIT.read_text().replace(f"{PREFIX}/venv/bin/python", sys.executable).replace(PREFIX, str(feeds.REPO))
    copy = tmp_path / UNIT.name
    copy.write_text(text)
    done = subprocess.run([systemd_analyze(), "verify", "--man=no", str(copy)], capture_output=True, text=True,
                          timeout=60)
    # an unknown key or a bad value is only a warning (exit 0): any output at all is a failure
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    return [tuple(line.split(None, 1)) for line in text.splitlines() if line.strip() and not line.startswith("#")]


def test_dockerfile_pins_torch_copies_what_exists_and_runs_unprivileged():
    steps = dockerfile_instructions()
    args = dict(v.split("=", 1) for k, v in steps if k == "ARG" and "=" in v)
    readme = (feeds.REPO / "README.md").read_text()
    assert f"torch=={args['TORCH_VERSION']}" in readme  # the same pin the README installs
    assert args["TORCH_INDEX"].endswith("/whl/cpu")
    for kind, value in steps:
        if kind == "COPY":
            for src in value.split()[:-1]:
                assert (feeds.REPO / src).exists(), src
    users = [v for k, v in steps if k == "USER"]
    assert users and users[-1] not in ("root", "0")
    health = next(v for k, v in steps if k == "HEALTHCHECK")
    assert '"streamer.ctl"' in health and '"health"' in health
    volume = next(v for k, v in steps if k == "VOLUME")
    entry = next(v for k, v in steps if k == "ENTRYPOINT")
    assert f'"--state", "{volume}/sources.json"' in entry
    assert next(v for k, v in steps if k == "STOPSIGNAL") == "SIGTERM"


def docker_engine() -> str:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker command here; the image build is checked where a Docker engine runs")
    probe = subprocess.run([docker, "info"], capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["docker info failed"])[-1]
        pytest.skip(f"no Docker engine reachable ({last}); the image build is checked where one runs")
    return docker


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_docker_image_builds_and_answers_help():
    docker = docker_engine()
    tag = "timesformer-stream:test"
    build = subprocess.run([docker, "build", "-f", str(DOCKERFILE), "-t", tag, str(feeds.REPO)],
                           capture_output=True, text=True, timeout=3000)
    assert build.returncode == 0, build.stderr[-3000:]
    ran = subprocess.run([docker, "run", "--rm", "--entrypoint", "python", tag, "-m", "streamer.ctl", "--help"],
                         capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0 and "health" in ran.stdout

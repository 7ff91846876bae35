"""``--cluster local:N``: a local Ray that the head starts and must take down with it; and single-machine mode,
which must not import Ray at all."""

from __future__ import annotations

import subprocess
import sys
import time

import clusterprocs
import feeds
import pytest

SOURCES = ["--source", "a=synthetic://actions?seed=1&fps=8&width=64&height=48",
           "--source", "b=testpattern://?fps=8&width=64&height=48"]


@pytest.mark.cluster
@pytest.mark.timeout(240)
def test_sigterm_ends_every_worker_and_the_local_ray_it_started(ray_ready, tiny_model, tmp_path):
    args = ["--cluster", "local:2", "--model", str(tiny_model), "--publish", feeds.ANY_PORT, *SOURCES]
    with feeds.Pipeline(args, tmp_path / "head.log") as head, \
            feeds.Recorder(head.endpoint("publisher", timeout=120), tmp_path / "sub.jsonl") as rec:
        assert feeds.wait_until(lambda: rec.results("a") and rec.results("b"), 150), head.stderr()[-3000:]
        assert {rec.latest_status(s)["worker"] for s in ("a", "b")} == {"w0", "w1"}  # one stream each
        started = clusterprocs.descendants(head.pid)  # Ray's GCS, raylet, workers: everything the head started
        actors = [p for ps in clusterprocs.worker_pids(head.stderr()).values() for p in ps]
        assert set(actors) <= started and len(started) > len(actors)
        began = time.monotonic()
        assert head.terminate(10.0) == 0, head.stderr()[-3000:]
        gone = feeds.wait_until(lambda: not any(clusterprocs.alive(p) for p in started),
                                max(0.1, 10.0 - (time.monotonic() - began)))
        assert gone, f"still running 10 s after SIGTERM: {sorted(p for p in started if clusterprocs.alive(p))}"
        assert "local Ray shut down" in head.stderr()
        assert rec.latest_status("a")["state"] == "stopped"  # the workers' final status went out


def test_single_machine_mode_never_imports_ray(tiny_model, tmp_path):
    """A whole single-machine run, then a look at what it imported."""
    argv = feeds.run_stream_argv("--model", str(tiny_model), "--max-windows", "2", "--mode", "file",
                                 "--publish", feeds.ANY_PORT, "--source", "testpattern://?frames=40")[2:]  # no python, script
    code = f"import sys, run_stream\nrc = run_stream.main({argv!r})\nprint('exit', rc, 'ray' in sys.modules)\n"
    done = subprocess.run([sys.executable, "-c", code], cwd=feeds.REPO, env=feeds.ENV, capture_output=True, text=True,
                          timeout=120)
    assert done.stdout.strip().splitlines()[-1] == "exit 0 False", done.stderr[-3000:]


def test_ray_missing_is_one_line_naming_the_extra(tmp_path):
    """Where Ray is not installed, --cluster says which extra installs it (exit 1), before anything starts."""
    blocker = tmp_path / "noray"
    (blocker / "ray").mkdir(parents=True)
    (blocker / "ray" / "__init__.py").write_text("raise ImportError('No module named ray')\n")
    env = {**feeds.ENV, "PYTHONPATH": f"{blocker}:{feeds.ENV['PYTHONPATH']}"}
    done = subprocess.run(feeds.run_stream_argv("--cluster", "local:1", "--source", "testpattern://"), cwd=feeds.REPO,
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == ("error: cluster mode needs Ray: pip install "
                                                    "'timesformer-stream[cluster]' (or pip install 'ray>=2.40,<3')")

"""What a run does at its edges: addresses checked before the model loads, the final status, the
terminal (``--print``, a status line that log lines never run into), one line per failure."""

from __future__ import annotations

import contextlib
import io
import os
import pty
import re
import select
import socket
import subprocess
import threading
import time

import pytest
import zmq

import feeds
from model.errors import PublisherError
from streamer.config import PublisherConfig
from streamer.core.stats import StatsRegistry
from streamer.endpoints import Listen, check_free
from streamer.ops.statusline import Terminal
from streamer.outputs import protocol
from streamer.outputs.publisher import Publisher
from streamer.pipeline import final_status
from streamer.subscribe import Subscriber

pytestmark = pytest.mark.timeout(120)


def run(*args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run(feeds.run_stream_argv(*args), cwd=feeds.REPO, env=feeds.ENV, capture_output=True,
                          text=True, timeout=timeout)


# ---- addresses ---------------------------------------------------------------------------------
def held_port(stack: list) -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    stack.append(s)
    return s.getsockname()[1]


def test_every_address_clash_is_one_error_before_the_model_loads(tiny_model):
    held: list[socket.socket] = []
    try:
        pub, snap, metrics = held_port(held), held_port(held), held_port(held)
        done = run("--source", "testpattern://", "--model", str(tiny_model), "--publish", f"tcp://127.0.0.1:{pub}",
                   "--snapshot", f"tcp://127.0.0.1:{snap}", "--metrics-port", str(metrics))
    finally:
        for s in held:
            s.close()
    assert done.returncode == 1, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr
    for what, port, flag in (("publisher", pub, "--publish"), ("snapshot", snap, "--snapshot"),
                             ("metrics", metrics, "--metrics-port")):
        assert f"{what} cannot listen on tcp://127.0.0.1:{port}" in errors[0] and flag in errors[0], errors[0]
    assert "loaded model" not in done.stderr  # found before the (slow) model load


def test_one_address_given_twice_is_a_clash_and_a_free_port_never_is():
    with pytest.raises(PublisherError, match=r"snapshot and publisher are both given tcp://127.0.0.1:\d+"):
        port = feeds.free_port()
        check_free([Listen("publisher", f"tcp://127.0.0.1:{port}", "--publish"),
                    Listen("snapshot", f"tcp://127.0.0.1:{port}", "--snapshot")])
    check_free([Listen("publisher", feeds.ANY_PORT, "--publish"), Listen("snapshot", feeds.ANY_PORT, "--snapshot"),
                Listen("metrics", "tcp://127.0.0.1:0", "--metrics-port"), Listen("x", "ipc:///tmp/x", "--x")])


# ---- the final status --------------------------------------------------------------------------
def test_the_final_status_counts_every_result_queued_before_it():
    stats = StatsRegistry()
    cam = stats.add("cam", "x")
    pub = Publisher(PublisherConfig(address=feeds.ANY_PORT, heartbeat_s=60), stats, zmq.Context.instance())
    pub.start(threading.Event())
    try:
        with Subscriber(pub.endpoint, topics=("result.", "status.")) as sub:
            assert feeds.wait_until(lambda: pub.publish("status.probe", {"type": "probe"}) and sub.recv(0.2), 10)
            gate = threading.Event()
            pub.call_soon(lambda: gate.wait(5))  # the publisher thread is busy: the result waits in its queue
            msg = protocol.result_message(stream="cam", session="s", seq=0, frame_indices=[0], frame_ts=[0.0], top_k=[], model={},
                                          inference_ms=1.0, age_ms=1.0, batch_size=1)
            pub.publish(protocol.result_topic("cam"), msg, capture_mono=time.monotonic(), stats=cam)
            final_status(pub, stats)  # what shutdown sends last
            gate.set()
            got = [sub.recv(5) for _ in range(3)]
    finally:
        pub.stop()
    kinds = [m[1]["type"] for m in got if m is not None]
    statuses = [m[1] for m in got if m is not None and m[1]["type"] == "status" and m[1]["stream"] == "cam"]
    assert "result" in kinds and statuses[-1]["counters"]["results"] == 1, got


def test_the_last_status_of_a_file_run_counts_every_result(tiny_model, bikes_mp4, tmp_path):
    with feeds.Pipeline(["--source", f"clip={bikes_mp4}", "--mode", "file", "--model", str(tiny_model), "--publish",
                         feeds.ANY_PORT, "--wait-subscribers", "1", "--max-windows", "12"], tmp_path / "run.log") as p:
        with feeds.Recorder(p.endpoint(), tmp_path / "messages.jsonl") as rec:
            assert p.proc.wait(90) == 0, p.stderr()[-3000:]
            assert feeds.wait_until(lambda: any(s["state"] == "stopped" and s["counters"]["results"] == 12
                                                for s in rec.statuses("clip")), 5), rec.statuses("clip")[-2:]
    results = rec.results("clip")
    assert [r["seq"] for r in results] == list(range(12))
    assert rec.statuses("clip")[-1]["counters"]["results"] == len(results)  # the last word counts them all


# ---- the terminal ------------------------------------------------------------------------------
LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (?:DEBUG|INFO|WARNING|ERROR) ")
RESULT_LINE = re.compile(r"\[cam\] #\d+ frames \d+-\d+: ")


def read_pty(argv: list[str], timeout: float) -> tuple[int, str]:
    """Run ``argv`` with stdout and stderr on a pseudo-terminal; (exit status, everything it wrote)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, cwd=feeds.REPO, env=feeds.ENV, stdin=subprocess.DEVNULL, stdout=slave,
                            stderr=slave)
    os.close(slave)
    out = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the child closed its side
                    break
                if not chunk:
                    break
                out += chunk
            elif proc.poll() is not None:
                break
        return proc.wait(10), out.decode("utf-8", "replace")
    finally:
        proc.kill()
        os.close(master)


def test_on_a_terminal_log_lines_and_results_never_run_into_the_status_line(tiny_model, tmp_path):
    cfg = tmp_path / "run.yaml"  # no --publish given: on a terminal, results are printed by default
    cfg.write_text(f'sources: [{{id: cam, url: "testpattern://?fps=25"}}]\npublisher: {{address: "{feeds.ANY_PORT}"}}\n'
                   "logging: {status_interval_s: 0.2}\nwindow: {stride: 1, hop: 4}\n")
    argv = feeds.run_stream_argv("--config", str(cfg), "--model", str(tiny_model), "--status-line", "auto",
                                 "--duration", "4")
    code, out = read_pty(argv, 90)
    assert code == 0, out[-3000:]
    assert "\x1b[2Kcam: running" in out  # the status line was drawn (stderr is a terminal)
    starts = [(m.start(), "log") for m in LOG_LINE.finditer(out)] + [(m.start(), "result") for m in RESULT_LINE.finditer(out)]
    assert sum(kind == "result" for _, kind in starts) >= 3, out[-3000:]  # --print is on by default on a terminal
    run_into = [out[max(0, at - 60):at + 40] for at, _ in starts if at > 0 and not (
        out.endswith("\n", 0, at) or out.endswith("\x1b[2K", 0, at))]
    assert not run_into, run_into


def test_without_a_terminal_results_are_not_printed_unless_asked(tiny_model, bikes_mp4):
    args = ("--source", f"clip={bikes_mp4}", "--mode", "file", "--model", str(tiny_model), "--max-windows", "5")
    quiet = run(*args, "--publish", feeds.ANY_PORT)
    assert quiet.returncode == 0 and quiet.stdout == "", quiet.stderr[-2000:]
    printed = run(*args, "--publish", feeds.ANY_PORT, "--print")
    lines = printed.stdout.splitlines()
    assert printed.returncode == 0 and len(lines) == 5, printed.stderr[-2000:]
    assert all(re.match(r"\[clip\] #\d+ frames \d+-\d+: action_\d \d\.\d\d", line) for line in lines), lines


def test_a_missing_file_is_said_once(tiny_model, tmp_path):
    missing = tmp_path / "missing.mp4"
    done = run("--source", f"clip={missing}", "--model", str(tiny_model), "--publish", feeds.ANY_PORT)
    assert done.returncode == 1, done.stderr
    said = [line for line in done.stderr.splitlines() if "does not exist" in line]
    errors = [line for line in said if line.startswith("error:")]
    assert len(errors) == 1 and len(said) <= 2, said  # the error line, and at most the stream's state in the log
    assert not [line for line in said if " ERROR " in line], said


def test_a_closed_stdout_ends_the_printing_not_the_run():
    read_end, write_end = os.pipe()
    os.close(read_end)  # e.g. run_stream.py --print | head -3, after head has exited
    out = os.fdopen(write_end, "w")
    err = io.StringIO()
    terminal = Terminal(err=err, out=out)
    terminal.draw("cam: running")
    terminal.print_out("[cam] #0 frames 0-7: still 0.90")  # the reader is gone: no exception
    assert terminal.out_closed
    terminal.print_out("[cam] #1 frames 4-11: still 0.91")
    assert err.getvalue().endswith("\x1b[2Kcam: running")  # the status line is still drawn
    with contextlib.suppress(OSError):
        out.close()

"""Every long-lived thread, killed in turn by an injected exception (tests/fixtures/patched_run.py).

Fatal threads (inference, publisher, annotate) and the only capture thread: the cause is logged
once, is the ``error:`` line and (but for the publisher, which owned the socket) the final status's
reason, and the process exits 1 within 3 s of the fault. Restartable threads (snapshot, metrics):
the process stays up and serves again on the same endpoint. The policies are in streamer/supervisor.py.
"""

from __future__ import annotations

import logging
import re
import threading
import sys
import time
import urllib.request
from pathlib import Path

import pytest

import feeds
from streamer.outputs.snapshot import request_snapshot

pytestmark = pytest.mark.timeout(180)

PATCHED = Path(__file__).resolve().parents[1] / "fixtures" / "patched_run.py"


def start(tmp_path: Path, tiny_model: Path, thread: str) -> tuple[feeds.Pipeline, Path]:
    """A live test pattern with every optional thread on (snapshot, metrics, annotated video)."""
    trigger = tmp_path / "trigger"
    args = ["--source", "cam=testpattern://?fps=25", "--model", str(tiny_model), "--publish", feeds.ANY_PORT,
            "--snapshot", feeds.ANY_PORT, "--metrics-port", "0", "--annotate", str(tmp_path / "out.avi")]
    prefix = [sys.executable, str(PATCHED), "--crash", thread, "--trigger", str(trigger), "--"]
    return feeds.Pipeline(args, tmp_path / "run.log", prefix=prefix), trigger


def injected_at(err: str) -> float:
    match = re.search(r"^INJECTED \S+ (\S+)$", err, re.MULTILINE)
    assert match, err[-3000:]
    return float(match.group(1))


def log_records(err: str, text: str) -> list[str]:
    """Log lines (not traceback lines) that contain ``text``."""
    return [line for line in err.splitlines() if re.match(r"\d{4}-\d\d-\d\d ", line) and text in line]


@pytest.mark.parametrize("thread", ["inference", "publisher", "annotate", "capture"])
def test_a_dead_thread_is_reported_once_and_the_process_exits_1_within_3_s(thread, tiny_model, tmp_path):
    pipeline, trigger = start(tmp_path, tiny_model, thread)
    with pipeline:
        with feeds.Recorder(pipeline.endpoint(), tmp_path / "messages.jsonl") as rec:
            assert feeds.wait_until(lambda: len(rec.results("cam")) >= 2, 60), pipeline.stderr()[-3000:]
            trigger.touch()
            code = pipeline.proc.wait(30)
            exited = time.monotonic()
            feeds.wait_until(lambda: any(s["state"] in ("stopped", "failed") for s in rec.statuses("cam")), 5)
            statuses = rec.statuses("cam")
    err = pipeline.stderr()
    assert code == 1, err[-3000:]
    assert exited - injected_at(err) <= 3.0, err[-3000:]
    cause = f"injected fault in {thread}"
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and cause in errors[0], err[-3000:]
    records = log_records(err, cause)
    if thread == "capture":  # the stream's own failure, as its state (after the traceback)
        assert len(records) == 1 and f"[cam] failed: RuntimeError: {cause}" in records[0], records
        assert "[cam] capture thread failed" in err
        assert statuses[-1]["state"] == "failed" and cause in statuses[-1]["reason"]
    else:
        assert len(records) == 1 and f"{thread} thread died: RuntimeError: {cause}" in records[0], records
        if thread != "publisher":  # the publisher owned the socket: its death can only be logged
            assert statuses[-1]["state"] == "stopped" and cause in statuses[-1]["reason"], statuses[-1]
    assert "not waiting for" not in err


def test_a_dead_snapshot_server_is_restarted_on_the_same_endpoint(tiny_model, tmp_path):
    pipeline, trigger = start(tmp_path, tiny_model, "snapshot")
    with pipeline:
        address = pipeline.endpoint("snapshot")
        assert feeds.wait_until(lambda: (request_snapshot(address, timeout=2) or {}).get("streams", {}).get("cam"), 60)
        trigger.touch()
        assert request_snapshot(address, timeout=2) is None  # this request killed the thread
        assert feeds.wait_until(lambda: "snapshot restarted" in pipeline.stderr(), 10), pipeline.stderr()[-3000:]
        snap = feeds.wait_until(lambda: request_snapshot(address, timeout=2), 10)
        assert snap and snap["streams"]["cam"]["status"]["state"] == "running"
        assert pipeline.proc.poll() is None
        assert pipeline.terminate(3) == 0
    err = pipeline.stderr()
    assert len(log_records(err, "snapshot thread died: RuntimeError: injected fault in snapshot")) == 1


def test_a_dead_metrics_server_is_restarted_on_the_same_port(tiny_model, tmp_path):
    pipeline, trigger = start(tmp_path, tiny_model, "metrics")
    with pipeline:
        url = pipeline.endpoint("metrics") + "/metrics"
        assert b"timesformer_frames_total" in urllib.request.urlopen(url, timeout=5).read()
        trigger.touch()
        assert feeds.wait_until(lambda: "metrics restarted" in pipeline.stderr(), 10), pipeline.stderr()[-3000:]
        assert b"timesformer_frames_total" in urllib.request.urlopen(url, timeout=5).read()
        assert pipeline.proc.poll() is None
        assert pipeline.terminate(3) == 0
    err = pipeline.stderr()
    assert len(log_records(err, "metrics thread died: RuntimeError: injected fault in metrics")) == 1


def test_join_or_warn_names_a_thread_left_behind_and_passes_the_rest(caplog):
    from streamer.supervisor import join_or_warn

    release = threading.Event()
    stuck = threading.Thread(target=release.wait, name="stuck-writer", daemon=True)
    never = threading.Thread(target=release.wait, name="never-started")
    done = threading.Thread(target=lambda: None, name="done")
    stuck.start()
    done.start()
    with caplog.at_level(logging.WARNING, logger="streamer.supervisor"):
        assert join_or_warn(never, 0.01) is True
        assert join_or_warn(done, 1.0) is True
        assert join_or_warn(stuck, 0.05) is False
    release.set()
    stuck.join(1.0)
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == ["stuck-writer thread still alive 0.1 s after stop"]


def test_lower_priority_lowers_only_the_calling_thread():
    import os

    from streamer.supervisor import lower_priority

    seen = {}

    def side_output():
        tid = threading.get_native_id()
        before = os.getpriority(os.PRIO_PROCESS, tid)
        lower_priority(3)
        seen["delta"] = os.getpriority(os.PRIO_PROCESS, tid) - before

    process_nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    worker = threading.Thread(target=side_output, name="side")
    worker.start()
    worker.join(5)
    assert seen == {"delta": 3} or process_nice + 3 > 19  # 19 is the floor of priority
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == process_nice


def test_idle_while_keeping_up_switches_only_the_calling_thread_between_idle_and_nice():
    import os

    from streamer.supervisor import SIDE_NICE, IdleWhileKeepingUp

    if not hasattr(os, "SCHED_IDLE") or os.geteuid() != 0:
        pytest.skip("needs Linux's SCHED_IDLE and, to leave it again, root (CAP_SYS_NICE); CI runs as root")
    seen = []

    def side_output():
        tid = threading.get_native_id()
        nice = os.getpriority(os.PRIO_PROCESS, tid)
        priority = IdleWhileKeepingUp()
        priority.start()
        seen.append((os.sched_getscheduler(0), priority.idle))
        priority.behind(True)  # behind: the normal class, at nice +SIDE_NICE
        seen.append((os.sched_getscheduler(0), os.getpriority(os.PRIO_PROCESS, tid) - nice))
        priority.behind(True)  # still behind: nothing to switch
        priority.behind(False)  # caught up: idle again
        seen.append((os.sched_getscheduler(0), priority.switches))

    worker = threading.Thread(target=side_output, name="side")
    worker.start()
    worker.join(5)
    assert seen == [(os.SCHED_IDLE, True), (os.SCHED_OTHER, SIDE_NICE), (os.SCHED_IDLE, 3)], seen
    assert os.sched_getscheduler(0) == os.SCHED_OTHER  # this thread is untouched

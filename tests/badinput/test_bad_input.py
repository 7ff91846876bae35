"""Bad input gives one line ``error: ...`` naming the problem and the fix, with exit status 2
(usage or configuration) or 1 (runtime), and a problem with one stream leaves the others alone (R7, R21, R22).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

import feeds
import run_stream

pytestmark = pytest.mark.timeout(120)


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(feeds.run_stream_argv("--publish", feeds.ANY_PORT, *args),
                          cwd=feeds.REPO, env=feeds.ENV, capture_output=True, text=True, timeout=90)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


@pytest.fixture(scope="module")
def bad_videos(tmp_path_factory, bikes_mp4) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bad-videos")
    corrupt = folder / "corrupt.mp4"
    corrupt.write_bytes(bytes((i * 7919 + 13) % 251 for i in range(200_000)))  # not a container at all
    empty = folder / "empty.mp4"
    empty.write_bytes(b"")
    truncated = folder / "truncated.mp4"
    truncated.write_bytes(bikes_mp4.read_bytes()[:300_000])  # the index (moov) is at the end: cut off
    return {"corrupt": corrupt, "empty": empty, "truncated": truncated}


@pytest.mark.parametrize("kind", ["corrupt", "empty", "truncated"])
def test_bad_video_file_fails_that_stream_only(kind, bad_videos, tiny_model):
    done = run("--model", str(tiny_model), "--mode", "file", "--source", f"bad={bad_videos[kind]}",
               "--source", "ok=testpattern://?width=64&height=48&frames=40")
    assert done.returncode == 1, done.stderr
    lines = error_lines(done.stderr)
    assert len(lines) == 1, done.stderr
    assert f"source bad failed: could not open {bad_videos[kind]}" in lines[0]
    assert "check that the file plays" in lines[0]  # the fix
    assert "Traceback" not in done.stderr
    assert "[ok] ended: end of stream" in done.stderr  # the other stream ran to its end


def test_other_stream_delivers_every_window_next_to_a_corrupt_file(bad_videos, tiny_model, tmp_path):
    cfg = feeds.write_config(tmp_path / "c.yaml", [{"id": "bad", "url": str(bad_videos["corrupt"])},
                                                   {"id": "ok", "url": "testpattern://?width=64&height=48&frames=40"}],
                             window="{stride: 1, hop: 1}")
    with feeds.Pipeline(["--config", str(cfg), "--model", str(tiny_model), "--mode", "file",
                         "--publish", feeds.ANY_PORT, "--wait-subscribers", "1"], tmp_path / "run.log") as run, \
            feeds.Recorder(run.endpoint(), tmp_path / "m.jsonl") as rec:
        code = run.proc.wait(90)
        feeds.wait_until(lambda: len(rec.results("ok")) >= 33 and rec.statuses("bad"), 5)
    assert code == 1, run.stderr()[-2000:]
    assert [r["seq"] for r in rec.results("ok")] == list(range(33))  # frames 0..39, 8-frame windows
    failed = [s for s in rec.statuses("bad") if s["state"] == "failed"]
    assert failed and "could not open" in failed[-1]["reason"]


def test_unknown_source_scheme_is_a_config_error(capsys):
    assert run_stream.main(["--source", "cam=rtps://10.0.0.5/live"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: ") and "unknown scheme 'rtps'" in line and "rtsp" in line


@pytest.mark.parametrize("yaml_text, expected", [
    ("sources: [a.mp4]\nbatching: {max_bach: 4}\n", "batching.max_bach: unknown key; known keys here: max_batch"),
    ("sources: [a.mp4]\npublisher: {sndhwm: -1}\n", "publisher.sndhwm: must be > 0, got -1"),
    ("sources: [{id: a, url: a.mp4, options: {stall_timeout_s: 0}}]\n", "sources[0].options.stall_timeout_s: must be > 0"),
    ("sources: [a.mp4]\nmodel: {top_k: five}\n", "model.top_k: expected an integer, got str 'five'"),
    ("sources: [a.mp4]\nwindow: {freshness_s: .nan}\n", "window.freshness_s: must be a finite number"),
    ("sources: [a.mp4]\nmodel: {device: gpu}\n", "model.device: 'gpu' is not auto, cpu, cuda or cuda:N"),
])
def test_config_mistakes_exit_2_with_one_line(yaml_text, expected, tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text(yaml_text)
    assert run_stream.main(["--config", str(path)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines


def test_missing_checkpoint_exit_1_before_any_source_opens(tmp_path):
    done = run("--model", str(tmp_path / "no-such-model"), "--source", "cam=rtsp://127.0.0.1:9/never")
    assert done.returncode == 1
    (line,) = error_lines(done.stderr)
    assert "no-such-model" in line
    assert "connecting" not in done.stderr  # failed before any camera was touched


def test_checkpoint_for_a_different_frame_count_exit_1(tiny_model, tmp_path):
    # config.json says 16 frames, the weights were trained with 8 (time embedding of 8)
    bad = tmp_path / "frames-mismatch"
    shutil.copytree(tiny_model, bad)
    config = json.loads((bad / "config.json").read_text())
    config["num_frames"] = 16
    (bad / "config.json").write_text(json.dumps(config))
    done = run("--model", str(bad), "--source", "testpattern://")
    assert done.returncode == 1
    (line,) = error_lines(done.stderr)
    assert str(bad) in line and "time_embed" in line and "8" in line and "16" in line
    assert "Traceback" not in done.stderr

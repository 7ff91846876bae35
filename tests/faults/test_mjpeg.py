"""A source faster than it says: HTTP MJPEG at 100 fps, which OpenCV reports as 25 fps. The ring is
sized from the measured rate, so windows of the configured span fit and results come at the hop
(before: a ring sized for 25 fps held 0.5 s, less than one 1.28 s window, and no result ever came).
The server is ffmpeg's mpjpeg output behind a small HTTP server (streamer/testing/media.py)."""

from __future__ import annotations

import statistics

import pytest

import feeds
from streamer.testing import media

pytestmark = pytest.mark.timeout(120)


def test_a_100_fps_mjpeg_feed_gives_results_at_the_configured_hop(tiny_model, tmp_path):
    span, hop, fps = 1.28, 0.24, 100
    with media.MjpegServer(fps=fps) as server:
        cfg = feeds.write_config(tmp_path / "run.yaml", [{"id": "mj", "url": server.url}],
                                 window=f"{{span_s: {span}, hop_s: {hop}}}", options="open_timeout_s: 5, read_timeout_s: 3")
        with feeds.Pipeline(["--config", str(cfg), "--model", str(tiny_model), "--publish", feeds.ANY_PORT],
                            tmp_path / "run.log") as pipe, feeds.Recorder(pipe.endpoint(), tmp_path / "m.jsonl") as rec:
            results = feeds.wait_until(lambda: len(r := rec.results("mj")) >= 25 and r, 60)
            assert results, (rec.statuses("mj")[-1:], pipe.stderr()[-2000:])
            status = rec.latest_status("mj")
            assert pipe.terminate(10) == 0, pipe.stderr()[-2000:]
    assert status["state"] == "running" and status["reason"] == ""  # nothing says a window cannot fit
    assert status["fps"] > 0.8 * fps  # measured, not the 25 the stream declares
    ends = [r["window"]["frame_ts"][-1] for r in results]
    steps = [b - a for a, b in zip(ends, ends[1:])]
    # each stream keeps its own hop grid (README, "Hop"): a window taken late (the first forward warms the
    # model up) is followed by the grid point nearest to a hop after it, so never closer than half a hop
    assert min(steps) >= hop / 2 - 0.5 / fps - 0.002, steps
    assert abs(statistics.median(steps) - hop) <= 0.5 / fps + 0.02, steps  # and at the hop, not faster or slower
    for r in results:
        idx, ts = r["window"]["frame_indices"], r["window"]["frame_ts"]
        assert abs((ts[-1] - ts[0]) - span * 7 / 8) <= 0.05, ts  # the window's span ...
        assert abs((idx[-1] - idx[0]) - span * 7 / 8 * fps) <= 10, idx  # ... over 100 frames a second

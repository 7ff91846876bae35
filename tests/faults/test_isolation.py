"""One bad source or one bad subscriber never slows the rest (R4, R12, R13).

- a refused URL and a black-hole listener next to a healthy RTSP stream: the healthy stream's
  results keep flowing at its hop while the bad ones go through open timeouts and backoff;
- a subscriber that stops reading for 30 s: capture and inference go on at the same rate, the
  publisher's memory stays bounded by SNDHWM, and the paused subscriber loses messages (seq gaps)
  instead of having them queued for it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

import feeds

@pytest.mark.rtsp
@pytest.mark.timeout(90)
def test_refused_and_black_hole_sources_do_not_delay_a_healthy_stream(tiny_model, rtsp_server, tmp_path):
    with feeds.BlackHole() as hole:
        sources = [{"id": "good", "url": rtsp_server.url}, {"id": "refused", "url": feeds.refused_url()},
                   {"id": "hole", "url": hole.rtsp_url}]
        # open timeout 3 s: each attempt on the black hole blocks its capture thread that long
        cfg = feeds.write_config(tmp_path / "run.yaml", sources,
                                 options="open_timeout_s: 3, read_timeout_s: 2, stall_timeout_s: 2, "
                                         "backoff_initial_s: 0.3, backoff_max_s: 1")
        with feeds.Pipeline(["--config", str(cfg), "--model", str(tiny_model), "--publish", feeds.ANY_PORT],
                            tmp_path / "run.log") as pipe, feeds.Recorder(pipe.endpoint(), tmp_path / "m.jsonl") as rec:
            assert feeds.wait_until(lambda: len(rec.results("good")) >= 1, 40), pipe.stderr()[-2000:]
            # long enough for several black-hole open timeouts and refused retries
            assert feeds.wait_until(lambda: (s := rec.latest_status("hole")) and s["counters"]["reconnects"] >= 3, 20)
            good = rec.results("good")
            statuses = {sid: rec.latest_status(sid) for sid in ("good", "refused", "hole")}
            assert pipe.terminate(10) == 0, pipe.stderr()[-2000:]
    seqs = [r["seq"] for r in good]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    # hop 4 frames at 25 fps is 0.16 s; no pause anywhere near the black hole's 3 s open timeout
    gaps = [b["published_ts"] - a["published_ts"] for a, b in zip(good, good[1:])]
    assert len(good) >= 30 and max(gaps) < 1.0, max(gaps)
    assert statuses["good"]["state"] == "running" and statuses["good"]["counters"]["drops"]["gap"] == 0
    for bad in ("refused", "hole"):
        assert statuses[bad]["counters"]["frames"] == 0 and statuses[bad]["counters"]["reconnects"] >= 2
    assert rec.results("refused") == [] and rec.results("hole") == []
    states = {s["state"] for s in rec.statuses("hole")}
    assert {"connecting", "backoff"} <= states


@pytest.fixture(scope="module")
def many_labels_model(tmp_path_factory) -> Path:
    """500 labels and top_k 500: ~20 kB results, so what a paused subscriber is owed soon exceeds
    every buffer on the way (SNDHWM messages at the publisher, the kernel's socket buffers)."""
    return feeds.make_tiny_model(tmp_path_factory.mktemp("labels") / "tiny-500", num_labels=500)


@pytest.mark.timeout(120)
def test_a_subscriber_that_stops_reading_for_30_s_costs_nothing(many_labels_model, tmp_path):
    pause = 30.0
    cfg = feeds.write_config(tmp_path / "run.yaml", [{"id": "cam", "url": "testpattern://?width=96&height=72&fps=50"}],
                             window="{stride: 1, hop: 1}", extra="publisher: {sndhwm: 50}\nmodel: {top_k: 500}\n")
    with feeds.Pipeline(["--config", str(cfg), "--model", str(many_labels_model), "--publish", feeds.ANY_PORT],
                        tmp_path / "run.log") as pipe, feeds.Recorder(address := pipe.endpoint(), tmp_path / "m.jsonl") as rec:
        assert feeds.wait_until(lambda: len(rec.results("cam")) >= 50, 40), pipe.stderr()[-2000:]
        start = rec.latest_status("cam")
        frozen = subprocess.Popen([sys.executable, "-m", "streamer.testing.frozen_subscriber", address,
                                   "--pause", str(pause)], cwd=feeds.REPO, env=feeds.ENV, stdout=subprocess.PIPE, text=True)
        try:
            assert json.loads(frozen.stdout.readline())["event"] == "paused"
            time.sleep(3)  # let every buffer toward the paused subscriber fill
            s0, rss0 = rec.latest_status("cam"), pipe.rss_kb()
            time.sleep(pause - 6)
            s1, rss1 = rec.latest_status("cam"), pipe.rss_kb()
            done = json.loads(frozen.stdout.readline())
            assert frozen.wait(10) == 0
        finally:
            frozen.kill()
            frozen.stdout.close()
        assert pipe.terminate(10) == 0, pipe.stderr()[-2000:]

    def rate(a: dict, b: dict, key: str) -> float:
        return (b["counters"][key] - a["counters"][key]) / (b["published_ts"] - a["published_ts"])

    # the reading subscriber lost nothing
    seqs = [r["seq"] for r in rec.results("cam")]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    # capture and inference rates while the other subscriber was paused match the rates before
    assert rate(s0, s1, "frames") >= 0.8 * rate(start, s0, "frames")
    assert rate(s0, s1, "results") >= 0.8 * rate(start, s0, "results")
    assert s1["counters"]["drops"]["publish_queue_full"] == 0
    # the paused subscriber missed most of what was produced meanwhile: dropped, not queued for it
    got = done["seqs"]
    missed = (got[-1] - got[0] + 1) - len(got)
    produced = got[-1] - got[0] + 1
    assert produced > 1000 and missed > produced / 2, (missed, produced)
    assert rss1 - rss0 < 20_000, (rss0, rss1)  # kB: SNDHWM 50 x 20 kB, plus noise

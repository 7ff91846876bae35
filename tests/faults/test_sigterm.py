"""SIGTERM at random moments, 20 times: exit 0 within 3 s, every thread joined, every socket closed (R19).

Each run has three sources, so whatever the moment, something is in a slow phase: a real RTSP
stream (running, windows in flight, inference), a black-hole listener (a capture thread blocked in
OpenCV's open for the whole open timeout) and a refused URL (backoff). The moments are spread from
model loading through connecting to steady running; the seed makes the run reproducible.
"""

from __future__ import annotations

import random
import socket
import subprocess

import pytest

import feeds

pytestmark = [pytest.mark.rtsp, pytest.mark.timeout(240)]

RUNS = 20


def port_is_free(address: str) -> bool:
    host, port = address.removeprefix("tcp://").rsplit(":", 1)
    with socket.socket() as s:
        try:
            s.bind((host, int(port)))
        except OSError:
            return False
    return True


def test_sigterm_at_random_moments_exits_0_within_3_s(tiny_model, rtsp_server, tmp_path):
    rng = random.Random(20240605)
    # 4 moments during start-up (imports, model load), 16 after capture began (connecting, windows, inference)
    moments = [("spawn", rng.uniform(0.2, 1.5)) for _ in range(4)] + \
              [("capture", rng.uniform(0.0, 2.5)) for _ in range(RUNS - 4)]
    failures = []
    with feeds.BlackHole() as hole:
        sources = [{"id": "good", "url": rtsp_server.url}, {"id": "hole", "url": hole.rtsp_url},
                   {"id": "refused", "url": feeds.refused_url()}]
        # default open timeout (5 s): a thread blocked in open must not hold the exit up
        cfg = feeds.write_config(tmp_path / "run.yaml", sources, options="read_timeout_s: 2, backoff_initial_s: 0.2")
        for i, (after, delay) in enumerate(moments):
            address = feeds.free_tcp_address()
            log = tmp_path / f"run{i}.log"
            with feeds.Pipeline(["--config", str(cfg), "--model", str(tiny_model), "--publish", address], log) as p:
                if after == "capture":
                    assert feeds.wait_until(lambda: "[good] connecting" in p.stderr(), 30, interval=0.02), p.stderr()
                feeds.wait_until(lambda: p.proc.poll() is not None, delay, interval=0.02)
                try:
                    code = p.terminate(3.0)
                except subprocess.TimeoutExpired:
                    code = "still running 3 s after SIGTERM"
            err = log.read_text()
            # only the capture thread blocked in OpenCV's open on the black hole may be left behind
            stuck = [line for line in err.splitlines() if "still alive" in line and "[hole]" not in line]
            if code != 0 or stuck or "Traceback" in err or not port_is_free(address):
                failures.append((after, round(delay, 2), code, stuck, err[-600:]))
    assert not failures, failures

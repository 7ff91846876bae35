#!/usr/bin/env python
"""Soak: several real streams for a set time under random faults; RSS, latency, recovery and loss over time.

run_stream.py runs in its own process on a tiny TimeSformer (CPU) with N RTSP cameras (the
project's GStreamer RTSP server fixture serving bikes.mp4 / carphone_pristine.mp4 on 127.0.0.1)
and one test pattern. This script subscribes (in its own process, like any client) and, every
``--fault-every`` seconds on average, injects one random fault:

  kill      the RTSP server of one camera is killed and restarted on the same port 2-6 s later
  freeze    the RTSP server of one camera is stopped (SIGSTOP) for 3-8 s, then continued
  slowsub   a second subscriber connects and stops reading for 10-20 s

A fault counts as recovered when the affected camera publishes a result again within 30 s of the
fault's end (slowsub: when the main subscriber saw no seq gap meanwhile). Per time bucket it
reports the pipeline's RSS, results received, capture-to-publish latency p50/p99 and faults;
at the end, results produced (pipeline counters) vs received and lost (seq gaps), and whether the
pipeline crashed. Nothing is sent anywhere but 127.0.0.1.

    python -m benchmarks.soak --minutes 20            # writes its section of BENCHMARKS.md
    python -m benchmarks.soak --minutes 3 --no-write  # print only
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

from benchmarks.report import machine, write_section
from streamer.subscribe import Subscriber
from streamer.testing.processes import ENV, ROOT, StreamProcess, free_tcp_address, make_tiny_model, sample_videos_dir
from streamer.testing.processes import wait_until, write_config
from streamer.testing.rtsp import RtspServer, rtsp_missing_reason

SECTION = "soak"
RECOVERY_S = 30.0


class Observer(threading.Thread):
    """The main subscriber: every result's arrival time, stream, seq and latency; the latest status per stream."""

    def __init__(self, address: str, stop: threading.Event) -> None:
        super().__init__(name="observer")
        self.address, self.stop = address, stop
        self.results: list[tuple[float, str, int, float]] = []  # (monotonic, stream, seq, capture_to_publish ms)
        self.status: dict[str, dict] = {}
        self.gaps = 0
        self.gap_log: list[tuple[float, str, int]] = []

    def run(self) -> None:
        last: dict[str, int] = {}
        with Subscriber(self.address, ("result.", "status."), rcvhwm=100000) as sub:
            while not self.stop.is_set():
                got = sub.recv(timeout=0.2)
                if got is None:
                    continue
                _, m = got
                now = time.monotonic()
                if m.get("type") == "status":
                    self.status[m["stream"]] = m
                elif m.get("type") == "result":
                    s, seq = m["stream"], m["seq"]
                    if s in last and seq > last[s] + 1:
                        self.gaps += seq - last[s] - 1
                        self.gap_log.append((now, s, seq - last[s] - 1))
                    last[s] = seq
                    self.results.append((now, s, seq, float(m["latency_ms"]["capture_to_publish"])))

    def last_result(self, stream: str) -> float | None:
        for t, s, _, _ in reversed(self.results):
            if s == stream:
                return t
        return None


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, int(round(q / 100.0 * (len(v) - 1))))]



def inject(kind: str, rng: random.Random, servers: dict, address: str, obs: Observer, log: list) -> dict:
    """Run one fault to its end (blocking); returns its record."""
    start = time.monotonic()
    rec = {"kind": kind, "start": start}
    if kind in ("kill", "freeze"):
        stream = rng.choice(sorted(servers))
        server = servers[stream]
        rec["stream"] = stream
        if kind == "kill":
            server.kill()
            time.sleep(rng.uniform(2, 6))
            server.start()
        else:
            server.freeze()
            time.sleep(rng.uniform(3, 8))
            server.resume()
    else:
        gaps_before = obs.gaps
        pause = rng.uniform(10, 20)
        proc = subprocess.Popen([sys.executable, "-m", "streamer.testing.frozen_subscriber", address,
                                 "--pause", f"{pause:.1f}", "--drain", "0.5"],
                                cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        proc.wait(pause + 60)
        rec["stream"] = "(subscriber)"
        rec["recovered"] = obs.gaps == gaps_before
    rec["end"] = time.monotonic()
    log.append(rec)
    return rec


def check_recovery(rec: dict, obs: Observer, deadline: float) -> None:
    if "recovered" in rec:
        return
    while time.monotonic() < deadline:
        t = obs.last_result(rec["stream"])
        if t is not None and t > rec["end"]:
            rec["recovered"] = True
            rec["recovery_s"] = t - rec["end"]
            return
        time.sleep(0.2)
    rec["recovered"] = False


def soak(minutes: float, cameras: int, fault_every: float, bucket_s: float, seed: int, work: Path) -> dict:
    rng = random.Random(seed)
    data = sample_videos_dir()
    videos = [data / "bikes.mp4", data / "carphone_pristine.mp4"]
    model = make_tiny_model(work / "tiny-timesformer")
    address = free_tcp_address()
    servers = {f"cam{i}": RtspServer(videos[i % len(videos)], work) for i in range(cameras)}
    for server in servers.values():
        server.start()
    sources = [{"id": sid, "url": s.url} for sid, s in servers.items()]
    sources.append({"id": "pattern", "url": "testpattern://?width=160&height=120&fps=25"})
    cfg = write_config(work / "soak.yaml", sources,
                             options="open_timeout_s: 3, read_timeout_s: 2, stall_timeout_s: 2, "
                                     "backoff_initial_s: 0.5, backoff_max_s: 4")
    stop = threading.Event()
    obs = Observer(address, stop)
    obs.start()
    pipe = StreamProcess(["--config", str(cfg), "--model", str(model), "--publish", address], work / "run_stream.log")
    faults: list[dict] = []
    rss: list[tuple[float, int]] = []
    t0 = time.monotonic()
    end = t0 + minutes * 60.0
    crashed = None
    try:
        wait_until(lambda: len(obs.results) > 0, 60)
        next_fault = time.monotonic() + rng.uniform(0.5, 1.5) * fault_every
        while time.monotonic() < end:
            if pipe.proc.poll() is not None:
                crashed = f"exit {pipe.proc.returncode}"
                break
            rss.append((time.monotonic(), pipe.rss_kb()))
            if time.monotonic() >= next_fault and end - time.monotonic() > RECOVERY_S + 25:
                rec = inject(rng.choice(["kill", "freeze", "slowsub"]), rng, servers, address, obs, faults)
                check_recovery(rec, obs, rec["end"] + RECOVERY_S)
                print(f"[{(rec['start'] - t0) / 60:5.1f} min] {rec['kind']:7s} {rec['stream']:12s} "
                      f"recovered={rec['recovered']} {rec.get('recovery_s', 0):.1f} s", flush=True)
                next_fault = time.monotonic() + rng.uniform(0.5, 1.5) * fault_every
            time.sleep(min(5.0, max(0.1, end - time.monotonic())))
        exit_code = pipe.terminate(10) if crashed is None else None
    finally:
        pipe.close()
        time.sleep(1.0)
        stop.set()
        obs.join(10)
        for server in servers.values():
            server.close()
    final_status = {k: dict(v) for k, v in obs.status.items()}  # includes the final status sent at shutdown
    return {"t0": t0, "minutes": minutes, "cameras": cameras, "faults": faults, "rss": rss, "obs": obs,
            "status": final_status, "crashed": crashed, "exit_code": exit_code, "bucket_s": bucket_s,
            "log_errors": [line for line in pipe.stderr().splitlines() if " ERROR " in line or "Traceback" in line]}


def table(r: dict) -> str:
    t0, bucket = r["t0"], r["bucket_s"]
    obs: Observer = r["obs"]
    rows = defaultdict(lambda: {"lat": [], "n": 0, "rss": None, "faults": []})
    for t, _, _, lat in obs.results:
        b = rows[int((t - t0) // bucket)]
        b["lat"].append(lat)
        b["n"] += 1
    for t, kb in r["rss"]:
        rows[int((t - t0) // bucket)]["rss"] = kb
    for f in r["faults"]:
        rows[int((f["start"] - t0) // bucket)]["faults"].append(f["kind"])
    lines = ["| minutes | RSS MB (end) | results | latency p50 ms | latency p99 ms | faults injected |",
             "|---|---|---|---|---|---|"]
    for k in sorted(rows):
        b = rows[k]
        p50, p99 = percentile(b["lat"], 50), percentile(b["lat"], 99)
        rss = f"{b['rss'] / 1024:.0f}" if b["rss"] else "-"
        lat = f"{p50:.1f} | {p99:.1f}" if p50 is not None else "- | -"
        span = f"{k * bucket / 60:g}-{(k + 1) * bucket / 60:g}"
        lines.append(f"| {span} | {rss} | {b['n']} | {lat} | {', '.join(b['faults']) or '-'} |")
    return "\n".join(lines)


def summary(r: dict) -> str:
    obs: Observer = r["obs"]
    faults = r["faults"]
    by_kind = defaultdict(lambda: [0, 0, []])
    for f in faults:
        k = by_kind[f["kind"]]
        k[0] += 1
        k[1] += bool(f["recovered"])
        if "recovery_s" in f:
            k[2].append(f["recovery_s"])
    produced = sum(s["counters"]["results"] for s in r["status"].values())
    received = len(obs.results)
    rss = [kb for _, kb in r["rss"]]
    quarter = max(1, len(rss) // 4)
    out = [f"Faults injected / recovered: " + ", ".join(
        f"{k} {v[1]}/{v[0]}" + (f" (recovery median {percentile(v[2], 50):.1f} s, max {max(v[2]):.1f} s)" if v[2] else "")
        for k, v in sorted(by_kind.items())) + f"; total {sum(v[1] for v in by_kind.values())}/{len(faults)}.",
        f"Results: produced {produced} (pipeline counters), received {received}, lost {obs.gaps} "
        f"(seq gaps at the subscriber; at-most-once, expected 0 on loopback).",
        f"RSS: first quarter mean {sum(rss[:quarter]) / quarter / 1024:.0f} MB, last quarter mean "
        f"{sum(rss[-quarter:]) / quarter / 1024:.0f} MB, max {max(rss) / 1024:.0f} MB." if rss else "RSS: no samples.",
        f"Crashes: {'none' if r['crashed'] is None else r['crashed']}; exit status on SIGTERM at the end: {r['exit_code']}; "
        f"ERROR lines in the log: {len(r['log_errors'])}."]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=20.0, help="how long to run (default 20)")
    p.add_argument("--cameras", type=int, default=3, help="RTSP cameras (plus one test pattern)")
    p.add_argument("--fault-every", type=float, default=40.0, help="mean seconds between faults")
    p.add_argument("--bucket", type=float, default=120.0, help="seconds per table row")
    p.add_argument("--seed", type=int, default=5)
    p.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = p.parse_args(argv)
    reason = rtsp_missing_reason()
    if reason:
        print(f"error: {reason}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="soak-") as work:  # model, configs, server and pipeline logs
        r = soak(args.minutes, args.cameras, args.fault_every, args.bucket, args.seed, Path(work))
    text = (f"## Soak (`benchmarks/soak.py`)\n\n"
            f"Machine: {machine()}.\n"
            f"{r['minutes']:g} minutes; run_stream.py (tiny TimeSformer, CPU, 1 torch thread, live mode, stride 2, "
            f"hop 4) on {r['cameras']} RTSP cameras (GStreamer server, bikes.mp4 640x272 / carphone 176x144, 25-30 fps) "
            f"and one test pattern; a random fault about every {args.fault_every:g} s (kill+restart the server, "
            f"SIGSTOP it, or a subscriber that stops reading); latency = capture_to_publish.\n\n"
            f"{table(r)}\n\n{summary(r)}\n")
    print(text)
    print(json.dumps([{k: v for k, v in f.items() if k not in ("start", "end")} for f in r["faults"]]))
    if not args.no_write:
        write_section(SECTION, text)
    return 0 if r["crashed"] is None and r["exit_code"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

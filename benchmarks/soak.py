#!/usr/bin/env python
"""Soak: several real streams for a set time under random faults and hostile peers; RSS, open files,
threads, latency, recovery, loss and leaks over time, judged against issue 19's bounds.

run_stream.py runs in its own process on a tiny TimeSformer (CPU) with N RTSP cameras (the
project's GStreamer RTSP server fixture serving bikes.mp4 / carphone_pristine.mp4 on 127.0.0.1),
one test pattern, and issue 19's bad sources, present from the start and measured for health
(results at the hop, decode errors counted, no crash):

  corrupt   an mp4 with one 4 KB block zeroed mid-file (ffmpeg + dd), looping in live mode
  mjpeg100  an HTTP MJPEG feed at 100 fps (OpenCV reports 25 fps for mpjpeg)
  twosize   an MPEG-TS of 320x240 then 1280x544 (two TS files concatenated), looping in live mode
  secret    an RTSP URL with a password holding ``'`` and a ``?token=``, on a port that refuses: the
            soak checks that neither secret appears in the pipeline's log, any message it publishes
            (status, result, event) or any snapshot
  vanish    a 4 s clip, looping in live mode, whose file the ``vanish`` fault deletes

This script subscribes (a thread of its own process, like any client) and, every ``--fault-every``
seconds on average, injects one fault (benchmarks/soak_faults.py: kill, freeze, slowsub, vanish,
sighup, and issue 19's socket attacks sub10mb, sub5x1mb, ctl10mb, snapframes, snapflood, handshake),
each kind once per shuffled round. It samples the pipeline's RSS, open files and threads twice a second, reads its
drop and refusal counters from its metrics endpoint at the end, then stops it with SIGTERM. The
report (benchmarks/soak_report.py) has a table per time bucket, per fault kind (recovered, RSS and
the other streams' rate and latency in the faults' windows vs quiet time), per source, the secret
checks, and first the verdicts (benchmarks/soak_verdicts.py): pass/fail per property against the
issue's numbers. The exit status is 0 when every property holds. Nothing is sent anywhere but
127.0.0.1.

    nice -n 5 python -m benchmarks.soak                    # ~10 min; writes its section of BENCHMARKS.md
    python -m benchmarks.soak --minutes 3 --no-write       # print only
    python -m benchmarks.soak --cameras 0                  # without the GStreamer RTSP server
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from benchmarks.report import write_section
from benchmarks.soak_faults import KINDS, ONCE, RECOVERY_S, Target, inject, schedule
from benchmarks.soak_report import WARMUP_S, section
from benchmarks.soak_verdicts import table, verdicts
from streamer.outputs.snapshot import request_snapshot
from streamer.subscribe import Subscriber
from streamer.testing import media
from streamer.testing.processes import StreamProcess, free_port, free_tcp_address, make_tiny_model, rss_kb
from streamer.testing.processes import sample_videos_dir, wait_until, write_config
from streamer.testing.rtsp import RtspServer, rtsp_missing_reason

SECTION = "soak"
HOP = 4  #: frames between window ends (the config's window.hop)
PASSWORD, TOKEN = "S0ak'Pa55", "t0kenS0akXYZ"  #: the secrets of the ``secret`` source's URL
SECRETS = ("S0ak", "Pa55", TOKEN)  #: what must never show (each part of the password on its own)
RETRY = re.compile(r";? retry \d+ in [\d.]+ s")  #: the part of a backoff reason that changes each time
SNAPSHOT_EVERY_S = 10.0  #: the main loop asks for a snapshot (and checks it for secrets) this often
BAD_SOURCES = ("corrupt", "mjpeg100", "twosize", "secret", "vanish")  #: issue 19's bad sources (see above)
OPTIONS = "open_timeout_s: 3, read_timeout_s: 2, stall_timeout_s: 2, backoff_initial_s: 0.5, backoff_max_s: 4"


class Observer(threading.Thread):
    """The main subscriber: every result's arrival time, stream, seq and latency; per stream the latest
    status, its measured frame rates, states and notes; every message checked for the secrets."""

    def __init__(self, address: str, stop: threading.Event) -> None:
        super().__init__(name="observer")
        self.address, self.stop = address, stop
        self.results: list[tuple[float, str, int, float]] = []  # (monotonic, stream, seq, capture_to_publish ms)
        self.status: dict[str, dict] = {}
        self.fps: dict[str, list[float]] = defaultdict(list)
        self.states: dict[str, Counter] = defaultdict(Counter)
        self.notes: dict[str, list[str]] = defaultdict(list)  # distinct reasons and warnings, the first few
        self.gaps = 0
        self.checked = 0  # messages checked for the secrets
        self.leaks: list[str] = []

    def run(self) -> None:
        last: dict[str, int] = {}
        with Subscriber(self.address, ("result.", "status.", "event."), rcvhwm=100000) as sub:
            while not self.stop.is_set():
                got = sub.recv(timeout=0.2)
                if got is None:
                    continue
                topic, m = got
                self.check(topic, m)
                if m.get("type") == "status":
                    self.on_status(m)
                elif m.get("type") == "result":
                    s, seq = m["stream"], m["seq"]
                    if s in last and seq > last[s] + 1:
                        self.gaps += seq - last[s] - 1
                    last[s] = seq
                    self.results.append((time.monotonic(), s, seq, float(m["latency_ms"]["capture_to_publish"])))

    def check(self, where: str, message: dict) -> None:
        text = json.dumps(message, ensure_ascii=False)
        self.checked += 1
        if any(secret in text for secret in SECRETS):
            self.leaks.append(where)

    def on_status(self, m: dict) -> None:
        s = m["stream"]
        self.status[s] = m
        self.states[s][m["state"]] += 1
        if m["state"] == "running" and m.get("fps"):
            self.fps[s].append(float(m["fps"]))
        for note in [m.get("reason") or ""] + list(m.get("warnings") or []):
            note = RETRY.sub("", note)  # one note per reason, whichever retry it was
            if note and note not in self.notes[s] and len(self.notes[s]) < 4:
                self.notes[s].append(note)

    def publishing(self, t0: float, t1: float) -> set[str]:
        """Streams with a result that arrived in [t0, t1)."""
        found = set()
        for t, s, _, _ in reversed(self.results):
            if t < t0:
                break
            if t < t1:
                found.add(s)
        return found

    def wait_published(self, streams: set[str], after: float, deadline: float) -> dict[str, float]:
        """For each of ``streams``, the arrival time of its first result after ``after``, waiting until
        ``deadline`` at most for all of them; streams without one are left out."""
        while True:
            first: dict[str, float] = {}
            for t, s, _, _ in reversed(self.results):
                if t <= after:
                    break
                if s in streams:
                    first[s] = t
            if set(first) >= streams or time.monotonic() >= deadline:
                return first
            time.sleep(0.2)


class Sample(NamedTuple):
    t: float  #: monotonic
    rss: int  #: kB
    load: float  #: the machine's 1-minute load average
    fds: int  #: the pipeline's open files (sockets included)
    threads: int


def proc_counts(pid: int) -> tuple[int, int]:
    """(open files, threads) of process ``pid``, from /proc."""
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    status = Path(f"/proc/{pid}/status").read_text()
    threads = int(next(line.split()[1] for line in status.splitlines() if line.startswith("Threads:")))
    return fds, threads


class Sampler(threading.Thread):
    """The pipeline's RSS, open files and threads, and the machine's load average, every half second."""

    def __init__(self, pid: int, stop: threading.Event) -> None:
        super().__init__(name="rss-sampler")
        self.pid, self.stop = pid, stop
        self.samples: list[Sample] = []

    def run(self) -> None:
        while not self.stop.wait(0.5):
            try:
                self.samples.append(self.sample())
            except (FileNotFoundError, ProcessLookupError, RuntimeError, StopIteration):
                return  # the pipeline is gone

    def sample(self) -> Sample:
        return Sample(time.monotonic(), rss_kb(self.pid), os.getloadavg()[0], *proc_counts(self.pid))

    def before(self, t: float, field: str = "rss") -> int:
        return getattr(next((s for s in reversed(self.samples) if s.t <= t), self.samples[0]), field)

    def peak(self, t0: float, t1: float, field: str = "rss") -> int:
        return max((getattr(s, field) for s in self.samples if t0 <= s.t <= t1), default=self.latest(field))

    def latest(self, field: str = "rss") -> int:
        return getattr(self.sample(), field)


@dataclass(frozen=True)
class Plan:
    """What one soak runs: for how long, which sources, which faults how often."""

    minutes: float = 10.0
    cameras: int = 3  #: RTSP cameras, besides the pattern and the bad sources
    fault_every: float = 25.0  #: mean seconds between faults
    seed: int = 5
    kinds: tuple[str, ...] = KINDS + ONCE  #: fault kinds, in shuffled rounds (benchmarks/soak_faults.py)
    bad_sources: tuple[str, ...] = BAD_SOURCES  #: issue 19's bad sources to run beside the healthy ones
    tail_s: float = RECOVERY_S + 25  #: no fault starts closer than this to the end
    max_faults: int | None = None  #: end the run once this many faults are judged (a short check)
    warmup_s: float = WARMUP_S  #: no fault in this long after the first result (not quiet time either)


def make_sources(work: Path, plan: Plan) -> tuple[dict, list[dict], list, Path | None]:
    """Start the cameras' RTSP servers (and the MJPEG server), make the media; returns (servers, the
    sources as config entries, everything to close at the end, the ``vanish`` source's file)."""
    videos = [sample_videos_dir() / name for name in ("bikes.mp4", "carphone_pristine.mp4")] if plan.cameras else []
    servers = {f"cam{i}": RtspServer(videos[i % len(videos)], work) for i in range(plan.cameras)}
    for server in servers.values():
        server.start()
    sources = [{"id": sid, "url": s.url} for sid, s in servers.items()]
    sources.append({"id": "pattern", "url": "testpattern://?width=160&height=120&fps=25"})
    closers: list = list(servers.values())
    loop = {"mode": "live", "options": "loop: true"}
    bad = plan.bad_sources
    vanish = media.make_clip(work / "vanish.mp4", size="160x120", seconds=4) if "vanish" in bad else None
    if "corrupt" in bad:
        sources.append({"id": "corrupt", "url": str(media.corrupt_mp4(work)), **loop})
    if "mjpeg100" in bad:
        closers.append(media.MjpegServer(fps=100, size="160x120"))
        sources.append({"id": "mjpeg100", "url": closers[-1].url})
    if "twosize" in bad:
        sources.append({"id": "twosize", "url": str(media.two_size_ts(work)), **loop})
    if "secret" in bad:
        sources.append({"id": "secret", "url": f"rtsp://admin:{PASSWORD}@127.0.0.1:{free_port()}/x?token={TOKEN}"})
    if vanish is not None:
        sources.append({"id": "vanish", "url": str(vanish), **loop})
    return servers, sources, closers, vanish


def scrape_counters(url: str) -> dict[str, dict[str, float]]:
    """The pipeline's refusal and drop counters from its metrics endpoint: {metric: {labels: value}}."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=10) as reply:
        text = reply.read().decode()
    wanted = ("timesformer_snapshot_requests", "timesformer_publisher_queue_dropped", "timesformer_publisher_sent",
              "timesformer_drops", "timesformer_decode_errors")
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for family in text_string_to_metric_families(text):
        if family.name in wanted:
            for sample in family.samples:
                if not sample.name.endswith("_created"):
                    out[family.name][",".join(f"{v}" for _, v in sorted(sample.labels.items()))] = sample.value
    return dict(out)


class Checks:
    """The secret checks outside the live messages: snapshots now and then, the log at the end."""

    def __init__(self, snapshot: str) -> None:
        self.snapshot, self.next_at = snapshot, 0.0
        self.snapshots = self.unanswered = 0
        self.leaks: list[str] = []
        self.example: str | None = None  # the secret source as a snapshot shows it

    def maybe_snapshot(self) -> None:
        if time.monotonic() < self.next_at:
            return
        self.next_at = time.monotonic() + SNAPSHOT_EVERY_S
        snap = request_snapshot(self.snapshot, timeout=3.0)
        if snap is None:
            self.unanswered += 1
            return
        self.snapshots += 1
        if any(secret in json.dumps(snap, ensure_ascii=False) for secret in SECRETS):
            self.leaks.append("snapshot")
        status = (snap["streams"].get("secret") or {}).get("status") or {}
        self.example = self.example or (status.get("source") and f"{status['source']} ({status.get('reason', '')})")

    def log(self, text: str) -> dict:
        lines = text.splitlines()
        return {"lines": len(lines), "about_secret": sum("secret" in line for line in lines),
                "leaks": sum(any(s in line for s in SECRETS) for line in lines)}


def fault_loop(pipe: StreamProcess, target: Target, checks: Checks, plan: Plan, t0: float
               ) -> tuple[list[dict], str | None]:
    """Inject faults until the plan's end; returns (the fault records, why the pipeline crashed or None)."""
    rng = random.Random(plan.seed)
    faults: list[dict] = []
    kinds = schedule(rng, plan.kinds, cameras=bool(target.servers))
    end = t0 + plan.minutes * 60.0
    next_fault = t0 + plan.warmup_s + rng.uniform(0.5, 1.5) * plan.fault_every
    while time.monotonic() < end:
        if pipe.proc.poll() is not None:
            return faults, f"exit {pipe.proc.returncode}"
        checks.maybe_snapshot()
        if plan.max_faults is not None and len(faults) >= plan.max_faults:
            break
        if time.monotonic() >= next_fault and end - time.monotonic() > plan.tail_s:
            rec = inject(next(kinds), rng, target)
            faults.append(rec)
            print(f"[{(rec['start'] - t0) / 60:5.1f} min] {rec['kind']:10s} {rec['stream'] or '-':12s} "
                  f"recovered={rec['recovered']} rss {rec['rss_before'] / 1024:.0f}->{rec['rss_after'] / 1024:.0f} MB "
                  f"fds {rec['fds_before']}->{rec['fds_after']} {rec.get('detail', '')} {'; '.join(rec['problems'])}",
                  flush=True)
            next_fault = time.monotonic() + rng.uniform(0.5, 1.5) * plan.fault_every
        time.sleep(min(1.0, max(0.1, end - time.monotonic())))
    return faults, None


def soak(plan: Plan, work: Path) -> dict:
    """Run the plan: the pipeline in its own process, the observer, the sampler and the faults; returns
    what the report (benchmarks/soak_report.py) and the verdicts (benchmarks/soak_verdicts.py) read."""
    model = make_tiny_model(work / "tiny-timesformer")
    address = free_tcp_address()
    servers, sources, closers, vanish = make_sources(work, plan)
    cfg = write_config(work / "soak.yaml", sources, window=f"{{stride: 2, hop: {HOP}}}", options=OPTIONS)
    stop = threading.Event()
    obs = Observer(address, stop)
    obs.start()
    pipe = StreamProcess(["--config", str(cfg), "--model", str(model), "--publish", address, "--metrics-port", "0"],
                         work / "run_stream.log")
    sampler = Sampler(pipe.pid, stop)
    crashed, exit_code, faults, counters, checks = None, None, [], {}, Checks(None)
    t0 = t_end = time.monotonic()
    try:
        checks = Checks(pipe.endpoint("snapshot"))
        metrics = pipe.endpoint("metrics")
        wait_until(lambda: len(obs.results) > 0, 90)
        sampler.start()
        t0 = time.monotonic()
        target = Target(servers, address, checks.snapshot, pipe.endpoint("control"), pipe, obs, sampler, vanish)
        faults, crashed = fault_loop(pipe, target, checks, plan, t0)
        t_end = time.monotonic()
        if crashed is None:
            counters = scrape_counters(metrics)
            exit_code = pipe.terminate(15)
    finally:
        pipe.close()
        time.sleep(1.0)
        stop.set()
        for thread in (obs, sampler):
            if thread.is_alive():
                thread.join(10)
        for closer in closers:
            closer.close()
    log = pipe.stderr()
    return {"t0": t0, "t_end": t_end, "plan": plan, "faults": faults, "obs": obs, "samples": sampler.samples,
            "checks": checks, "log": checks.log(log), "crashed": crashed, "exit_code": exit_code, "hop": HOP,
            "nice": os.nice(0), "counters": counters, "cameras": sorted(servers),
            "log_errors": [line for line in log.splitlines() if " ERROR " in line or "Traceback" in line]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=8.0, help="how long to run after the first result (default 8; "
                   "with start-up and the end about 10 minutes in all)")
    p.add_argument("--cameras", type=int, default=3, help="RTSP cameras (besides the pattern and the bad sources)")
    p.add_argument("--fault-every", type=float, default=20.0, help="mean seconds between faults")
    p.add_argument("--bucket", type=float, default=60.0, help="seconds per table row")
    p.add_argument("--seed", type=int, default=5)
    p.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = p.parse_args(argv)
    reason = rtsp_missing_reason() if args.cameras else None
    if reason:
        print(f"error: {reason} (or run with --cameras 0)", file=sys.stderr)
        return 1
    plan = Plan(minutes=args.minutes, cameras=args.cameras, fault_every=args.fault_every, seed=args.seed)
    with tempfile.TemporaryDirectory(prefix="soak-") as work:  # model, media, configs, server and pipeline logs
        r = soak(plan, Path(work))
    checked = verdicts(r)
    text = section(r, args.bucket, table(checked))
    print(text)
    print(json.dumps([{k: v for k, v in f.items() if k not in ("start", "end", "window_end", "before")}
                      for f in r["faults"]]))
    if not args.no_write:
        write_section(SECTION, text)
    return 0 if all(v.ok for v in checked) else 1


if __name__ == "__main__":
    sys.exit(main())

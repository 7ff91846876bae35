#!/usr/bin/env python
"""Cluster mode against one process: streams served at their target rate, and what the head's proxy hop costs.

One invocation runs the same live streams (``--streams`` synthetic sources, ``--fps`` each) through
``run_stream.py`` on one machine, then through ``run_stream.py --cluster local:W`` for each ``--workers``
W (a local Ray started and ended by the head), the built-in ``motion-demo`` model on CPU (one view,
fp32, one torch thread per pipeline). A subscriber in this process connects to the one publisher
address, waits until every stream has published, then records ``--seconds`` of results, stamping each
with its arrival time.

- *at target*: streams whose results in the recorded interval reach 90 % of ``seconds / hop``.
- *capture->receive*: arrival at the subscriber minus the capture time of the window's newest frame
  (``window.end_ts``; the same machine's wall clock): what a subscriber sees, the proxy hop included.
- *publish->receive*: arrival minus ``published_ts`` (stamped by the pipeline that ran the window):
  the hop itself (in cluster mode: worker publisher -> head's XSUB/XPUB -> subscriber).

    python -m benchmarks.bench_cluster [--workers 1 2 3] [--streams 6] [--fps 25] [--seconds 20] [--no-write]

Needs the ``[cluster]`` extra (Ray). Prints a table and replaces its own section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.report import emit, machine
from streamer.subscribe import Collector
from streamer.testing.processes import ANY_PORT, StreamProcess, wait_until

SECTION = "bench_cluster"
HOP_S = 0.24  #: configs/default.yaml's hop: the target is one result per stream every HOP_S
START_TIMEOUT_S = 240.0  #: Ray start, actors, model load per worker, on a loaded 2-core machine


def sources(streams: int, fps: int) -> list[str]:
    out = []
    for i in range(streams):
        out += ["--source", f"s{i}=synthetic://actions?seed={100 + i}&fps={fps}&width=160&height=120"]
    return out


def run_once(label: str, extra: list[str], streams: int, fps: int, seconds: float, folder: Path) -> dict:
    args = ["--model", "motion-demo", "--views", "single", "--precision", "fp32", "--publish", ANY_PORT,
            "--no-events", *sources(streams, fps), *extra]
    with StreamProcess(args, folder / f"{label}.log") as proc:
        arrivals = Collector(proc.endpoint("publisher", timeout=START_TIMEOUT_S), ("result.",), rcvhwm=100000)
        try:
            wanted = {f"s{i}" for i in range(streams)}
            if not wait_until(lambda: {m["stream"] for m in list(arrivals.messages)} >= wanted
                              or proc.proc.poll() is not None, START_TIMEOUT_S):
                raise SystemExit(f"{label}: not every stream published within {START_TIMEOUT_S:.0f} s:\n"
                                 f"{proc.stderr()[-3000:]}")
            began = time.time()
            time.sleep(seconds)
            ended = time.time()
            code = proc.terminate(30.0)
        finally:
            arrivals.close()
    if code != 0:
        raise SystemExit(f"{label}: exit {code}:\n{proc.stderr()[-3000:]}")
    got = zip(arrivals.arrived, arrivals.messages)
    return summarize(label, [(t, m) for t, m in got if began <= t < ended], streams, seconds)


def summarize(label: str, got: list[tuple[float, dict]], streams: int, seconds: float) -> dict:
    per_stream = [sum(m["stream"] == f"s{i}" for _, m in got) for i in range(streams)]
    expected = seconds / HOP_S
    receive = np.array([(t - m["window"]["end_ts"]) * 1000 for t, m in got])
    hop = np.array([(t - m["published_ts"]) * 1000 for t, m in got])
    publish = np.array([m["latency_ms"]["capture_to_publish"] for _, m in got
                        if m["latency_ms"].get("capture_to_publish") is not None])

    def pct(values: np.ndarray, q: float) -> float:
        return float(np.percentile(values, q)) if len(values) else float("nan")

    return {"label": label, "streams": streams, "results": len(got),
            "at_target": sum(n >= 0.9 * expected for n in per_stream), "min_share": min(per_stream) / expected,
            "recv_p50": pct(receive, 50), "recv_p99": pct(receive, 99), "pub_p50": pct(publish, 50),
            "hop_p50": pct(hop, 50), "hop_p99": pct(hop, 99)}


def table(rows: list[dict]) -> str:
    base = rows[0]
    head = ("| run | streams | at target | min results/expected | results | capture->publish p50 ms (in the pipeline) | "
            "publish->receive p50 / p99 ms | capture->receive p50 / p99 ms | capture->receive vs one process p50 / p99 |\n"
            "|---|---|---|---|---|---|---|---|---|\n")
    return head + "".join(
        f"| {r['label']} | {r['streams']} | {r['at_target']} | {r['min_share']:.2f} | {r['results']} | "
        f"{r['pub_p50']:.0f} | {r['hop_p50']:.1f} / {r['hop_p99']:.1f} | {r['recv_p50']:.0f} / {r['recv_p99']:.0f} | "
        f"{r['recv_p50'] / base['recv_p50']:.2f}x / {r['recv_p99'] / base['recv_p99']:.2f}x |\n" for r in rows)


def report(rows: list[dict], args: argparse.Namespace) -> str:
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    return (f"## Cluster mode (`benchmarks/bench_cluster.py`)\n\n"
            f"**Measured under load from other work on the same 2 cores (load average at the end {load}).** "
            f"The workers are CPU actors of a local Ray on this one machine, so more workers add no compute: "
            f"they share the same two cores (and each loads its own model). The figure that matters here is "
            f"the proxy hop: publish->receive and capture->receive, cluster against one process, same streams, "
            f"same run. Real scaling needs one worker per GPU node (docs/CLUSTER.md).\n\n"
            f"Machine: {machine('cpu')}.\n"
            f"Each run: {args.streams} synthetic live sources at {args.fps} fps (160x120), motion-demo, one "
            f"view, fp32, one torch thread per pipeline, configs/default.yaml window (a result every "
            f"{HOP_S} s per stream); {args.seconds:g} s recorded once every stream has published. *at target*: "
            f"streams with >= 90 % of the expected results.\n\n" + table(rows))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--streams", type=int, default=6)
    p.add_argument("--fps", type=int, default=25)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_cluster") as tmp:
        runs = [("one process", [])] + [(f"cluster local:{w}", ["--cluster", f"local:{w}"]) for w in args.workers]
        for label, extra in runs:
            rows.append(run_once(label.replace(" ", "_").replace(":", ""), extra, args.streams, args.fps,
                                 args.seconds, Path(tmp)))
            rows[-1]["label"] = label
            print(f"{label}: done", file=sys.stderr)
    emit(SECTION, report(rows, args), write=not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())

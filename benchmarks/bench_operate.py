"""Cost of the operator features per message and per frame; writes its section of BENCHMARKS.md.

    python -m benchmarks.bench_operate [--results 3000]

Every listener runs in the publisher thread after each send, so its cost per result adds to
``capture_to_publish``. Measured in-process on synthetic results (scores drawn at random, top 5):

* events: :class:`streamer.ops.events.EventStage` for a 9-class model and a 400-class model;
* metrics: :meth:`streamer.ops.metrics.Metrics.on_sent` (four histogram observations);
* snapshot: the last-value cache update, and a whole snapshot round trip over TCP loopback (4 streams);
* annotate: drawing the text on one frame, and drawing + MP4 encoding it, at three frame sizes.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

from benchmarks.report import machine, write_section
from streamer.core.stats import StatsRegistry
from streamer.config import AnnotateConfig, EventsConfig, MetricsConfig, SnapshotConfig
from streamer.ops.annotate import Annotator, draw
from streamer.ops.events import EventStage
from streamer.ops.metrics import Metrics
from streamer.outputs.snapshot import LastValueCache, SnapshotServer, request_snapshot

SECTION = "bench_operate"


def fake_results(n: int, labels: list[str], rng: np.random.Generator, stream: str = "cam") -> list[dict]:
    """Results whose true class changes every 15 windows (so events start and end)."""
    out = []
    for seq in range(n):
        logits = rng.normal(0.0, 1.0, len(labels))
        logits[(seq // 15) % len(labels)] += 3.0 + np.log(len(labels))  # the true class near 0.9
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        top = np.argsort(-probs)[:5]
        idx = list(range(seq * 5, seq * 5 + 15, 2))
        out.append({"type": "result", "version": 1, "stream": stream, "seq": seq,
                    "window": {"frame_indices": idx, "frame_ts": [1000.0 + i / 25 for i in idx],
                               "start_ts": 1000.0 + idx[0] / 25, "end_ts": 1000.0 + idx[-1] / 25},
                    "top_k": [{"label": labels[j], "score": float(probs[j])} for j in top],
                    "model": {"name": "bench", "precision": "fp32", "license": "none"},
                    "latency_ms": {"capture_to_publish": 3.0, "inference": 2.0, "frame_age_at_inference": 1.0,
                                   "batch_size": 2},
                    "published_ts": 1000.0 + seq})
    return out


def per_call_us(fn, items) -> float:
    start = time.perf_counter()
    for item in items:
        fn("result.cam", item)
    return (time.perf_counter() - start) / len(items) * 1e6


def bench_listeners(n: int) -> list[tuple[str, str]]:
    rng = np.random.default_rng(0)
    rows = []
    for classes in (9, 400):
        labels = [f"class_{i}" for i in range(classes)]
        results = fake_results(n, labels, rng)
        sent = []
        stage = EventStage(EventsConfig(), lambda topic, msg: sent.append(msg))
        us = per_call_us(stage.on_sent, results)
        starts = sum(m["phase"] == "start" for m in sent)
        rows.append((f"events, {classes} classes ({starts} events in {n} results)", f"{us:.1f} µs / result"))
    stats = StatsRegistry()
    stats.add("cam", "x")
    metrics = Metrics(MetricsConfig(), stats)
    rows.append(("metrics histograms", f"{per_call_us(metrics.on_sent, fake_results(n, ['a', 'b'], rng)):.1f} µs / result"))
    cache = LastValueCache(["cam"])
    rows.append(("snapshot cache update", f"{per_call_us(cache.on_sent, fake_results(n, ['a', 'b'], rng)):.2f} µs / result"))
    return rows


def bench_snapshot_round_trip(repeats: int = 200) -> tuple[str, str]:
    import zmq

    cache = LastValueCache()
    rng = np.random.default_rng(1)
    for s in range(4):
        for r in fake_results(3, ["a", "b", "c", "d", "e"], rng, stream=f"cam{s}"):
            cache.on_sent(f"result.cam{s}", r)
        cache.on_sent(f"status.cam{s}", {"type": "status", "stream": f"cam{s}", "state": "running"})
    ctx = zmq.Context()
    with __import__("socket").socket() as probe:
        probe.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{probe.getsockname()[1]}"
    server = SnapshotServer(SnapshotConfig(address=address), cache, ctx)
    server.start_and_wait()
    try:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            snap = request_snapshot(address, context=ctx)
            times.append(time.perf_counter() - start)
            assert snap is not None and len(snap["streams"]) == 4
    finally:
        server.stop()
        ctx.term()
    return ("snapshot round trip, 4 streams (new DEALER each)", f"{np.median(times) * 1e3:.2f} ms p50")


def bench_annotate(frames: int = 60) -> list[tuple[str, str]]:
    rows = []
    rng = np.random.default_rng(2)
    for width, height in ((160, 120), (640, 360), (1920, 1080)):
        frame = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
        lines = ["move_left 0.93", "cam0 running #1234"]
        draw(frame, lines)  # warm-up (font tables)
        start = time.perf_counter()
        for _ in range(frames):
            draw(frame, lines)
        draw_ms = (time.perf_counter() - start) / frames * 1e3
        stats = StatsRegistry()
        stats.add("cam", "x").state = "running"
        with tempfile.TemporaryDirectory() as tmp:
            annotator = Annotator(AnnotateConfig(path=f"{tmp}/out.mp4", queue_size=frames + 1), ["cam"], stats,
                                  fps_for=lambda s: 25.0)
            tap = annotator.tap("cam", lambda f: None, wait=True)
            for _ in range(frames):
                tap(frame)
            start = time.perf_counter()
            annotator.start()
            annotator.stop(timeout=120)
            total_ms = (time.perf_counter() - start) / frames * 1e3
        rows.append((f"annotate {width}x{height}: draw / draw + encode", f"{draw_ms:.2f} / {total_ms:.2f} ms per frame"))
    return rows



def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", type=int, default=3000, help="synthetic results per listener measurement")
    p.add_argument("--no-write", action="store_true", help="print the table only; leave BENCHMARKS.md alone")
    args = p.parse_args(argv)
    rows = bench_listeners(args.results) + [bench_snapshot_round_trip()] + bench_annotate()
    table = "| what | cost |\n|---|---|\n" + "".join(f"| {a} | {b} |\n" for a, b in rows)
    text = (f"## Operator features (`benchmarks/bench_operate.py`)\n\nMachine: {machine()}.\n"
            "Listeners run in the publisher thread after each send, so their cost per result adds to "
            "`capture_to_publish`. Events use the default rule (k-of-n 2 of 3, enter 0.6, exit 0.4). "
            "Annotation runs in its own thread (mp4v).\n\n" + table)
    print(table)
    if not args.no_write:
        write_section(SECTION, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

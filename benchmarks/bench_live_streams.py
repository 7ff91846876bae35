#!/usr/bin/env python
"""How many 25 fps synthetic live streams the motion-demo model keeps up with, and how well it labels them.

For each stream count N: N synthetic live sources (``synthetic://actions?seed=i&fps=25&width=160&
height=120``, paced to real time by the pipeline) run for ``--seconds`` through the default config's
window (8 frames over 1.28 s, a result every 0.24 s per stream), the built-in ``motion-demo``
checkpoint on CPU, and a real ZeroMQ subscriber. A stream count passes when no window was dropped
for freshness (``stale``), every stream captured >= 22.5 fps (over the whole run, start-up included) and
produced its results (>= 90 % of (duration - span) / hop). Windows whose frames all lie in one action segment are scored against the
synthetic ground truth (re-rendered from the seed), pooled over all runs into a confusion matrix.

    python -m benchmarks.bench_live_streams --precisions fp32 int8 --streams 4 8 16   # the issue's comparison
    python -m benchmarks.bench_live_streams [--streams 1 2 4 6 8] [--seconds 20] [--precisions fp32]
                                            [--views auto single] [--no-write]

Every (precision, views) pair runs every stream count, in one invocation; the table has a row each.
It imports the installed package (``pip install -e .``; from a checkout that is not installed, run it
with ``PYTHONPATH=.``). Prints a table and replaces its own section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from streamer.sources.cvenv import prepare_opencv_environment

prepare_opencv_environment()  # before cv2 is imported (by the modules below)
from streamer.configfile import build_config, load_yaml  # noqa: E402
from streamer.pipeline import Pipeline, tune_interpreter  # noqa: E402
from model.demo.render import CLASSES, Scene  # noqa: E402
from benchmarks.harness import run_observed  # noqa: E402
from benchmarks.report import machine, write_section  # noqa: E402

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "default.yaml"

SECTION = "bench_live_streams"


def free_tcp_address() -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"
FPS, WIDTH, HEIGHT = 25, 160, 120


def run_once(streams: int, seconds: float, precision: str, threads: int, views: str) -> tuple[dict, list[dict]]:
    address = free_tcp_address()
    data = load_yaml(CONFIG)
    data["sources"] = [{"id": f"s{i}", "url": f"synthetic://actions?seed={100 + i}&fps={FPS}&width={WIDTH}"
                        f"&height={HEIGHT}", "mode": "live"} for i in range(streams)]
    data["model"] = {**data.get("model", {}), "precision": precision, "device": "cpu", "threads": threads,
                     "views": views}
    data["publisher"] = {"address": address, "wait_subscribers": 1, "sndhwm": 100000, "queue_size": 100000}
    data["logging"] = {"status_line": "off", "level": "WARNING"}
    data["ui"], data["clips"] = {"enabled": False}, {"enabled": False}  # benchmarks/bench_console.py measures them
    data["run"] = {"duration_s": seconds}
    config = build_config(data)
    pipeline = Pipeline(config)
    observed = run_observed(pipeline, address, drain_s=0.5)
    results, elapsed = observed.results, observed.elapsed_s
    stale = sum(s.drops.get("stale", 0) for s in pipeline.stats)
    overwritten = sum(s.drops.get("overwritten", 0) for s in pipeline.stats)
    fps = [s.frames / elapsed for s in pipeline.stats]
    per_stream = [sum(r["stream"] == f"s{i}" for r in results) for i in range(streams)]
    expected = (elapsed - config.window.span_s) / config.window.hop_s
    age = np.array([r["latency_ms"]["frame_age_at_inference"] for r in results
                    if r["latency_ms"].get("frame_age_at_inference") is not None])
    latency = np.array([r["latency_ms"]["capture_to_publish"] for r in results
                        if r["latency_ms"].get("capture_to_publish") is not None])
    row = {
        "precision": results[0]["model"]["precision"] if results else precision,
        "mode": views, "views": views_of(results), "streams": streams, "seconds": elapsed, "min_fps": min(fps), "results": len(results),
        "min_results_share": min(per_stream) / max(expected, 1.0), "stale": stale, "overwritten": overwritten,
        "gaps": observed.gaps, "age_p50": float(np.percentile(age, 50)) if len(age) else float("nan"),
        "age_p99": float(np.percentile(age, 99)) if len(age) else float("nan"),
        "latency_p50": float(np.percentile(latency, 50)) if len(latency) else float("nan"),
        "batch_mean": float(np.mean([r["latency_ms"]["batch_size"] for r in results])) if results else float("nan"),
    }
    row["ok"] = stale == 0 and row["min_fps"] >= 0.9 * FPS and row["min_results_share"] >= 0.9
    return row, results


def confusion(results: list[dict]) -> np.ndarray:
    """Rows: truth, columns: prediction, over windows inside one segment (truth re-rendered from the seed)."""
    matrix = np.zeros((len(CLASSES), len(CLASSES)), dtype=np.int64)
    scenes: dict[str, Scene] = {}
    index = {c: i for i, c in enumerate(CLASSES)}
    for r in sorted(results, key=lambda r: (r["stream"], r["seq"])):
        stream = r["stream"]
        if stream not in scenes:
            scenes[stream] = Scene(100 + int(stream[1:]), WIDTH, HEIGHT, FPS)
        frames = r["window"]["frame_indices"]
        scene = scenes[stream]
        newest, oldest = scene.segment_for(frames[-1]), scene.segment_for(frames[0])
        if newest is not oldest:
            continue  # straddles a change of action: not scored
        matrix[index[newest.label], index[r["top_k"][0]["label"]]] += 1
    return matrix



def table(rows: list[dict]) -> str:
    head = ("| precision | views | streams | ok | min capture fps | results | min results/expected | stale drops | overwritten | "
            "seq gaps | mean batch | frame age p50 ms | frame age p99 ms | capture->publish p50 ms |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    return head + "".join(
        f"| {r['precision']} | {r['views']} | {r['streams']} | {'yes' if r['ok'] else 'no'} | {r['min_fps']:.1f} | {r['results']} | "
        f"{r['min_results_share']:.2f} | {r['stale']} | {r['overwritten']} | {r['gaps']} | {r['batch_mean']:.2f} | "
        f"{r['age_p50']:.0f} | {r['age_p99']:.0f} | {r['latency_p50']:.0f} |\n" for r in rows)


def matrix_table(matrix: np.ndarray) -> str:
    short = [c.replace("move_", "").replace("rotate_", "") for c in CLASSES]
    head = "| truth \\ predicted | " + " | ".join(short) + " | recall |\n|---" * 1 + "|---" * (len(CLASSES) + 1) + "|\n"
    lines = []
    for i, name in enumerate(CLASSES):
        total = matrix[i].sum()
        recall = f"{matrix[i, i] / total:.2f}" if total else "-"
        lines.append(f"| {name} | " + " | ".join(str(v) for v in matrix[i]) + f" | {recall} |")
    return head + "\n".join(lines) + "\n"


def views_of(results: list[dict]) -> str:
    return "/".join(str(v) for v in sorted({r["model"].get("views", 1) for r in results})) or "?"


def main() -> int:
    tune_interpreter()  # as run_stream.py does
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--streams", type=int, nargs="+", default=[1, 2, 4, 6, 8])
    p.add_argument("--seconds", type=float, default=20.0, help="duration of each run")
    p.add_argument("--precisions", nargs="+", default=["fp32", "int8"],
                   choices=("fp32", "bf16", "int8", "int8-x86", "int8-bnb", "auto"), help="CPU precisions to compare")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--views", nargs="+", default=["auto", "single"], choices=("auto", "single", "symmetric"),
                   help="model.views to compare (auto: the checkpoint's 8 mirror/transpose views per window)")
    p.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    args = p.parse_args()
    rows, pooled = [], {}
    for precision in args.precisions:
        for views in args.views:
            for n in args.streams:
                row, results = run_once(n, args.seconds, precision, args.threads, views)
                rows.append(row)
                pooled.setdefault((row["precision"], views), []).extend(results)
                print(table([row]).splitlines()[-1], flush=True)
    text = report(rows, pooled, args)
    print(text)
    if not args.no_write:
        write_section(SECTION, text)
    return 0


def report(rows: list[dict], pooled: dict, args) -> str:
    summary = []
    for (precision, views), results in pooled.items():
        passing = [r["streams"] for r in rows if r["mode"] == views and r["precision"] == precision and r["ok"]]
        m = confusion(results)
        passes = views_of(results)
        summary.append(f"- {precision}, model.views {views} ({passes} forward pass{'' if passes == '1' else 'es'} per "
                       f"window): **{max(passing) if passing else 0} streams** at once without freshness drops "
                       f"(of {', '.join(map(str, args.streams))} tried); accuracy {np.trace(m) / max(m.sum(), 1):.3f} "
                       f"over {m.sum()} windows inside one action segment")
    first = next(iter(pooled))
    return (
        "## Live synthetic streams with the motion-demo model (`benchmarks/bench_live_streams.py`)\n\n"
        f"Machine: {machine()}; load average at the end "
        f"{', '.join(f'{x:.1f}' for x in os.getloadavg())} (the machine is shared); torch threads {args.threads}; "
        f"precisions {', '.join(args.precisions)} (as each result reported it in model.precision).\n"
        f"Each row: N synthetic live sources at {FPS} fps ({WIDTH}x{HEIGHT}) for {args.seconds:g} s, configs/default.yaml "
        "window (8 frames over 1.28 s, hop 0.24 s, freshness 1.0 s), batches up to 8 windows; *views*: forward "
        "passes averaged per window (model.views). *ok*: no window dropped "
        "for freshness, every stream captured >= 22.5 fps (frames over the whole run, start-up included) and got "
        ">= 90 % of its expected results.\n\n"
        + table(rows) + "\n" + "\n".join(summary) + "\n\n"
        f"Confusion matrix, {first[0]}, model.views {first[1]} (windows inside one action segment, all rows):\n\n"
        + matrix_table(confusion(pooled[first]))
    )


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Console benchmark: what the web console, event clips and open pages cost the pipeline.

First, the comparison the numbers are read from: one pipeline run cut into segments that switch the
console and clips on and off (each alone and together) and open and close pages
(benchmarks/console_paired.py says why one run: between separate runs the p50 moved far more than the
effect being measured). Then separate runs:
Live runs of N synthetic cameras (160x120, 25 fps) through the motion-demo model (one view), the
embedded default's window and events, measured over the same span after a warm-up:
  off         the console and clips off;
  on          the console on a free loopback port and clips on (a temporary folder), no page open;
  on+pages    the same with P pages open in headless Chromium (one browser, P windows) in the idle
              scheduling class: on the same cores, it only gets CPU time the pipeline does not want,
              standing in for the operator's own machine (a browser is not where the cameras are);
  on+pages, browser competing
              (--competing) once more with the browser at normal priority, sharing the 2 cores.
The three main runs repeat --rounds times in rotating order, so a noisy neighbour hits every mode alike;
reported per mode: the median over rounds of capture→publish p50 and p99 (from the results a ZeroMQ
subscriber got), the ratio to `off` in each round and its median, and the pipeline process's CPU per
result (its own threads, not the browser's), seconds from start to the first result, results in the
measured span and frames/windows dropped (every reason, the whole run); page update latency (result published → the tile shows it,
measured in each page); the clip writer's CPU.

Then the clip writer alone, recording one stream continuously (an event that never ends), frames from
the synthetic renderer at 160x120 and 1280x720: CPU seconds per second of video = share of one core
per recording stream.

    python -m benchmarks.bench_console [--streams 8] [--pages 3] [--cycles 6] [--segment-s 20] [--seconds 40]
                                       [--rounds 1] [--competing]
    python -m benchmarks.bench_console --smoke        # 2 streams, 1 page, short runs, nothing written

Prints tables and replaces its section of BENCHMARKS.md unless --no-write/--smoke.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from streamer.sources.cvenv import prepare_opencv_environment

prepare_opencv_environment()  # before cv2 is imported
from benchmarks.console_paired import SETTLE_S, paired_table, run_paired  # noqa: E402
from benchmarks.harness import run_observed  # noqa: E402
from benchmarks.report import machine, write_section  # noqa: E402
from streamer.testing.chromium import browser, missing_reason  # noqa: E402
from streamer.testing.processes import free_port, free_tcp_address  # noqa: E402
from streamer.configfile import build_config, load_yaml  # noqa: E402
from streamer.pipeline import Pipeline, tune_interpreter  # noqa: E402

SECTION = "bench_console"
WARMUP_S = 10.0  # results published before this are left out (model and page warm-up)


def config(streams: int, seconds: float, console: bool, clips_dir: Path, threads: int) -> tuple[dict, str]:
    default = load_yaml(Path(__file__).resolve().parents[1] / "configs" / "default.yaml")
    address = free_tcp_address()
    data = {
        "sources": [{"id": f"cam{i}", "url": f"synthetic://actions?seed={i}&fps=25&width=160&height=120",
                     "mode": "live"} for i in range(streams)],
        "window": default["window"], "batching": default["batching"], "events": default["events"],
        "model": {"source": "motion-demo", "views": "single", "precision": "fp32", "threads": threads},
        "publisher": {"address": address, "wait_subscribers": 1, "sndhwm": 100000, "queue_size": 100000},
        "logging": {"status_line": "off", "level": "WARNING"},
        "run": {"duration_s": seconds},
        "ui": {"enabled": console, "address": f"127.0.0.1:{free_port()}"},
        "clips": {"enabled": console, "dir": str(clips_dir)},
    }
    return data, address


class Pages(threading.Thread):
    """Opens ``count`` console pages once the console listens; collects their latencies at the end."""

    def __init__(self, pipeline: Pipeline, count: int, profile: Path, idle: bool) -> None:
        super().__init__(name="bench-pages", daemon=False)
        self.pipeline, self.count, self.profile, self.idle = pipeline, count, profile, idle
        self.done = threading.Event()
        self.latencies: list[float] = []
        self.error: str | None = None

    def run(self) -> None:
        deadline = time.monotonic() + 300
        while (self.pipeline.operate.console is None or not self.pipeline.operate.console.ready.is_set()) \
                and time.monotonic() < deadline and not self.done.is_set():
            time.sleep(0.1)
        console = self.pipeline.operate.console
        if console is None or not console.ready.is_set():
            self.error = "the console never started"
            return
        driver = browser(self.profile, idle=self.idle)
        try:
            handles = []
            for i in range(self.count):
                if i:
                    driver.switch_to.new_window("window")
                driver.get(console.url)
                handles.append(driver.current_window_handle)
            self.done.wait()
            for handle in handles:
                driver.switch_to.window(handle)
                self.latencies += driver.execute_script(
                    f"return window.consoleStats.latencies.filter((x, i, a) => i >= a.length * {WARMUP_FRACTION});")
        finally:
            driver.quit()


WARMUP_FRACTION = 0.2  # the first fifth of each page's updates is its warm-up


def live_run(args, console: bool, pages_open: int, work: Path, idle: bool = True) -> dict:
    data, address = config(args.streams, args.seconds, console, work / "clips", args.threads)
    pipeline = Pipeline(build_config(data))
    name = "off" if not console else "on" if not pages_open else "on+pages" if idle else "on+pages, browser competing"
    pages = Pages(pipeline, pages_open, work / f"profile-{name}-{time.monotonic_ns()}", idle) if pages_open else None
    if pages is not None:
        pages.start()
    cpu0, wall0 = time.process_time(), time.time()  # this process: the pipeline's threads (the browser is a child)
    try:
        observed = run_observed(pipeline, address, drain_s=0.3)
    finally:
        if pages is not None:
            pages.done.set()
            pages.join(120)
    cpu_s = time.process_time() - cpu0
    first_published = min(r["published_ts"] for r in observed.results)
    first = first_published + WARMUP_S
    latency = np.array([r["latency_ms"]["capture_to_publish"] for r in observed.results if r["published_ts"] >= first])
    dropped = sum(sum(stream.drops.values()) for stream in pipeline.stats)  # frames and windows, every reason
    row = {"run": name, "first_s": first_published - wall0, "results": len(latency), "dropped": dropped, "publish_p50": float(np.percentile(latency, 50)),
           "publish_p99": float(np.percentile(latency, 99)), "cpu_ms_per_result": 1000.0 * cpu_s / len(observed.results),
           "page_p50": None, "page_p99": None, "page_updates": 0, "clip_cpu": None, "clips": 0}
    if console:
        recorder = pipeline.operate.clips
        row.update(clip_cpu=recorder.cpu_s / observed.elapsed_s / args.streams, clips=recorder.written)
    if pages is not None:
        if pages.error or not pages.latencies:
            raise SystemExit(f"pages: {pages.error or 'no updates measured'}")
        page = np.array(pages.latencies) * 1000.0
        row.update(page_p50=float(np.percentile(page, 50)), page_p99=float(np.percentile(page, 99)),
                   page_updates=len(page))
    return row


def clip_cost(width: int, height: int, seconds: float, work: Path, preset: str) -> dict:
    """The clip writer recording one stream for ``seconds`` of 25 fps video with x264 ``preset``: CPU s per
    video s, and the clip's size."""
    from streamer.core.stats import StatsRegistry
    from streamer.ops.clips import ClipRecorder
    from streamer.config import ClipsConfig
    from streamer.sources.synthetic import SyntheticCapture

    fps = 25.0
    cap = SyntheticCapture(seed=3, fps=fps, width=width, height=height)
    frames = [cap.read()[1] for _ in range(int(2 * fps))]  # rendered once: the renderer's cost is not the writer's
    cap.release()
    stats = StatsRegistry()
    stats.add("cam", "synthetic://")
    root = work / f"cost-{width}-{preset}"
    rec = ClipRecorder(ClipsConfig(dir=str(work), pre_s=0.0, post_s=0.0, max_clip_s=3600, preset=preset), stats,
                       root=root, fps_for=lambda s: fps)
    t0 = time.time()
    rec.on_sent("event.cam", {"type": "event", "stream": "cam", "id": f"bench-{width}", "phase": "start",
                              "label": "x", "start_ts": t0, "start_frame": 0})
    rec.start()
    n, paced = int(seconds * fps), time.monotonic()
    for i in range(n):  # at the camera's pace, as the capture thread hands frames over
        delay = paced + i / fps - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        rec.on_frame("cam", i, time.time(), frames[i % len(frames)])
    rec.stop(600)
    size = sum(f.stat().st_size for f in root.glob("*/*.mp4"))
    return {"size": f"{width}x{height}", "preset": preset, "video_s": seconds, "cpu_s": rec.cpu_s,
            "core_share": rec.cpu_s / seconds, "missed": rec.missed, "kb": size / 1000}


MODES = ("off", "on", "on+pages")


def summary(runs: list[dict]) -> dict:
    """One mode's runs (one a round) -> the medians reported."""
    med = {k: float(np.median([r[k] for r in runs]))
           for k in ("first_s", "results", "dropped", "publish_p50", "publish_p99", "cpu_ms_per_result")}
    for k in ("page_p50", "page_p99", "page_updates", "clip_cpu", "clips"):
        values = [r[k] for r in runs if r[k] is not None]
        med[k] = float(np.median(values)) if values else None
    return {"run": runs[0]["run"], "rounds": len(runs), **med}


def tables(rounds: list[dict[str, dict]], extra: list[dict], costs: list[dict], args) -> str:
    rows = [summary([r[m] for r in rounds]) for m in MODES] + [summary([e]) for e in extra]
    out = [(f"{args.streams} synthetic live streams (160x120, 25 fps), motion-demo fp32 one view, {args.seconds:.0f} s "
           f"runs, first {WARMUP_S:.0f} s left out, {len(rounds)} rounds of off / on / on+pages in rotating order; "
           f"pages: {args.pages} open in headless Chromium on the same machine, in the idle scheduling class unless "
           "marked competing; clips on whenever the console is. Medians over rounds.\n"),
           ("| run | rounds | first result s | results | dropped | capture→publish p50 ms | p99 ms | pipeline CPU ms per result | "
            "page update p50 ms | p99 ms | page updates | clip writer, share of a core per stream | clips written |"),
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        page = (f"{r['page_p50']:.0f} | {r['page_p99']:.0f} | {r['page_updates']:.0f}" if r["page_p50"] is not None
                else "– | – | –")
        clip = f"{100 * r['clip_cpu']:.2f} % | {r['clips']:.0f}" if r["clip_cpu"] is not None else "– | –"
        out.append(f"| {r['run']} | {r['rounds']} | {r['first_s']:.1f} | {r['results']:.0f} | {r['dropped']:.0f} | {r['publish_p50']:.1f} | {r['publish_p99']:.0f} | "
                   f"{r['cpu_ms_per_result']:.1f} | {page} | {clip} |")
    out += ["\ncapture→publish p50 against `off` in the same round:\n",
            "| round | " + " | ".join(f"{m} / off" for m in MODES[1:]) + " |", "|---|" + "---|" * (len(MODES) - 1)]
    ratios = {m: [r[m]["publish_p50"] / r["off"]["publish_p50"] for r in rounds] for m in MODES[1:]}
    out += [f"| {i + 1} | " + " | ".join(f"{ratios[m][i]:.3f}" for m in MODES[1:]) + " |" for i in range(len(rounds))]
    out.append("| median | " + " | ".join(f"**{np.median(ratios[m]):.3f}**" for m in MODES[1:]) + " |")
    out += ["\nClip writer alone, one stream recorded continuously (worst case: an event that never ends):\n",
            "| frame size | x264 preset | video s | writer CPU s | share of one core per recording stream | "
            "clip kB | frames missed |",
            "|---|---|---|---|---|---|---|"]
    out += [f"| {c['size']} | {c['preset']} | {c['video_s']:.0f} | {c['cpu_s']:.2f} | {100 * c['core_share']:.1f} % | "
            f"{c['kb']:.0f} | {c['missed']} |" for c in costs]
    return "\n".join(out) + "\n"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--streams", type=int, default=8)
    p.add_argument("--pages", type=int, default=3)
    p.add_argument("--seconds", type=float, default=40.0, help="length of each live run")
    p.add_argument("--cycles", type=int, default=6, help="cycles of the one-run comparison (a segment per mode each)")
    p.add_argument("--segment-s", type=float, default=20.0, help="length of each segment of the one-run comparison")
    p.add_argument("--rounds", type=int, default=1, help="rounds of separate runs of off / on / on+pages, rotating")
    p.add_argument("--clip-seconds", type=float, default=20.0, help="video seconds per clip-cost row")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--competing", action="store_true",
                   help="one more run with the browser at normal priority, competing for the cores")
    p.add_argument("--note", default="", help="a line printed with the numbers (e.g. the machine's load)")
    p.add_argument("--smoke", action="store_true", help="2 streams, 1 page, short runs, nothing written")
    p.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    args = p.parse_args(argv)
    if args.smoke:
        args.streams, args.pages, args.seconds, args.clip_seconds, args.no_write = 2, 1, 20.0, 2.0, True
        args.rounds, args.competing, args.cycles, args.segment_s = 1, False, 1, 10.0
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    reason = missing_reason()
    if reason is not None:
        print(f"error: {reason}", file=sys.stderr)
        return 1
    tune_interpreter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data, address = config(args.streams, 24 * 3600.0, True, work / "clips-paired", args.threads)
        paired = run_paired(data, address, pages=args.pages, work=work, cycles=args.cycles, segment_s=args.segment_s)
        rounds = []
        for i in range(args.rounds):
            order = MODES[i % len(MODES):] + MODES[:i % len(MODES)]
            rounds.append({m: live_run(args, m != "off", args.pages if m == "on+pages" else 0, work) for m in order})
        extra = [live_run(args, True, args.pages, work, idle=False)] if args.competing else []
        costs = [clip_cost(w, h, seconds, work, preset) for w, h, seconds in
                 ((160, 120, args.clip_seconds), (1280, 720, args.clip_seconds / 2))
                 for preset in ("veryfast", "superfast")]  # the default, and a faster one
    body = (f"Machine: {machine()}.{(' ' + args.note) if args.note else ''}\n\n"
            f"One run cut into segments (benchmarks/console_paired.py): {args.streams} synthetic live streams "
            f"(160x120, 25 fps), motion-demo fp32 one view, {args.cycles} cycles of {args.segment_s:.0f} s segments "
            f"(the first {SETTLE_S:.0f} s of each left out), modes in rotating order; pages: {args.pages}. "
            "`console` and `console+pages` switch the clip recorder off (the web console's own cost); the `on` rows have "
            "both. Medians over cycles; the ratios are to `off` in the same cycle.\n\n" + paired_table(paired) +
            "\nSeparate runs (the whole process each; their p50 also carries how the streams happened to line up "
            "at start, so the paired table above is the comparison):\n\n" + tables(rounds, extra, costs, args))
    print(body)
    if not args.no_write:
        write_section(SECTION, "## Console (`benchmarks/bench_console.py`)\n\n" + body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

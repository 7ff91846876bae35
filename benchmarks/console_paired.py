"""The console's cost measured inside one pipeline run, for ``benchmarks/bench_console.py``.

Why inside one run: capture→publish latency depends on how the streams' windows happen to line up
with the batches (when each camera's first frame arrived), which differs from one process to the
next. Between separate runs of the same configuration the median moved by -45 % to +26 %, so
separate runs cannot resolve a 5 % difference. Within one run that alignment is fixed, so the run is
cut into segments that switch the console's inputs on and off and open and close the pages:

  off        the console's and the clip recorder's inputs (frame taps, publisher listeners, finished
             clips) are switched off: their threads are there but idle (an idle aiohttp loop, a clip
             writer waiting on its wake-up), no page is open;
  console    the console's inputs on (previews kept, the page state folded), the clip recorder's off,
             no page open;
  console+pages  the same with the pages open, served to page clients that do what a page does on
             the network and render nothing (benchmarks/page_client.py, another process in the idle
             scheduling class): operators watching from their own machines, clips off. This and
             ``console`` are the web console's own cost; the clip writer's is the next two rows';
  on         both features' inputs on (clips written too), no page open;
  on+pages   both on, the pages open in page clients as above;
  on+chromium  both on, the pages open in headless Chromium on this machine instead (idle scheduling
             class): the page update latency a browser shows, and what a browser on the same 2 cores
             costs. Even in the idle class it slows the model: it shares the cores' caches and memory
             (two idle-class processes streaming memory raised capture→publish p50 by about a fifth,
             two that only spin did not), which is the browser's cost, not the console's.

Segments rotate through the modes in each cycle (the order shifts by one each cycle, so a
drift or a noisy neighbour hits every mode alike); the first ``settle_s`` of each segment is left
out (pages loading, clips catching up). Statistic, fixed before measuring: in each cycle the ratio
of a mode's capture→publish p50 to the same cycle's ``off``; the result is the median over cycles.

The switch is a class-level wrapper on the two features' input methods (benchmark only): it is
entered before the pipeline is built, so the capture threads' frame taps bind to it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MODES = ("off", "console", "console+pages", "on", "on+pages", "on+chromium")
#: per mode: (console inputs on, clip recorder inputs on)
FEATURES = {"off": (False, False), "console": (True, False), "console+pages": (True, False), "on": (True, True),
            "on+pages": (True, True), "on+chromium": (True, True)}
CLIENT_PAGES = ("console+pages", "on+pages")
SETTLE_S = 4.0  # left out at the start of each segment
_INPUTS = {"streamer.ops.clips:ClipRecorder": ("clips", ("on_frame", "on_sent")),
           "streamer.ops.console.server:Console": ("console", ("on_frame", "on_sent", "on_clip"))}


class Gate:
    """Switches the console's (``console``) and clip recorder's (``clips``) inputs for every instance, while entered."""

    def __init__(self) -> None:
        self.console = self.clips = True
        self._saved: list[tuple[type, str, object]] = []

    def __enter__(self) -> "Gate":
        import importlib

        for where, (feature, names) in _INPUTS.items():
            module, name = where.split(":")
            cls = getattr(importlib.import_module(module), name)
            for method in names:
                original = getattr(cls, method)
                self._saved.append((cls, method, original))
                setattr(cls, method, self._wrap(original, feature))
        return self

    def _wrap(self, original, feature: str):
        gate = self

        def gated(obj, *args):
            if getattr(gate, feature):
                return original(obj, *args)
            return None

        return gated

    def __exit__(self, *exc) -> None:
        for cls, method, original in reversed(self._saved):
            setattr(cls, method, original)
        self._saved.clear()


@dataclass
class Segment:
    mode: str
    cycle: int
    t0: float = 0.0  #: wall clock: measured span, after the settle time
    t1: float = 0.0
    cpu_s: float = 0.0  #: this process's CPU time in the span
    drops: dict = field(default_factory=dict)  #: frames and windows dropped in the span, by reason
    page_latencies: list[float] = field(default_factory=list)  #: seconds, result published -> tile shows it
    previews: int = 0  #: preview JPEGs the page clients got in the span
    writer_cpu_s: float = 0.0  #: the clip writer's CPU time in the span
    writer_switches: int = 0  #: times the clip writer changed scheduling class in the span (behind / caught up)


class Pages:
    """``count`` console pages in one headless Chromium (idle scheduling class), opened and closed on demand."""

    def __init__(self, url: str, count: int, profile: Path) -> None:
        from streamer.testing.chromium import browser

        self.url = url
        self.driver = browser(profile, idle=True)
        self.handles = [self.driver.current_window_handle]
        for _ in range(count - 1):
            self.driver.switch_to.new_window("window")
            self.handles.append(self.driver.current_window_handle)
        self.shown = False

    def show(self, on: bool) -> None:
        if on == self.shown:
            return
        for handle in self.handles:
            self.driver.switch_to.window(handle)
            self.driver.get(self.url if on else "about:blank")
        self.shown = on

    def reset(self) -> None:
        """Forget the updates measured so far (page warm-up)."""
        for handle in self.handles:
            self.driver.switch_to.window(handle)
            self.driver.execute_script("window.consoleStats.latencies = [];")

    def latencies(self) -> list[float]:
        out: list[float] = []
        for handle in self.handles:
            self.driver.switch_to.window(handle)
            out += self.driver.execute_script("return window.consoleStats.latencies;")
        return out

    def quit(self) -> None:
        self.driver.quit()


class Schedule(threading.Thread):
    """Waits for the pipeline's first result, then runs the segments and sets ``stop`` at the end."""

    def __init__(self, pipeline, collector, gate: Gate, *, pages: int, profile: Path, cycles: int,
                 segment_s: float, settle_s: float, warmup_s: float, stop: threading.Event) -> None:
        super().__init__(name="bench-schedule", daemon=True)
        self.pipeline, self.collector, self.gate = pipeline, collector, gate
        self.pages_count, self.profile = pages, profile
        self.cycles, self.segment_s, self.settle_s, self.warmup_s = cycles, segment_s, settle_s, warmup_s
        self.stop = stop
        self.segments: list[Segment] = []
        self.error: str | None = None

    def run(self) -> None:
        pages = None
        try:
            deadline = time.monotonic() + 300
            while not self.collector.messages and time.monotonic() < deadline and not self.stop.is_set():
                time.sleep(0.1)
            console = self.pipeline.operate.console
            if not self.collector.messages or console is None or not console.ready.is_set():
                self.error = "the pipeline published nothing or the console never started"
                return
            pages = Pages(console.url, self.pages_count, self.profile)
            time.sleep(self.warmup_s)
            for cycle in range(self.cycles):
                shift = cycle % len(MODES)
                for mode in MODES[shift:] + MODES[:shift]:
                    self.segments.append(self._segment(mode, cycle, pages))
        except Exception as exc:  # reported by the caller; the run stops either way
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            if pages is not None:
                pages.quit()
            self.stop.set()

    def _drops(self) -> dict:
        """Drops by reason, the windows handed to the model and the subscriber's missed results, so far."""
        out: dict = {"windows": 0, "missed by the subscriber": self.collector.gaps}
        for stream in self.pipeline.stats:
            out["windows"] += stream.windows
            out["frames"] = out.get("frames", 0) + stream.frames
            for reason, n in dict(stream.drops).items():
                out[reason] = out.get(reason, 0) + n
        return out

    def _writer(self) -> tuple[float, int]:
        """The clip writer's CPU seconds and scheduling class switches so far."""
        rec = self.pipeline.operate.clips
        if rec is None:
            return 0.0, 0
        return rec.cpu_s, rec.priority.switches if rec.priority is not None else 0

    def _segment(self, mode: str, cycle: int, pages: Pages) -> Segment:
        self.gate.console, self.gate.clips = FEATURES[mode]
        pages.show(mode == "on+chromium")  # loading pages in a starved browser takes a while: not in the segment
        begin = time.monotonic()
        clients = self._clients() if mode in CLIENT_PAGES else None
        time.sleep(max(0.0, begin + self.settle_s - time.monotonic()))
        if pages.shown:
            pages.reset()
        seg = Segment(mode, cycle, t0=time.time())
        cpu0, drops0, writer0 = time.process_time(), self._drops(), self._writer()
        time.sleep(max(0.0, begin + self.segment_s - time.monotonic()))
        seg.cpu_s, seg.t1 = time.process_time() - cpu0, time.time()
        writer1 = self._writer()
        seg.writer_cpu_s, seg.writer_switches = writer1[0] - writer0[0], writer1[1] - writer0[1]
        seg.drops = {k: v - drops0.get(k, 0) for k, v in self._drops().items() if v - drops0.get(k, 0)}
        if pages.shown:
            seg.page_latencies = pages.latencies()
        if clients is not None:
            out, _ = clients.communicate(timeout=30)
            got = json.loads(out)
            seg.page_latencies, seg.previews = got["latencies"], got["previews"]
        return seg

    def _clients(self) -> subprocess.Popen:
        """The page clients for one segment, ending with it."""
        return subprocess.Popen([sys.executable, "-m", "benchmarks.page_client", self.pipeline.operate.console.url,
                                 "--pages", str(self.pages_count), "--seconds", f"{self.segment_s - 0.5:.1f}",
                                 "--settle", f"{self.settle_s:.1f}"], stdout=subprocess.PIPE, text=True,
                                cwd=Path(__file__).resolve().parents[1])


def run_paired(config: dict, address: str, *, pages: int, work: Path, cycles: int, segment_s: float,
               settle_s: float = SETTLE_S, warmup_s: float = 10.0) -> list[dict]:
    """One pipeline run (``config``: console and clips on) cut into segments; a row per segment."""
    from streamer.configfile import build_config
    from streamer.pipeline import Pipeline
    from streamer.subscribe import Collector

    stop = threading.Event()
    with Gate() as gate:
        pipeline = Pipeline(build_config(config))
        collector = Collector(address, ("result.",), rcvhwm=100000)
        schedule = Schedule(pipeline, collector, gate, pages=pages, profile=work / "profile-paired", cycles=cycles,
                            segment_s=segment_s, settle_s=settle_s, warmup_s=warmup_s, stop=stop)
        schedule.start()
        try:
            code = pipeline.run(stop)
        finally:
            stop.set()
            schedule.join(120)
            collector.close(0.3)
    if code != 0:
        raise SystemExit(f"pipeline exited with {code}")
    if schedule.error:
        raise SystemExit(f"paired run: {schedule.error}")
    return [_row(seg, collector.messages) for seg in schedule.segments]


def _row(seg: Segment, results: list[dict]) -> dict:
    mine = [r["latency_ms"] for r in results if seg.t0 <= r["published_ts"] < seg.t1]
    if not mine:
        raise SystemExit(f"paired run: no result in the {seg.mode} segment of cycle {seg.cycle + 1}")
    latency = np.array([m["capture_to_publish"] for m in mine])
    page = np.array(seg.page_latencies) * 1000.0
    return {"mode": seg.mode, "cycle": seg.cycle, "results": len(latency),
            "p50": float(np.percentile(latency, 50)), "p99": float(np.percentile(latency, 99)),
            "forward_p50": float(np.median([m["inference"] for m in mine])),
            "age_p50": float(np.median([m["frame_age_at_inference"] for m in mine])),
            "batch": float(np.mean([m["batch_size"] for m in mine])),
            "cpu_ms_per_result": 1000.0 * seg.cpu_s / len(latency),
            "page_p50": float(np.percentile(page, 50)) if len(page) else None, "page_updates": len(page),
            "previews_per_s": seg.previews / (seg.t1 - seg.t0), "drops": seg.drops,
            "writer_share": seg.writer_cpu_s / (seg.t1 - seg.t0), "writer_switches": seg.writer_switches}


def paired_table(rows: list[dict]) -> str:
    """Per mode: medians over cycles; per cycle and mode: ratios to the same cycle's ``off``."""
    cycles = sorted({r["cycle"] for r in rows})
    by = {(r["cycle"], r["mode"]): r for r in rows}
    out = ["| mode | cycles | results a segment | capture→publish p50 ms | p99 ms | forward p50 ms | frame age at "
           "inference p50 ms | mean batch | pipeline CPU ms per result | page update p50 ms | previews served a "
           "second | clip writer, share of a core | clip writer class switches | p50 / off, median [min–max] | "
           "p99 / off, median | CPU / off, median |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    keys = ("results", "p50", "p99", "forward_p50", "age_p50", "batch", "cpu_ms_per_result", "previews_per_s",
            "writer_share", "writer_switches")
    for mode in MODES:
        mine = [by[c, mode] for c in cycles]
        med = {k: float(np.median([r[k] for r in mine])) for k in keys}
        pages = [r["page_p50"] for r in mine if r["page_p50"] is not None]
        page = f"{np.median(pages):.0f}" if pages else "–"
        previews = f"{med['previews_per_s']:.0f}" if mode in CLIENT_PAGES else "–"
        ratio = {k: [by[c, mode][k] / by[c, "off"][k] for c in cycles] for k in ("p50", "p99", "cpu_ms_per_result")}
        out.append(f"| {mode} | {len(mine)} | {med['results']:.0f} | {med['p50']:.1f} | {med['p99']:.0f} | "
                   f"{med['forward_p50']:.1f} | {med['age_p50']:.1f} | {med['batch']:.2f} | "
                   f"{med['cpu_ms_per_result']:.1f} | {page} | {previews} | "
                   f"{100 * med['writer_share']:.1f} % | {med['writer_switches']:.0f} | "
                   f"**{np.median(ratio['p50']):.3f}** [{min(ratio['p50']):.3f}–{max(ratio['p50']):.3f}] | "
                   f"{np.median(ratio['p99']):.3f} | {np.median(ratio['cpu_ms_per_result']):.2f} |")
    return "\n".join(out) + "\n"

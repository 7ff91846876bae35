"""The soak's tables (benchmarks/soak.py): over time, per fault kind, per source, and the secret checks.

*Windows*: a fault's window runs from its start to its end (socket attacks: plus an aftermath, see
soak_faults.py). *Quiet* time is the run minus every fault's window and the :data:`SETTLE_S` after
it (and after a camera's recovery). Ratios compare the other streams' results per second and their
capture-to-publish p50/p99 in a kind's windows with the same in quiet time.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from pathlib import Path

from benchmarks.report import machine
from benchmarks.soak_faults import FLOOD_RATE, FLOOD_S, HANDSHAKES, HOLD_S, MEMORY_KINDS, RSS_GROWTH_MB

SETTLE_S = 10.0  #: seconds after a fault (or a camera's recovery) that are not quiet yet
WARMUP_S = 10.0  #: seconds after the first result that are not quiet yet


def simd() -> str:
    """The widest x86 vector extension the CPU has (from /proc/cpuinfo), for the machine line."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "SIMD unknown"
    flags = set(next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), []))
    return "AVX-512" if "avx512f" in flags else "AVX2, no AVX-512" if "avx2" in flags else "no AVX2"


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, int(round(q / 100.0 * (len(v) - 1))))]


def _fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a is not None and b else "-"


class Windows:
    """Results by arrival time, counted and sampled over sets of time intervals."""

    def __init__(self, results: list[tuple[float, str, int, float]]) -> None:
        self.results = sorted(results)
        self.times = [r[0] for r in self.results]

    def take(self, intervals: list[tuple[float, float]], exclude: set[str]) -> tuple[int, float, list[float]]:
        """(results, seconds, latencies) of streams not in ``exclude`` over ``intervals``."""
        n, seconds, lat = 0, 0.0, []
        for a, b in intervals:
            seconds += max(0.0, b - a)
            for _, s, _, ms in self.results[bisect.bisect_left(self.times, a):bisect.bisect_left(self.times, b)]:
                if s not in exclude:
                    n += 1
                    lat.append(ms)
        return n, seconds, lat


def quiet_intervals(r: dict) -> list[tuple[float, float]]:
    busy = sorted((f["start"], max(f["window_end"], f["end"] + f.get("recovery_s", 0.0)) + SETTLE_S)
                  for f in r["faults"])
    out, pos = [], r["t0"] + r["plan"].warmup_s
    for a, b in busy:
        if a > pos:
            out.append((pos, a))
        pos = max(pos, b)
    if r["t_end"] > pos:
        out.append((pos, r["t_end"]))
    return out


def over_time(r: dict, bucket: float) -> str:
    t0 = r["t0"]
    rows = defaultdict(lambda: {"lat": [], "n": 0, "rss": None, "fds": None, "threads": None, "load": [], "faults": []})
    for t, _, _, lat in r["obs"].results:
        if t0 <= t <= r["t_end"]:
            rows[int((t - t0) // bucket)]["lat"].append(lat)
            rows[int((t - t0) // bucket)]["n"] += 1
    for sample in r["samples"]:
        if t0 <= sample.t <= r["t_end"]:
            row = rows[int((sample.t - t0) // bucket)]
            row["rss"], row["fds"], row["threads"] = sample.rss, sample.fds, sample.threads
            row["load"].append(sample.load)
    for f in r["faults"]:
        rows[int((f["start"] - t0) // bucket)]["faults"].append(f["kind"])
    lines = ["| minutes | RSS MB (end) | open files (end) | threads (end) | results | latency p50 ms | latency p99 ms "
             "| load avg | faults injected |", "|---|---|---|---|---|---|---|---|---|"]
    for k in sorted(rows):
        b = rows[k]
        load = f"{sum(b['load']) / len(b['load']):.1f}" if b["load"] else "-"
        lines.append(f"| {k * bucket / 60:g}-{(k + 1) * bucket / 60:g} | {_fmt(b['rss'] and b['rss'] / 1024, '.0f')} | "
                     f"{_fmt(b['fds'], 'd')} | {_fmt(b['threads'], 'd')} | {b['n']} | {_fmt(percentile(b['lat'], 50))} | {_fmt(percentile(b['lat'], 99))} | {load} | "
                     f"{', '.join(b['faults']) or '-'} |")
    return "\n".join(lines)


def _kind_row(kind: str, faults: list[dict], win: Windows, quiet: list[tuple[float, float]]) -> str:
    n = expected = 0.0
    lat: list[float] = []
    for f in faults:
        exclude = {f["stream"]} if f["stream"] else set()
        got, seconds, ms = win.take([(f["start"], f["window_end"])], exclude)
        q_n, q_s, _ = win.take(quiet, exclude)
        n, expected, lat = n + got, expected + (q_n / q_s * seconds if q_s else 0.0), lat + ms
    quiet_lat = win.take(quiet, set())[2]
    rec = [f.get("recovery_s") for f in faults if f.get("recovery_s") is not None]
    before = max(f["rss_before"] for f in faults) / 1024
    after = max(f["rss_after"] for f in faults) / 1024
    growth = max((f["rss_after"] - f["rss_before"]) / 1024 for f in faults)
    peak = max(f["rss_peak"] - f["rss_before"] for f in faults) / 1024
    problems = "; ".join(sorted({p for f in faults for p in f["problems"]}))
    bound = (" ok" if growth <= RSS_GROWTH_MB else " **over**") if kind in MEMORY_KINDS else ""
    p50, p99, q50, q99 = percentile(lat, 50), percentile(lat, 99), percentile(quiet_lat, 50), percentile(quiet_lat, 99)
    return (f"| {kind} | {len(faults)} | {sum(bool(f['recovered']) for f in faults)}"
            + (f" ({percentile(rec, 50):.1f} s / {max(rec):.1f} s)" if rec else "")
            + f" | {before:.0f} -> {after:.0f} | {growth:+.1f}{bound} (peak {peak:+.1f}) | {int(n)} | "
            f"{_ratio(n, expected)} | {_fmt(p50)} / {_fmt(q50)} = {_ratio(p50, q50)} | "
            f"{_fmt(p99)} / {_fmt(q99)} = {_ratio(p99, q99)} | {faults[0].get('detail', '-')} | {problems or '-'} |")


def per_kind(r: dict) -> str:
    win, quiet = Windows(r["obs"].results), quiet_intervals(r)
    by_kind: dict[str, list[dict]] = defaultdict(list)
    for f in r["faults"]:
        by_kind[f["kind"]].append(f)
    lines = ["| fault | count | recovered (median / max s) | RSS MB before -> after (max) | RSS growth MB, worst "
             "| others' results in windows | ... vs quiet rate | others' p50 ms fault / quiet | p99 ms fault / quiet "
             "| first one | problems |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [_kind_row(kind, faults, win, quiet) for kind, faults in sorted(by_kind.items())]
    q_n, q_s, _ = win.take(quiet, set())
    lines.append(f"\nQuiet time: {q_s:.0f} s of {r['t_end'] - r['t0']:.0f} s, {q_n / q_s if q_s else 0:.1f} results/s.")
    return "\n".join(lines)


def per_source(r: dict) -> str:
    obs, span = r["obs"], r["t_end"] - r["t0"]
    by_stream: dict[str, list[float]] = defaultdict(list)
    for t, s, _, _ in obs.results:
        if r["t0"] <= t <= r["t_end"]:
            by_stream[s].append(t)
    lines = ["| source | results | results/s | measured fps / hop | longest gap s | decode errors | drops | "
             "states seen | final state | notes |", "|---|---|---|---|---|---|---|---|---|---|"]
    for s, m in obs.status.items():
        times = by_stream.get(s, [])
        gap = max((b - a for a, b in zip(times, times[1:])), default=None)
        fps = percentile(obs.fps.get(s, []), 50)
        c = m["counters"]
        drops = ", ".join(f"{k} {v}" for k, v in sorted(c["drops"].items()) if v) or "-"
        states = ", ".join(f"{k} {v}" for k, v in obs.states[s].most_common())
        notes = "; ".join(n.replace("|", "/") for n in obs.notes.get(s, [])) or "-"
        lines.append(f"| {s} | {len(times)} | {len(times) / span:.2f} | "
                     f"{_fmt(fps and fps / r['hop'], '.2f')} | {_fmt(gap)} | {c['decode_errors']} | {drops} | "
                     f"{states} | {m['state']} | {notes} |")
    return "\n".join(lines)


def secrets(r: dict) -> str:
    obs, checks, log = r["obs"], r["checks"], r["log"]
    leaks = len(obs.leaks) + len(checks.leaks) + log["leaks"]
    return (f"Secrets (the `secret` source's password and token): {obs.checked} published messages checked "
            f"({sum(obs.states['secret'].values())} of them the `secret` stream's status), {checks.snapshots} "
            f"snapshots ({checks.unanswered} unanswered), {log['lines']} log lines ({log['about_secret']} about the "
            f"stream): **{leaks} leaks** (messages {len(obs.leaks)}, snapshots {len(checks.leaks)}, log "
            f"{log['leaks']}). The source as the snapshot shows it: `{checks.example}`.")


def summary(r: dict) -> str:
    obs = r["obs"]
    produced = sum(s["counters"]["results"] for s in obs.status.values())
    rss = [s.rss for s in r["samples"] if r["t0"] <= s.t <= r["t_end"]]
    load = [s.load for s in r["samples"] if r["t0"] <= s.t <= r["t_end"]]
    quarter = max(1, len(rss) // 4)
    faults = r["faults"]
    return "\n".join([
        f"Faults: {len(faults)}, recovered {sum(bool(f['recovered']) for f in faults)}.",
        f"Results: produced {produced} (pipeline counters), received {len(obs.results)}, lost {obs.gaps} "
        f"(seq gaps at the subscriber; at-most-once, expected 0 on loopback).",
        f"RSS: first quarter mean {sum(rss[:quarter]) / quarter / 1024:.0f} MB, last quarter mean "
        f"{sum(rss[-quarter:]) / quarter / 1024:.0f} MB, max {max(rss) / 1024:.0f} MB." if rss else "RSS: no samples.",
        f"Load average (1 min) during the run: mean {sum(load) / max(1, len(load)):.1f}, max {max(load, default=0):.1f} "
        f"on 2 cores shared with other work; the soak ran at nice {r['nice']}.",
        f"Crashes: {'none' if r['crashed'] is None else r['crashed']}; exit status on SIGTERM at the end: "
        f"{r['exit_code']}; ERROR lines in the log: {len(r['log_errors'])}."])


def section(r: dict, bucket: float, verdicts: str) -> str:
    """The whole BENCHMARKS.md section; ``verdicts``: their table (benchmarks/soak_verdicts.py)."""
    plan = r["plan"]
    return (f"## Soak (`benchmarks/soak.py`)\n\n"
            f"Machine: {machine()}; {simd()}; shared with other jobs: **measured under load** (see the load "
            f"average below).\n"
            f"{plan.minutes:g} minutes after the first result; run_stream.py (tiny TimeSformer, CPU, 1 torch thread, "
            f"live mode, stride 2, hop {r['hop']}) on {len(r['cameras'])} RTSP cameras (GStreamer server, bikes.mp4 "
            f"640x272 25 fps / carphone 176x144 30 fps), a test pattern (25 fps), issue 19's bad sources from the "
            f"start ({', '.join(plan.bad_sources)}: an mp4 with one 4 KB block zeroed, looping; HTTP MJPEG at 100 fps; "
            f"a TS of 320x240 then 1280x544, looping; an RTSP URL with a password holding `'` and a `?token=`, port "
            f"refused; a 4 s clip, looping, that the `vanish` fault deletes); a fault about every {plan.fault_every:g} s, "
            f"kinds in shuffled rounds: kill+restart a camera's server, SIGSTOP it, a subscriber that stops reading, "
            f"vanish (once), SIGHUP (reload the unchanged config), and issue 19's attacks (sub10mb: one 10 MB "
            f"SUBSCRIBE frame from a raw ZMTP peer; sub5x1mb: five of 1 MB; ctl10mb: one 10 MB request frame to the "
            f"control socket; snapframes: a snapshot request of 25,000 x 4 KB frames; snapflood: {FLOOD_RATE:,} "
            f"snapshot requests/s tried for {FLOOD_S:g} s; handshake: {HANDSHAKES} connections to each of the "
            f"publisher, snapshot and control ports, half a ZMTP greeting and silence, half garbage, held {HOLD_S:g} s). "
            f"Latency = capture_to_publish.\n\n"
            f"Verdicts (benchmarks/soak_verdicts.py):\n\n{verdicts}\n\n"
            f"{over_time(r, bucket)}\n\n"
            f"Per fault kind (recovered as defined in benchmarks/soak_faults.py; socket attacks' windows include "
            f"5 s after the attack; RSS growth = after - before, bound {RSS_GROWTH_MB:g} MB for the socket "
            f"attacks):\n\n{per_kind(r)}\n\n"
            f"Per source over the run (expected results/s = measured fps / hop):\n\n{per_source(r)}\n\n"
            f"{secrets(r)}\n\n{summary(r)}\n")

"""The soak's verdicts (benchmarks/soak.py): pass or fail per property, against issue 19's numbers.

| property                        | bound                                                                  |
|---------------------------------|------------------------------------------------------------------------|
| clean exit                      | no crash; exit 0 on SIGTERM at the end; no traceback in the log        |
| RSS over the run                | last quarter's mean - first quarter's mean <= 20 MB (issue 19: 294 -> 302 MB held) |
| memory attacks                  | each one refused (hung up on / refused with a reason), RSS +<= 20 MB after it |
| open files, threads             | last quarter's median - first quarter's <= 8 files, <= 4 threads; each handshake flood's files closed again |
| faults recovered                | every one (benchmarks/soak_faults.py says what that means per kind)    |
| no results lost                 | 0 seq gaps at the main subscriber (issue 19: 0 in its soak)            |
| healthy streams keep publishing | the cameras and the pattern: no gap between results over :data:`GAP_BOUND_S`, outside their own faults |
| others' rate in attacks         | other streams' results a second in each socket attack's window >= 80 % of quiet time |
| others' p99 in attacks          | their capture-to-publish p99 there <= 1.2 x quiet time (issue 19: "p99 unchanged within 20 %") |
| refusals counted                | the snapshot socket's ``refused`` >= snapframes attacks, ``limited`` > 0 after a flood |
| secrets                         | 0 leaks in messages, snapshots and the log                             |
| corrupt / mjpeg100 / twosize    | decode errors counted and results go on / results at the hop (>= 80 % of fps / hop) / results and a resolution note |
"""

from __future__ import annotations

import statistics
from typing import NamedTuple

from benchmarks.soak_faults import FDS_SLACK, MEMORY_KINDS, RECOVERY_S, RSS_GROWTH_MB
from benchmarks.soak_report import Windows, percentile, quiet_intervals

GAP_BOUND_S = 2.0  #: longest silence of a healthy stream outside its own faults (12x the hop at 25 fps)
THREADS_SLACK = 4  #: threads the pipeline may hold at the end beyond the start (a reconnect in flight)
RATE_FLOOR, P99_CEILING = 0.8, 1.2  #: other streams during a socket attack, vs quiet time


class Verdict(NamedTuple):
    name: str
    bound: str
    measured: str
    ok: bool


def _quarters(r: dict, field: str, average) -> tuple[float, float]:
    values = [getattr(s, field) for s in r["samples"] if r["t0"] <= s.t <= r["t_end"]]
    q = max(1, len(values) // 4)
    return average(values[:q]), average(values[-q:])


def _exit(r: dict) -> Verdict:
    tracebacks = sum("Traceback" in line for line in r["log_errors"])
    return Verdict("clean exit", "no crash; exit 0 on SIGTERM; no traceback",
                   f"crash {r['crashed'] or 'none'}; exit {r['exit_code']}; tracebacks {tracebacks}",
                   r["crashed"] is None and r["exit_code"] == 0 and tracebacks == 0)


def _memory(r: dict) -> list[Verdict]:
    first, last = _quarters(r, "rss", statistics.mean)
    peak = max((s.rss for s in r["samples"] if r["t0"] <= s.t <= r["t_end"]), default=0)
    drift = Verdict("RSS over the run", f"last - first quarter <= {RSS_GROWTH_MB:g} MB",
                    f"{first / 1024:.0f} -> {last / 1024:.0f} MB ({(last - first) / 1024:+.1f}), max {peak / 1024:.0f} MB",
                    (last - first) / 1024 <= RSS_GROWTH_MB)
    attacks = [f for f in r["faults"] if f["kind"] in MEMORY_KINDS]
    worst = max(attacks, key=lambda f: f["growth_mb"], default=None)
    refused = sum(bool(f.get("refused")) for f in attacks)
    return [drift, Verdict("memory attacks", f"each refused; RSS +<= {RSS_GROWTH_MB:g} MB after each",
                           f"{refused}/{len(attacks)} refused; worst {worst['growth_mb']:+.1f} MB ({worst['kind']})"
                           if worst else "none ran", bool(attacks) and refused == len(attacks)
                           and worst["growth_mb"] <= RSS_GROWTH_MB)]


def _leaks(r: dict) -> Verdict:
    fds = _quarters(r, "fds", statistics.median)
    threads = _quarters(r, "threads", statistics.median)
    floods = [f for f in r["faults"] if f["kind"] == "handshake"]
    left = max((f["fds_after"] - f["fds_before"] for f in floods), default=0)
    peak = max((f.get("fds_peak", 0) - f["fds_before"] for f in floods), default=0)
    return Verdict("open files, threads", f"end - start <= {FDS_SLACK} files, <= {THREADS_SLACK} threads; "
                   f"floods' files closed (<= {FDS_SLACK} left)",
                   f"files {fds[0]:.0f} -> {fds[1]:.0f}, threads {threads[0]:.0f} -> {threads[1]:.0f}; "
                   f"{len(floods)} floods: +{peak} files at peak, {left:+d} after",
                   fds[1] - fds[0] <= FDS_SLACK and threads[1] - threads[0] <= THREADS_SLACK and left <= FDS_SLACK)


def longest_gap(r: dict, stream: str) -> float:
    """The longest time between two results of ``stream``, leaving out gaps that overlap one of its own
    faults (from the fault's start to its recovery and 2 s more)."""
    own = [(f["start"], f["end"] + (f.get("recovery_s") or RECOVERY_S) + 2.0)
           for f in r["faults"] if f["stream"] == stream]
    times = [t for t, s, _, _ in r["obs"].results if s == stream and r["t0"] <= t <= r["t_end"]]
    edges = [r["t0"], *times, r["t_end"]]
    return max((b - a for a, b in zip(edges, edges[1:]) if not any(a < y and b > x for x, y in own)), default=0.0)


def _continuity(r: dict) -> list[Verdict]:
    faults = r["faults"]
    healthy = [*r["cameras"], "pattern"]
    gaps = {s: longest_gap(r, s) for s in healthy}
    worst = max(gaps, key=gaps.get)
    lost = r["obs"].gaps
    return [Verdict("faults recovered", "every one", f"{sum(bool(f['recovered']) for f in faults)}/{len(faults)}",
                    all(f["recovered"] for f in faults)),
            Verdict("no results lost", "0 seq gaps at the subscriber", f"{lost} lost of {len(r['obs'].results)}",
                    lost == 0),
            Verdict("healthy streams keep publishing", f"longest gap <= {GAP_BOUND_S:g} s outside their own faults",
                    f"worst {gaps[worst]:.2f} s ({worst}); " + ", ".join(f"{s} {g:.2f}" for s, g in gaps.items()),
                    gaps[worst] <= GAP_BOUND_S)]


def _attack_windows(r: dict) -> list[Verdict]:
    """Per socket-attack kind, the other streams' rate and p99 in its windows vs quiet time."""
    win, quiet = Windows(r["obs"].results), quiet_intervals(r)
    q_n, q_s, q_lat = win.take(quiet, set())
    q_p99 = percentile(q_lat, 99)
    rates, p99s = {}, {}
    for kind in sorted({f["kind"] for f in r["faults"] if f["kind"] in MEMORY_KINDS}):
        n, seconds, lat = win.take([(f["start"], f["window_end"]) for f in r["faults"] if f["kind"] == kind], set())
        rates[kind] = (n / seconds) / (q_n / q_s) if seconds and q_n else 0.0
        p99s[kind] = percentile(lat, 99) / q_p99 if lat and q_p99 else float("inf")
    if not rates:
        return []
    show = lambda d: ", ".join(f"{k} {v:.2f}x" for k, v in d.items())  # noqa: E731
    return [Verdict("others' rate in attacks", f">= {RATE_FLOOR:.0%} of quiet ({q_n / q_s:.1f}/s over {q_s:.0f} s)"
                    if q_s else "quiet time needed", show(rates), min(rates.values()) >= RATE_FLOOR),
            Verdict("others' p99 in attacks", f"<= {P99_CEILING:g}x quiet ({q_p99:.1f} ms)" if q_p99 else "quiet",
                    show(p99s), max(p99s.values()) <= P99_CEILING)]


def _counted(r: dict) -> Verdict:
    snap = r["counters"].get("timesformer_snapshot_requests", {})
    kinds = [f["kind"] for f in r["faults"]]
    refused, limited = snap.get("refused", 0), snap.get("limited", 0)
    ok = bool(snap) and refused >= kinds.count("snapframes") and (limited > 0 or "snapflood" not in kinds)
    hung = "; ".join(f"{f['kind']}: {f['detail']}" for f in r["faults"] if f["kind"] in ("sub10mb", "handshake"))[:160]
    return Verdict("refusals counted", "snapshot refused >= snapframes attacks; limited > 0 after a flood",
                   f"snapshot served {snap.get('served', 0):.0f}, refused {refused:.0f}, limited {limited:.0f}; "
                   f"publisher queue dropped {sum(r['counters'].get('timesformer_publisher_queue_dropped', {}).values()):.0f}"
                   + (f"; {hung}" if hung else ""), ok)


def _secrets(r: dict) -> Verdict:
    obs, checks, log = r["obs"], r["checks"], r["log"]
    leaks = len(obs.leaks) + len(checks.leaks) + log["leaks"]
    return Verdict("secrets", "0 leaks", f"{leaks} in {obs.checked} messages, {checks.snapshots} snapshots, "
                   f"{log['lines']} log lines", leaks == 0)


def _bad_sources(r: dict) -> list[Verdict]:
    obs, span, out = r["obs"], r["t_end"] - r["t0"], []
    count = lambda s: sum(1 for t, x, _, _ in obs.results if x == s and r["t0"] <= t <= r["t_end"])  # noqa: E731
    if "corrupt" in obs.status:
        c = obs.status["corrupt"]
        errors = c["counters"]["decode_errors"]
        out.append(Verdict("corrupt mp4", "decode errors counted; results go on, not ended",
                           f"{errors} decode errors, {count('corrupt')} results, {c['state']}",
                           errors > 0 and count("corrupt") > 0 and c["state"] not in ("ended", "failed")))
    if "mjpeg100" in obs.status:
        fps = statistics.median(obs.fps["mjpeg100"]) if obs.fps.get("mjpeg100") else 0.0
        rate = count("mjpeg100") / span
        out.append(Verdict("MJPEG at 100 fps", f">= {RATE_FLOOR:.0%} of measured fps / hop",
                           f"{rate:.1f} results/s at {fps:.0f} fps (hop {r['hop']}: {fps / r['hop']:.1f}/s)",
                           fps > 50 and rate >= RATE_FLOOR * fps / r["hop"]))
    if "twosize" in obs.status:
        noted = any("resolution changed" in n for n in obs.notes.get("twosize", []))
        out.append(Verdict("two-size TS", "results, and the resolution change said",
                           f"{count('twosize')} results; resolution note {'seen' if noted else 'not seen'}",
                           count("twosize") > 0 and noted))
    return out


def verdicts(r: dict) -> list[Verdict]:
    """Every property of the run, judged (see the module's table)."""
    return [_exit(r), *_memory(r), _leaks(r), *_continuity(r), *_attack_windows(r), _counted(r), _secrets(r),
            *_bad_sources(r)]


def table(checked: list[Verdict]) -> str:
    lines = ["| property | bound | measured | verdict |", "|---|---|---|---|"]
    lines += [f"| {v.name} | {v.bound} | {v.measured.replace('|', '/')} | {'pass' if v.ok else '**FAIL**'} |"
              for v in checked]
    return "\n".join(lines)

#!/usr/bin/env python
"""Service mode: a running monitor operated through its control socket (issue 21); its BENCHMARKS.md section.

run_stream.py runs in its own process (tiny TimeSformer on CPU, live test-pattern sources) with its
control socket on a free loopback port and a ``--state`` file; this script is an operator
(:class:`streamer.control.Client`) and a subscriber, as any client would be. Measured:

  first result   add -> the new stream's first result arrives (from sending the add), N times
  others         a stream left alone while 20 add/remove/update operations run against other
                 streams: its seq gaps and capture->publish p50/p99, against equally long quiet
                 periods (quiet and busy blocks alternate, same run, same background streams)
  cycles         100 add/remove cycles: the process's threads, open fds and RSS at the start, after
                 10 cycles and after 100
  round trip     ``list`` with 16 streams running: p50/p99 over many calls
  kill -9        the process killed at a random moment during 50 random operations, then started
                 again with the same --state: the restored set against the last acknowledged one

    python -m benchmarks.bench_control              # all of it (about 4 minutes on 2 busy cores)
    python -m benchmarks.bench_control --quick      # small counts, nothing written
"""

from __future__ import annotations

import argparse
import random
from collections import Counter
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from benchmarks.report import emit, load_average, machine, simd
from model.errors import ControlError
from streamer.control import Client
from streamer.subscribe import Subscriber
from streamer.testing.processes import StreamProcess, free_tcp_address, make_tiny_model, rss_kb, wait_until

SECTION = "bench_control"
KEEP = "keep"
KEEP_URL = "testpattern://?fps=25&width=64&height=48"
OTHER_URL = "testpattern://?fps=10&width=64&height=48&frames={n}"
CONFIG = "window: {stride: 1, hop: 1}\nbatching: {max_batch: 4, max_wait_ms: 5}\nevents: {enabled: false}\n"


def other_url(k: int = 0) -> str:
    """A 10 fps test pattern; ``k`` makes the URL differ (an update is a change) while it still runs for days
    (``frames`` 0 is endless, 10**7 + k frames is 11 days at 10 fps)."""
    return OTHER_URL.format(n=10**7 + k if k else 0)


class Monitor:
    """run_stream.py with a control socket and a state file, plus a subscriber recording every result."""

    def __init__(self, folder: Path, model: Path, sources: list[tuple[str, str]], name: str = "run") -> None:
        self.folder = folder
        self.publish, self.control = free_tcp_address(), free_tcp_address()  # fixed: a restart reuses them
        config = folder / "config.yaml"
        config.write_text(CONFIG)
        args = ["--config", str(config), "--model", str(model), "--publish", self.publish, "--control", self.control,
                "--state", str(folder / "state.json")]
        for stream, url in sources:
            args += ["--source", f"{stream}={url}"]
        self.proc = StreamProcess(args, folder / f"{name}.log")
        self.results: list[tuple[float, str, int, float]] = []  # (arrival monotonic, stream, seq, capture->publish ms)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, name="bench-subscriber")
        self._thread.start()
        self.client = Client(self.control, timeout=10.0)

    def _receive(self) -> None:
        with Subscriber(self.publish, ("result.",), rcvhwm=100000) as sub:
            while not self._stop.is_set():
                got = sub.recv(timeout=0.2)
                if got is not None:
                    m = got[1]
                    self.results.append((time.monotonic(), m["stream"], m["seq"],
                                         float(m["latency_ms"]["capture_to_publish"])))

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Until the control socket answers and ``keep`` has published a result."""
        def ready() -> bool:
            if self.proc.proc.poll() is not None:
                raise SystemExit(f"run_stream.py exited with {self.proc.proc.returncode}:\n"
                                 f"{self.proc.stderr()[-3000:]}")
            return any(r[1] == KEEP for r in self.results)

        if not wait_until(ready, timeout, 0.1):
            raise SystemExit(f"no result from {KEEP} within {timeout:g} s:\n{self.proc.stderr()[-3000:]}")

    def first_result_after(self, stream: str, since: float, timeout: float = 30.0) -> float | None:
        got = wait_until(lambda: next((t for t, s, _, _ in self.results if s == stream and t >= since), None),
                               timeout, 0.005)
        return None if got is None else got - since

    def proc_counts(self) -> tuple[int, int, int]:
        """(threads, open fds, RSS kB) of the monitor process."""
        pid = self.proc.pid
        status = Path(f"/proc/{pid}/status").read_text().splitlines()
        threads = next(int(line.split()[1]) for line in status if line.startswith("Threads:"))
        return threads, len(list(Path(f"/proc/{pid}/fd").iterdir())), rss_kb(pid)

    def close(self) -> None:
        self.client.close()
        try:
            self.proc.terminate(15)
        finally:
            self.proc.close()
            self._stop.set()
            self._thread.join()


def pct(values, q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else float("nan")


def keep_stats(mon: Monitor, start: float, end: float) -> tuple[list[float], int]:
    """``keep``'s latencies in [start, end) and its seq gaps there."""
    rows = [(seq, lat) for t, s, seq, lat in mon.results if s == KEEP and start <= t < end]
    seqs = [seq for seq, _ in rows]
    gaps = sum(b - a - 1 for a, b in zip(seqs, seqs[1:]) if b > a + 1)
    return [lat for _, lat in rows], gaps


# ---- the measurements ----------------------------------------------------------------------------
def first_results(mon: Monitor, n: int) -> list[float]:
    out = []
    for i in range(n):
        stream = f"new{i}"
        sent = time.monotonic()
        mon.client.add({"id": stream, "url": other_url()})
        took = mon.first_result_after(stream, sent)
        mon.client.remove(stream)
        if took is None:
            raise SystemExit(f"{stream}: no result within 30 s of its add")
        out.append(took)
    return out


BACKGROUND = ("bg0", "bg1")  #: other streams that run through both periods of `others`
#: the operations of one busy block, against the background and one extra stream (gone again at its end)
BLOCK_OPS = ("add extra", "update bg0", "update bg1", "remove extra", "update bg0")


def _operate(mon: Monitor, op: str, k: int) -> None:
    verb, stream = op.split()
    if verb == "remove":
        mon.client.remove(stream)
    else:
        getattr(mon.client, verb)({"id": stream, "url": other_url(k)})


def others(mon: Monitor, ops: int, seconds: float) -> dict:
    """``keep`` while the same background streams run: in quiet blocks with no operation, and in busy blocks
    with the operations of :data:`BLOCK_OPS` against the other streams, spread evenly; quiet and busy
    blocks alternate (``ops / len(BLOCK_OPS)`` pairs), so the machine's drift (other jobs) falls on both
    alike. ``seconds``: the quiet (and the busy) time in all."""
    rounds = ops // len(BLOCK_OPS)
    for stream in BACKGROUND:
        since = time.monotonic()
        mon.client.add({"id": stream, "url": other_url()})
        mon.first_result_after(stream, since)
    block_s = seconds / rounds
    quiet, busy, gaps, k = [], [], 0, 0
    for _ in range(rounds):
        t0 = time.monotonic()
        time.sleep(block_s)
        t1 = time.monotonic()
        for j, op in enumerate(BLOCK_OPS):
            _operate(mon, op, k)
            k += 1
            time.sleep(max(0.0, t1 + block_s * (j + 1) / len(BLOCK_OPS) - time.monotonic()))
        t2 = time.monotonic()
        for into, (a, b) in ((quiet, (t0, t1)), (busy, (t1, t2))):
            latencies, missed = keep_stats(mon, a, b)
            into.extend(latencies)
            gaps += missed
    for stream in BACKGROUND:
        mon.client.remove(stream)
    return {"quiet": quiet, "busy": busy, "gaps": gaps, "ops": k, "seconds": seconds}


def cycles(mon: Monitor, n: int) -> dict:
    base = mon.proc_counts()
    marks = {}
    for i in range(1, n + 1):
        mon.client.add({"id": "cycle", "url": other_url()})
        wait_until(lambda: any(s["id"] == "cycle" and s["frames"] > 0 for s in mon.client.list()), 10, 0.02)
        mon.client.remove("cycle")
        if i in (10, n):
            time.sleep(0.5)  # let the allocator settle before reading RSS
            marks[i] = mon.proc_counts()
    return {"base": base, "marks": marks, "n": n}


def round_trips(mon: Monitor, streams: int, calls: int) -> list[float]:
    for i in range(streams - 1):  # keep is the 16th
        mon.client.add({"id": f"rt{i}", "url": "testpattern://?fps=5&width=64&height=48"})
    wait_until(lambda: len(mon.client.list()) == streams, 10)
    out = []
    for _ in range(calls):
        start = time.perf_counter()
        listed = mon.client.list()
        out.append((time.perf_counter() - start) * 1000.0)
        assert len(listed) == streams
    for i in range(streams - 1):
        mon.client.remove(f"rt{i}")
    return out


def kill_once(folder: Path, model: Path, ops: int, rng: random.Random) -> tuple[bool, str]:
    """Random operations, SIGKILL at a random one, restart on the same --state; (restored as expected, detail)."""
    mon = Monitor(folder, model, [(KEEP, KEEP_URL)], name=f"kill-{rng.random():.6f}")
    try:
        mon.wait_ready()
        acked = {s["id"]: s["url"] for s in mon.client.list()}
        kill_at = rng.randrange(ops)
        inflight = None
        for k in range(ops):
            ids = sorted(acked)
            op = rng.choice(["add", "add", "remove", "update"]) if len(ids) > 1 else "add"
            stream = f"k{k}" if op == "add" else rng.choice([i for i in ids if i != KEEP] or [KEEP])
            url = other_url(k)
            request = {"op": op, "id": stream} if op == "remove" else {"op": op, "source": {"id": stream, "url": url}}
            if k == kill_at:
                threading.Timer(rng.uniform(0.0, 0.01), mon.proc.proc.kill).start()
            try:
                reply = mon.client.call(request)
            except ControlError:  # killed: no reply
                inflight = (op, stream, url)
                break
            if reply["ok"]:
                if op == "remove":
                    acked.pop(stream)
                else:
                    acked[stream] = url
        mon.proc.proc.wait(10)
    finally:
        mon.close()
    again = Monitor(folder, model, [(KEEP, KEEP_URL)], name="restart")  # --source is ignored: the state file wins
    try:
        wait_until(lambda: again.proc.proc.poll() is not None or _answers(again.client), 120)
        restored = {s["id"]: s["url"] for s in again.client.list()}
    finally:
        again.close()
    with_inflight = dict(acked)
    if inflight is not None:
        op, stream, url = inflight
        if op == "remove":
            with_inflight.pop(stream, None)
        else:
            with_inflight[stream] = url
    if restored == acked:
        return True, "last acknowledged set"
    if restored == with_inflight:
        return True, "last acknowledged set + the operation the kill interrupted (written, not yet answered)"
    return False, f"restored {sorted(restored)} but acknowledged {sorted(acked)}"


def _answers(client: Client) -> bool:
    try:
        client.list()
        return True
    except ControlError:
        return False


# ---- the report ------------------------------------------------------------------------------------
def report(first: list[float], oth: dict, cyc: dict, rtt: list[float], kills: list[tuple[bool, str]]) -> str:
    q99, b99 = pct(oth["quiet"], 99), pct(oth["busy"], 99)
    (t0, f0, r0), (t10, f10, r10), (tn, fn, rn) = cyc["base"], cyc["marks"][10], cyc["marks"][cyc["n"]]
    ok_kills = sum(ok for ok, _ in kills)
    lines = [
        "| measurement | result | target |",
        "|---|---|---|",
        f"| add -> first result (n={len(first)}) | p50 {pct(first, 50):.2f} s, max {max(first):.2f} s | <= 3 s |",
        f"| `{KEEP}` capture->publish, quiet / during {oth['ops']} ops ({oth['seconds']:g} s each, 2 other streams) | "
        f"p50 {pct(oth['quiet'], 50):.1f} / {pct(oth['busy'], 50):.1f} ms, p99 {q99:.1f} / {b99:.1f} ms "
        f"(x{b99 / q99:.2f}) | p99 <= x1.20 |",
        f"| `{KEEP}` seq gaps over both periods ({len(oth['quiet']) + len(oth['busy'])} results) | {oth['gaps']} | 0 |",
        f"| threads: start / after 10 / after {cyc['n']} cycles | {t0} / {t10} / {tn} | = start |",
        f"| open fds: start / after 10 / after {cyc['n']} cycles | {f0} / {f10} / {fn} | = start |",
        f"| RSS: start / after 10 / after {cyc['n']} cycles | {r0 / 1024:.0f} / {r10 / 1024:.0f} / {rn / 1024:.0f} MB "
        f"({(rn - r10) / r10 * 100:+.1f} % after 10) | within 10 % of after 10 |",
        f"| `list` round trip, 16 streams (n={len(rtt)}) | p50 {pct(rtt, 50):.2f} ms, p99 {pct(rtt, 99):.2f} ms | "
        f"p50 <= 5 ms |",
        f"| kill -9 during 50 random operations, restart with the same --state | {ok_kills} of {len(kills)} restored "
        f"the acknowledged set | all |",
    ]
    outcomes = Counter(detail for _, detail in kills)
    return "\n".join(lines) + "\n\nkill -9 outcomes: " + "; ".join(
        f"{n}x {detail}" for detail, n in sorted(outcomes.items())) + ".\n"


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--adds", type=int, default=10, help="add -> first result repetitions")
    p.add_argument("--ops", type=int, default=20, help="operations against other streams (a multiple of 5)")
    p.add_argument("--seconds", type=float, default=20.0, help="length of the quiet and the busy period")
    p.add_argument("--cycles", type=int, default=100, help="add/remove cycles")
    p.add_argument("--calls", type=int, default=300, help="list round trips")
    p.add_argument("--kills", type=int, default=5, help="kill -9 + restart rounds (50 random operations each)")
    p.add_argument("--quick", action="store_true", help="small counts (proves the script), nothing written")
    p.add_argument("--no-write", action="store_true", help="print only")
    args = p.parse_args(argv)
    if args.ops < len(BLOCK_OPS) or args.ops % len(BLOCK_OPS):
        p.error(f"--ops {args.ops}: the busy blocks run {len(BLOCK_OPS)} operations each; use a positive multiple of "
                f"{len(BLOCK_OPS)}")
    if args.quick:
        args.adds, args.ops, args.seconds, args.cycles, args.calls, args.kills = 2, 10, 4.0, 12, 30, 1
        args.no_write = True
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load_start = load_average()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = make_tiny_model(folder / "tiny")
        mon = Monitor(folder, model, [(KEEP, KEEP_URL)])
        try:
            mon.wait_ready()
            first = first_results(mon, args.adds)
            oth = others(mon, args.ops, args.seconds)
            cyc = cycles(mon, args.cycles)
            rtt = round_trips(mon, 16, args.calls)
        finally:
            mon.close()
        rng = random.Random(21)
        kills = []
        for i in range(args.kills):
            state = folder / f"kill{i}"
            state.mkdir()
            kills.append(kill_once(state, model, 50, rng))
    text = (
        "## Service mode (`benchmarks/bench_control.py`)\n\n"
        f"Machine: {machine()}; {simd()}; load average (1, 5, 15 min) at the start {load_start}, at the end "
        f"{load_average()}. **Measured while other jobs shared the 2 cores.**\n"
        "run_stream.py in its own process: tiny TimeSformer (32 px, 2 layers, 8 frames), CPU, one torch thread, "
        f"window stride 1 hop 1; `{KEEP}` is a live test pattern at 25 fps, the streams operated on are test "
        "patterns at 10 fps (64x48). This script drives the control socket with `streamer.control.Client` and "
        "subscribes over TCP loopback. capture->publish is each result's `latency_ms.capture_to_publish`.\n\n"
        + report(first, oth, cyc, rtt, kills)
    )
    emit(SECTION, text, write=not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Results' latency while the snapshot socket reads a 25,000-frame request: one ZeroMQ I/O thread for
every socket (how the pipeline ran before) against the pipeline's context now, where the publisher's
socket has an I/O thread to itself (streamer/endpoints.py: pipeline_context, pin_io).

A PUB socket sends a timestamp every 10 ms to a SUB on the same machine; a real SnapshotServer shares
the context. Each round measures a quiet period, then the same length during one many-frame request
(streamer.testing.zmtp.many_frame_request, ~100 MB). The two layouts alternate round by round, so the
machine's drift falls on both alike.

    python -m benchmarks.bench_io_threads [--rounds 4] [--seconds 2] [--no-write]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

import zmq

from benchmarks.report import emit, load_average, machine, simd
from streamer.config import SnapshotConfig
from streamer.endpoints import PUBLISH_IO, pin_io, pipeline_context
from streamer.outputs.snapshot import LastValueCache, SnapshotServer
from streamer.testing import zmtp

LAYOUTS = {"one I/O thread (before)": zmq.Context, "results on their own I/O thread (now)": pipeline_context}


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] if ordered else float("nan")


class Probe:
    """PUB -> SUB timestamps on ``ctx`` next to a snapshot server; latencies collected per phase."""

    def __init__(self, ctx) -> None:
        self.ctx = ctx
        self.pub = ctx.socket(zmq.PUB)
        pin_io(self.pub, PUBLISH_IO)
        self.pub.bind("tcp://127.0.0.1:*")
        self.sub = ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"")
        self.sub.connect(self.pub.getsockopt_string(zmq.LAST_ENDPOINT))
        self.server = SnapshotServer(SnapshotConfig(address="tcp://127.0.0.1:*"), LastValueCache([]), ctx)
        self.server.start_and_wait()
        self.port = int(self.server.endpoint.rsplit(":", 1)[1])
        self._stop = threading.Event()
        self._sender = threading.Thread(target=self._send, name="probe-pub")
        self._sender.start()
        self.collect(0.5)  # the subscription reaches the publisher

    def _send(self) -> None:
        while not self._stop.is_set():
            self.pub.send(repr(time.perf_counter()).encode())
            self._stop.wait(0.01)

    def collect(self, seconds: float) -> list[float]:
        out, end = [], time.monotonic() + seconds
        while time.monotonic() < end:
            if self.sub.poll(100):
                out.append((time.perf_counter() - float(self.sub.recv())) * 1000)
        return out

    def close(self) -> None:
        self._stop.set()
        self._sender.join()
        self.server.stop()
        self.pub.close(0)
        self.sub.close(0)
        self.ctx.term()


def round_of(make, seconds: float) -> tuple[list[float], list[float]]:
    probe = Probe(make())
    try:
        quiet = probe.collect(seconds)
        attack = threading.Thread(target=zmtp.many_frame_request, args=(probe.port,), kwargs={"timeout": seconds})
        attack.start()
        during = probe.collect(seconds)
        attack.join()
        return quiet, during
    finally:
        probe.close()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=4, help="rounds per layout (they alternate)")
    p.add_argument("--seconds", type=float, default=2.0, help="quiet, and attacked, time per round")
    p.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    args = p.parse_args(argv)
    got = {name: ([], []) for name in LAYOUTS}
    load_before = load_average()
    for _ in range(args.rounds):
        for name, make in LAYOUTS.items():
            quiet, during = round_of(make, args.seconds)
            got[name][0].extend(quiet)
            got[name][1].extend(during)
    rows = ["| layout | quiet p50 / p99 ms | during the request p50 / p99 ms | p99 ratio |", "|---|---|---|---|"]
    for name, (quiet, during) in got.items():
        rows.append(f"| {name} | {statistics.median(quiet):.2f} / {pct(quiet, 99):.2f} | "
                    f"{statistics.median(during):.2f} / {pct(during, 99):.2f} | ×{pct(during, 99) / pct(quiet, 99):.2f} |")
    body = "\n".join([
        "## Results' latency during a 25,000-frame snapshot request (`python -m benchmarks.bench_io_threads`)",
        "",
        f"{machine()}, {simd()}, shared with other jobs; {args.rounds} rounds of {args.seconds:g} s quiet + {args.seconds:g} s "
        f"attacked per layout, alternating; load average {load_before} at the start, {load_average()} at the end.",
        "",
        *rows,
    ])
    emit("io-threads", body, write=not args.no_write)


if __name__ == "__main__":
    main()

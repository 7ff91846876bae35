"""Run a pipeline in this process while a real ZeroMQ subscriber collects what it publishes.

Shared by the pipeline benchmarks: they differ in what they start and what they compute from the
results, not in how a run is observed.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass


@dataclass
class Observed:
    elapsed_s: float  #: wall time of ``pipeline.run``
    results: list[dict]  #: every result message the subscriber received, in order
    gaps: int  #: results missed, by seq (at-most-once delivery)


def run_observed(pipeline, address: str, *, drain_s: float = 0.5) -> Observed:
    """Run ``pipeline`` (a ``streamer.pipeline.Pipeline`` publishing on ``address``) to its end; exit on failure."""
    from streamer.subscribe import Collector

    collector = Collector(address, ("result.",), rcvhwm=100000)
    start = time.monotonic()
    try:
        code = pipeline.run(threading.Event())
        elapsed = time.monotonic() - start
    finally:
        collector.close(drain_s)  # messages still in flight on loopback
    if code != 0:
        raise SystemExit(f"pipeline exited with {code}")
    return Observed(elapsed, collector.messages, collector.gaps)

"""Process-wide tuning for a latency-sensitive run: the heap start-up made is frozen only where asked."""

from __future__ import annotations

import gc

from streamer import pipeline


def test_settle_heap_freezes_what_start_up_made_only_in_a_tuned_process(monkeypatch):
    before = gc.get_freeze_count()
    monkeypatch.setattr(pipeline, "_tuned", False)  # a library user's process: left alone
    pipeline.settle_heap()
    assert gc.get_freeze_count() == before
    monkeypatch.setattr(pipeline, "_tuned", True)  # run_stream.py, a cluster worker, a benchmark
    try:
        pipeline.settle_heap()
        assert gc.get_freeze_count() > before
    finally:
        gc.unfreeze()

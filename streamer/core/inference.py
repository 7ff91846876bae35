"""The inference thread: pull a batch of windows, run the model, softmax, top-k, hand results to the publisher.

The thread ends by itself when every finite source has ended or ``max_results`` is reached; an
exception ends it too and is kept in :attr:`InferenceWorker.failure` for the supervisor
(streamer/supervisor.py), which logs it once and stops the pipeline. A forward pass cannot be
interrupted: at shutdown the thread is joined against the one deadline and left behind after it.

"Stuck" is relative to what this model has shown it needs (:meth:`InferenceWorker.overdue`): a
batch is overdue after ``max(STUCK_FLOOR_S, STUCK_FACTOR x the slowest batch so far)``, and the
first batch (lazy initialization, nothing measured yet) after ``FIRST_BATCH_S``. A base model that
takes 9 s a window on two cores is slow, not stuck (R26).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Callable

from streamer.outputs import protocol
from streamer.outputs.publisher import Publisher
from streamer.core.scheduler import Scheduler

if TYPE_CHECKING:
    from model.loaded import LoadedModel

log = logging.getLogger(__name__)

STUCK_FLOOR_S = 30.0
STUCK_FACTOR = 10.0
FIRST_BATCH_S = 300.0


def stuck_after(slowest_s: float | None) -> float:
    """Seconds one batch may run before it is called stuck, given the slowest finished batch so far."""
    if slowest_s is None:
        return FIRST_BATCH_S
    return max(STUCK_FLOOR_S, STUCK_FACTOR * slowest_s)


class InferenceWorker(threading.Thread):
    """``run`` (the :class:`streamer.core.runner.ModelRunner` of ``model``'s network) on every batch."""

    def __init__(self, run: Callable, scheduler: Scheduler, publisher: Publisher, *, model: LoadedModel,
                 device: str, top_k: int, max_results: int | None = None) -> None:
        super().__init__(name="inference", daemon=False)
        self.run_model = run
        self.scheduler = scheduler
        self.publisher = publisher
        self.device = device
        self.labels = model.labels
        self.top_k = min(top_k, len(self.labels))
        self.model_info = model.info()
        self.max_results = max_results
        self.stop_event = threading.Event()
        self.finished = threading.Event()  # set when the thread ends, for whatever reason
        self.failure: BaseException | None = None  # what ended the thread, if not its normal end
        self.busy_since: float | None = None  # monotonic start of the running forward pass
        self.slowest_s: float | None = None  # the slowest finished batch so far
        self.results = 0

    def stop(self) -> None:
        self.stop_event.set()
        self.scheduler.notify()

    def overdue(self, now: float) -> float | None:
        """How long the running batch has run, if longer than :func:`stuck_after` allows; else None."""
        busy = self.busy_since
        if busy is None or now - busy <= stuck_after(self.slowest_s):
            return None
        return now - busy

    def doing(self) -> str:
        """What the thread is busy with (named when shutdown leaves it behind)."""
        busy = self.busy_since
        if busy is None:
            return "waiting for windows"
        return f"in a forward pass, {time.monotonic() - busy:.1f} s so far"

    def run(self) -> None:
        import torch

        try:
            with torch.inference_mode():
                while not self.stop_event.is_set():
                    got = self.scheduler.next_batch(self.stop_event)
                    if got is None:
                        break
                    if self._infer(torch, *got):
                        break
        except Exception as exc:  # R11: the supervisor reports it (once) and stops the pipeline
            self.failure = exc
        finally:
            self.busy_since = None
            self.finished.set()

    def _infer(self, torch, batch, windows) -> bool:
        """Run one batch and queue its results; True when max_results is reached."""
        start = time.monotonic()
        self.busy_since = start
        log.debug("batch of %d window(s) started", len(windows))
        x = batch.to(self.device, non_blocking=True) if self.device != "cpu" else batch
        logits = self.run_model(x)
        probs = torch.softmax(logits.float(), dim=-1)
        scores, indices = probs.topk(self.top_k, dim=-1)
        scores, indices = scores.cpu().tolist(), indices.cpu().tolist()
        took = time.monotonic() - start
        inference_ms = took * 1000.0
        self.slowest_s = took if self.slowest_s is None else max(self.slowest_s, took)
        self.busy_since = None
        n = len(windows)
        for b, w in enumerate(windows):
            if self.max_results is not None and self.results >= self.max_results:
                return True
            stats = w.stats
            seq = stats.next_seq
            stats.next_seq = seq + 1
            top = [{"label": self.labels[i], "score": round(s, 6)} for s, i in zip(scores[b], indices[b])]
            msg = protocol.result_message(
                stream=w.stream, session=stats.session, seq=seq, frame_indices=w.frame_indices,
                frame_ts=w.frame_ts, top_k=top, model=self.model_info, inference_ms=inference_ms,
                age_ms=(start - w.newest_mono) * 1000.0, batch_size=n, label=w.label)
            self.publisher.publish(protocol.result_topic(w.stream), msg, capture_mono=w.newest_mono, stats=stats)
            self.results += 1
        return self.max_results is not None and self.results >= self.max_results

"""The inference thread: pull a batch of windows, run the model, softmax, top-k, hand results to the publisher."""

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
        self.error: str | None = None
        self.busy_since: float | None = None  # monotonic start of the running forward pass
        self.results = 0

    def stop(self) -> None:
        self.stop_event.set()
        self.scheduler.notify()

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
        except Exception as exc:  # R11: report, and let the main loop shut down cleanly
            self.error = f"{type(exc).__name__}: {exc}"
            log.exception("inference failed")
        finally:
            self.busy_since = None
            self.finished.set()

    def _infer(self, torch, batch, windows) -> bool:
        """Run one batch and queue its results; True when max_results is reached."""
        start = time.monotonic()
        self.busy_since = start
        x = batch.to(self.device, non_blocking=True) if self.device != "cpu" else batch
        logits = self.run_model(x)
        probs = torch.softmax(logits.float(), dim=-1)
        scores, indices = probs.topk(self.top_k, dim=-1)
        scores, indices = scores.cpu().tolist(), indices.cpu().tolist()
        inference_ms = (time.monotonic() - start) * 1000.0
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
                stream=w.stream, seq=seq, frame_indices=w.frame_indices, frame_ts=w.frame_ts, top_k=top,
                model=self.model_info, inference_ms=inference_ms, age_ms=(start - w.newest_mono) * 1000.0,
                batch_size=n, label=w.label)
            self.publisher.publish(protocol.result_topic(w.stream), msg, capture_mono=w.newest_mono, stats=stats)
            self.results += 1
        return self.max_results is not None and self.results >= self.max_results

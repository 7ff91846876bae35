"""What a worker actor does, without Ray: run the existing :class:`~streamer.pipeline.Pipeline` over each
share of sources the head gives it, and report its health.

A *share* is the list of sources one :meth:`WorkerCore.assign` call hands over (the worker's initial
streams, or streams moved here from a lost worker). Each share is one ``Pipeline`` — the same capture
threads, rings, windows, batching, inference and publisher as on a single machine — run in a thread
of its own until it is released or the worker stops. Its configuration is the head's with what only
the head does taken out (:func:`share_config`): the snapshot socket, the web console, metrics, the
annotated video and run limits are the head's business or single-machine features; events, clips and
alerts stay with the stream (clips are written on the worker's node).

The share's publisher binds ``tcp://HOST:*`` (``HOST``: 127.0.0.1 when the worker shares the head's
machine, else the node's address) as an XPUB that holds capture until one subscriber, the head's hub,
has joined (``wait_subscribers: 1``), so the first results are not lost to the slow joiner. The head
passes each stream's first ``seq`` (one above the last one its subscribers saw), so a stream that
moves here goes on counting where it stopped.

Health (:meth:`WorkerCore.health`): the worker's name and incarnation (a new id each time the actor
process starts: a restarted actor is a new, empty worker), each share's state, each stream's state
and counters, the windows a second its streams ask of the model (``demand``) and, when ``--bench``
measured this device, the windows a second the model can take (``capacity``; :mod:`streamer.cluster.cost`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Iterable

from streamer.config import AppConfig, SourceConfig

log = logging.getLogger(__name__)

ASSIGN_TIMEOUT_S = 120.0  #: model load and bind of one share, at most
_RATE_WINDOW_S = 5.0  #: demand is measured over at least this long


def share_config(config: AppConfig, sources: Iterable[SourceConfig], host: str) -> AppConfig:
    """The head's config as one share runs it: these sources, a publisher on ``host`` that waits for the
    head's hub, and none of the head-only features (snapshot, control socket and state file, console,
    metrics, annotate, run limits)."""
    pub = config.publisher.model_copy(update={"address": f"tcp://{host}:*", "wait_subscribers": 1,
                                              "curve_secret_key": None, "curve_allow_dir": None})
    return config.model_copy(update={
        "sources": tuple(sources),
        "publisher": pub,
        "snapshot": config.snapshot.model_copy(update={"address": None}),
        "ui": config.ui.model_copy(update={"enabled": False}),
        "metrics": config.metrics.model_copy(update={"enabled": False}),
        "annotate": config.annotate.model_copy(update={"path": None, "window": False}),
        "run": config.run.model_copy(update={"max_windows": None, "duration_s": None}),
        "logging": config.logging.model_copy(update={"status_line": "off"}),
        "cluster": config.cluster.model_copy(update={"address": None}),
        "control": config.control.model_copy(update={"address": None, "state_file": None}),
    })


def measured_capacity(config: AppConfig, device: str) -> float | None:
    """Windows a second this device's model takes at ``max_batch``, as ``--bench`` measured it (None: not measured)."""
    from streamer.core import precision as prec

    label, source, batch = prec.device_name(device), config.model.source, config.batching.max_batch
    found = prec.lookup(label, source, batch)
    if found is None:
        return None
    recommended, measured = found
    wanted = recommended if config.model.precision == "auto" else config.model.precision
    entry = prec.read_cache().get(prec.cache_key(label, source), {}).get(str(measured), {})
    row = next((r for r in entry.get("rows", []) if r.get("precision") == wanted), None)
    return float(row["clips_per_s"]) if row and row.get("clips_per_s") else None


@dataclass
class _Share:
    id: str
    pipeline: object
    streams: tuple[str, ...]
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    code: int | None = None  # the pipeline's exit status once it returned
    error: str | None = None


class WorkerCore:
    def __init__(self, name: str, host: str) -> None:
        """``host``: the address the shares' publishers bind (reachable from the head)."""
        self.name = name
        self.host = host
        self.incarnation = uuid.uuid4().hex[:8]
        self.device: str | None = None
        self.capacity: float | None = None
        self._shares: dict[str, _Share] = {}
        self._count = 0
        self._lock = threading.Lock()
        self._rates: dict[str, tuple[float, int]] = {}  # stream -> (monotonic, windows + stale) at the last rate
        self._demand: dict[str, float] = {}
        log.info("worker %s (incarnation %s, pid %d) binds on %s", name, self.incarnation, os.getpid(), host)

    def assign(self, config: AppConfig, sources: list[SourceConfig], first_seq: dict[str, int],
               sessions: dict[str, str], timeout: float = ASSIGN_TIMEOUT_S) -> dict:
        """Start one share; returns ``{share, endpoint, streams}`` once its publisher is bound. Each stream
        goes on from ``first_seq`` under the ``session`` the head chose for this start of it.

        Raises the pipeline's own error (ConfigError, SourceError, CheckpointError, ...) when the share
        cannot start."""
        from model.errors import PublisherError
        from streamer.pipeline import Pipeline

        cfg = share_config(config, sources, self.host)
        pipeline = Pipeline(cfg)  # a bad source fails here, before anything starts
        for stream, seq in first_seq.items():
            pipeline.stats[stream].next_seq = seq  # results go on counting where subscribers saw them stop
            pipeline.stats[stream].session = sessions[stream]  # the head's: its replies and statuses named it
        with self._lock:
            self._count += 1
            share = _Share(f"{self.name}-{self.incarnation}-{self._count}", pipeline, tuple(s.id for s in sources))
            self._shares[share.id] = share
        self._note_device(cfg)
        share.thread = threading.Thread(target=self._run_share, args=(share,), name=f"share-{self._count}",
                                        daemon=False)
        share.thread.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            publisher = pipeline.publisher
            if publisher is not None and publisher.endpoint is not None:
                log.info("worker %s: share %s (%s) publishes on %s", self.name, share.id, ", ".join(share.streams),
                         publisher.endpoint)
                return {"share": share.id, "endpoint": publisher.endpoint, "streams": list(share.streams)}
            if share.code is not None:
                break
            time.sleep(0.02)
        self.release(share.id)
        raise PublisherError(f"worker {self.name}: share {share.id} did not start"
                             + (f": {share.error}" if share.error else f" within {timeout:g} s"))

    def _note_device(self, cfg: AppConfig) -> None:
        if self.device is None:
            from streamer.core.loading import resolve_device

            self.device = resolve_device(cfg.model.device, "fp32")[0]
            self.capacity = measured_capacity(cfg, self.device)

    def _run_share(self, share: _Share) -> None:
        try:
            share.code = share.pipeline.run(share.stop)
            share.error = share.pipeline.error
        except Exception as exc:  # the pipeline's start-up errors (bad checkpoint, bind): the share failed
            share.error, share.code = f"{type(exc).__name__}: {exc}", 1
            log.error("worker %s: share %s failed: %s", self.name, share.id, share.error)

    def release(self, share_id: str, timeout: float = 5.0) -> None:
        """Stop one share's pipeline and wait for it (its streams send their final status)."""
        with self._lock:
            share = self._shares.pop(share_id, None)
        if share is None:
            return
        share.stop.set()
        if share.thread is not None and share.thread.ident is not None:
            share.thread.join(timeout)
            if share.thread.is_alive():
                log.warning("worker %s: share %s still stopping after %.1f s", self.name, share_id, timeout)

    def remove(self, share_id: str, stream_id: str) -> dict:
        """Take one stream out of a share's running pipeline (its events end, its last status says
        ``removed``); a share left with no stream is released. ``{"released": bool}``; ControlError when
        the share or the stream is not here."""
        from model.errors import ControlError

        with self._lock:
            share = self._shares.get(share_id)
        if share is None or share.code is not None:
            raise ControlError(f"worker {self.name}: share {share_id} is not running")
        share.pipeline.streams.remove(stream_id)
        if share.pipeline.streams.list()["sources"]:
            return {"released": False}
        self.release(share_id)
        return {"released": True}

    def stop(self, timeout: float = 5.0) -> None:
        """Stop every share at once and wait for them against one deadline."""
        with self._lock:
            shares = list(self._shares.values())
            self._shares.clear()
        for share in shares:
            share.stop.set()
        deadline = time.monotonic() + timeout
        for share in shares:
            if share.thread is not None and share.thread.ident is not None:
                share.thread.join(max(0.0, deadline - time.monotonic()))

    def health(self) -> dict:
        """The report the head polls (plain JSON-ready data)."""
        with self._lock:
            shares = list(self._shares.values())
        streams: dict[str, dict] = {}
        for share in shares:
            for st in share.pipeline.stats:
                snap = st.snapshot()
                streams[st.stream] = {"share": share.id, "state": snap["state"], "reason": snap["reason"],
                                      "frames": snap["frames"], "results": snap["results"], "fps": snap["fps"],
                                      "drops": sum(snap["drops"].values()),
                                      "demand": self._rate(st.stream, snap["windows"] + snap["drops"]["stale"])}
        return {"worker": self.name, "incarnation": self.incarnation, "pid": os.getpid(), "host": self.host,
                "device": self.device, "capacity": self.capacity,
                "shares": {s.id: {"streams": list(s.streams), "running": s.code is None, "error": s.error}
                           for s in shares},
                "streams": streams}

    def _rate(self, stream: str, count: int) -> float | None:
        """Windows a second the stream asked for (run or skipped as stale), over the last few seconds."""
        now = time.monotonic()
        since = self._rates.get(stream)
        if since is None or count < since[1]:
            self._rates[stream] = (now, count)
        elif now - since[0] >= _RATE_WINDOW_S:
            self._demand[stream] = (count - since[1]) / (now - since[0])
            self._rates[stream] = (now, count)
        return self._demand.get(stream)


__all__ = ["WorkerCore", "share_config", "measured_capacity", "ASSIGN_TIMEOUT_S"]

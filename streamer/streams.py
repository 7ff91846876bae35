"""The pipeline's set of streams, changed while it runs: the control API's operations in one process.

Each running source is a :class:`Stream`: its plan, frame ring, scheduler cursor, counters (with a
fresh ``session``) and capture thread. :class:`StreamSet` adds, removes and replaces them under one
lock, so every operation is atomic as seen by the others (an ``update`` is never seen half done),
and implements :class:`streamer.control.api.SourceService` (the control socket, SIGHUP ``reload``).

A request is checked whole before anything changes: a duplicate or unknown id, more than
``run.max_sources`` streams, a source the YAML would refuse, a local camera that is not there
(``check_available``), a request while shutting down, or a state file that cannot be written is
refused with one line and the running set stays as it was. Then the state file is rewritten
(:mod:`streamer.control.state_file`, R24), then the change is made.

Adding a stream starts it like the streams of the start-up set. Removing one releases everything
it held (R23): the scheduler stops taking its windows (the cursor list is copy-on-write), its state
becomes ``removed`` (final: a result still in flight is not published), its capture thread is
stopped and joined (one blocked in OpenCV past :data:`REMOVE_JOIN_S` stays watched, and is joined at
shutdown), its counters leave the registry, and in the publisher thread its open events end with
reason ``removed``, its last status says ``removed``, then the snapshot cache, metrics label sets,
clip buffer and console preview forget it. With nothing left referring to its ring, the ring's frames
(CPU or device memory) are freed. A stream added again later starts ``seq`` at 0 in a new session.
"""

from __future__ import annotations

import itertools
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Optional

from model.errors import ControlError
from streamer.config import AppConfig, SourceConfig
from streamer.control.api import (assess, check_cap, check_known, check_new, list_entry, plan_reload,
                                  reload_allow_list, reload_with, save_state)
from streamer.core.ring import FrameRing
from streamer.core.scheduler import Scheduler, StreamCursor, WindowPlan, stagger
from streamer.core.stats import StatsRegistry, StreamState, StreamStats
from streamer.core.windows import frames_needed
from streamer.sources.capture import CaptureThread
from streamer.sources.table import SourcePlan, check_available, plan_source
from streamer.supervisor import Policy, Supervisor, Watched

if TYPE_CHECKING:
    from model.loaded import LoadedModel
    from streamer.ops.features import OperatorFeatures
    from streamer.outputs.publisher import Publisher

log = logging.getLogger(__name__)

REMOVE_JOIN_S = 2.0  #: a removed stream's capture thread is waited for this long before the reply


@dataclass(frozen=True)
class Runtime:
    """The parts of the running pipeline a stream plugs into."""

    model: LoadedModel
    device: str
    window: WindowPlan
    scheduler: Scheduler
    publisher: Publisher
    operate: OperatorFeatures
    supervisor: Supervisor

    def capacity_for(self, fps: float) -> int:
        """Frames a ring must hold at ``fps`` for one window (each capture thread sizes its ring from it, R10)."""
        w = self.window
        return frames_needed(w.num_frames, w.stride, w.span_s, w.hop, w.hop_s, fps)


@dataclass(frozen=True)
class Stream:
    """Everything one running source holds."""

    plan: SourcePlan
    stats: StreamStats
    ring: FrameRing
    cursor: StreamCursor
    capture: CaptureThread


class StreamSet:
    """The running streams by id (see the module docstring); a :class:`~streamer.control.api.SourceService`."""

    def __init__(self, config: AppConfig, stats: StatsRegistry, *, mode_override: Optional[str] = None,
                 reload_config: Optional[Callable[[], AppConfig]] = None) -> None:
        """``reload_config()``: the config as the files say now (``reload``, SIGHUP); None: reload is refused."""
        self.config = config
        self.stats = stats
        self.state_path = Path(config.control.state_file) if config.control.state_file else None
        self._mode = mode_override
        self._reload_config = reload_config
        self._lock = threading.Lock()
        #: the start-up set, planned (a config error or a missing camera fails here, before the model loads)
        self.initial: tuple[SourcePlan, ...] = tuple(self._plan(s) for s in config.sources)
        for plan in self.initial:
            stats.add(plan.id, plan.display_url)
        self._streams: dict[str, Stream] = {}  # copy-on-write: replaced whole under the lock
        self._runtime: Optional[Runtime] = None
        self._closing = False
        self._leftover: dict[str, CaptureThread] = {}  # supervisor name -> a removed stream's thread still ending
        self._launched = itertools.count()  # streams started so far: each live one gets its own point of the hop

    # ---- start and shutdown (main thread) ------------------------------------------------------
    def start(self, runtime: Runtime) -> None:
        """Start the start-up set; its state is written first (an unwritable state file fails here)."""
        with self._lock:
            self._save([plan.config for plan in self.initial])
            self._runtime = runtime
            self._streams = {plan.id: self._launch(plan, self.stats[plan.id]) for plan in self.initial}

    def close(self) -> None:
        """Shutting down: from now on every change is refused (list and health still answer)."""
        with self._lock:
            self._closing = True

    def captures(self) -> list[CaptureThread]:
        return [s.capture for s in self._streams.values()]

    def check_stall(self, now: float) -> None:
        """The stall watchdog of every stream, and the last of removed streams' threads let go (main thread)."""
        for stream in self._streams.values():
            stream.capture.check_stall(now)
        if self._leftover:
            with self._lock:
                for name, thread in list(self._leftover.items()):
                    if not thread.is_alive():
                        del self._leftover[name]
                        self._runtime.supervisor.forget(name)

    # ---- the control API --------------------------------------------------------------------------
    def add(self, source: SourceConfig) -> dict:
        with self._lock:
            self._check_open()
            check_new(source.id, self._streams)
            check_cap(len(self._streams) + 1, self.config.run.max_sources)
            plan = self._plan(source)
            self._save([*self._configs(), source])
            stream = self._launch(plan, self.stats.add(plan.id, plan.display_url))
            self._streams = {**self._streams, plan.id: stream}
            log.info("[%s] added (%s)", plan.id, plan.display_url)
            return self._started(stream)

    def remove(self, stream_id: str) -> dict:
        with self._lock:
            self._check_open()
            stream = self._known(stream_id)
            self._save([c for c in self._configs() if c.id != stream_id])
            self._streams = {i: s for i, s in self._streams.items() if i != stream_id}
            self._retire(stream, "removed by a control request")
            return {"id": stream_id}

    def update(self, source: SourceConfig) -> dict:
        with self._lock:
            self._check_open()
            old = self._known(source.id)
            plan = self._plan(source)
            self._save([source if c.id == source.id else c for c in self._configs()])
            self._retire(old, "updated: a new session follows")
            stream = self._launch(plan, self.stats.add(plan.id, plan.display_url))
            self._streams = {i: (stream if i == source.id else s) for i, s in self._streams.items()}
            log.info("[%s] updated (%s)", plan.id, plan.display_url)
            return self._started(stream)

    def list(self) -> dict:
        return {"sources": [self._entry(s) for s in self._streams.values()]}

    def health(self) -> dict:
        return assess(self.list()["sources"])

    def rebalance(self) -> dict:
        raise ControlError("rebalance: only a cluster head moves streams between workers (--cluster, "
                           "docs/CLUSTER.md); this process serves every stream itself")

    def reload(self) -> dict:
        """The CURVE allow folder read again (when CURVE is on: :func:`reload_allow_list`), then the config
        file's sources applied by id; a file that fails validation changes no source (logged once)."""
        curve = self._runtime.publisher.curve if self._runtime is not None else None
        keys = reload_allow_list(curve) if self._reload_config is not None else {}
        return {**reload_with(self._reload_config, self._lock, self._apply), **keys}

    # ---- helpers (under the lock) ---------------------------------------------------------------
    def _apply(self, config: AppConfig) -> dict:
        self._check_open()
        change = plan_reload(self._configs(), config.sources, self.config.run.max_sources, self._plan)
        self._warn_other_sections(config)
        self._save(list(config.sources))
        streams = dict(self._streams)
        for stream_id, reason in change.retired.items():
            self._retire(streams.pop(stream_id), reason)
        for source in config.sources:
            plan = change.planned.get(source.id)
            if plan is not None:
                streams[source.id] = self._launch(plan, self.stats.add(source.id, plan.display_url))
        self._streams = {s.id: streams[s.id] for s in config.sources}
        return change.reply()

    def _warn_other_sections(self, config: AppConfig) -> None:
        changed = [name for name in type(config).model_fields
                   if name != "sources" and getattr(config, name) != getattr(self.config, name)]
        if changed:
            log.warning("reload applies sources only; restart to apply the changes to %s", ", ".join(changed))

    def _check_open(self) -> None:
        if self._closing:
            raise ControlError("the pipeline is shutting down; nothing was changed")
        if self._runtime is None:
            raise ControlError("the pipeline is still starting; try again in a moment")

    def _known(self, stream_id: str) -> Stream:
        check_known(stream_id, self._streams)
        return self._streams[stream_id]

    def _plan(self, source: SourceConfig) -> SourcePlan:
        plan = plan_source(source, self._mode)  # ConfigError
        check_available(plan)  # SourceError: a local camera that is not there (names those that are)
        return plan

    def _configs(self) -> list[SourceConfig]:
        return [s.plan.config for s in self._streams.values()]

    def _save(self, sources: Iterable[SourceConfig]) -> None:
        save_state(self.state_path, sources)

    def _launch(self, plan: SourcePlan, stats: StreamStats) -> Stream:
        from model.preprocess import Preprocessor
        from streamer.core.device import DeviceStage

        rt = self._runtime
        ring = FrameRing(plan.config.options.ring_capacity or 64, blocking=not plan.live, device=rt.device)
        cursor = StreamCursor(plan.id, ring, stats, rt.window, plan.live, phase=stagger(next(self._launched)))
        # frames go up as uint8 and stay on the model's device (CPU too: the same code path)
        stage = DeviceStage(Preprocessor(rt.model.preprocess, device=rt.device, input_order="BGR"),
                            rt.model.input_dtype)
        capture = CaptureThread(plan, ring, rt.operate.tap(plan, stage), stats, capacity_for=rt.capacity_for,
                                on_frame=rt.scheduler.notify, on_state=rt.publisher.publish_status)
        rt.operate.add_stream(plan.id, capture)
        # a capture thread's failures are its stream's state (failed, or backoff and a reconnect)
        rt.supervisor.watch(Watched(capture.name, thread=lambda: capture, failure=lambda: None, policy=Policy.STREAM,
                                    may_end=True, doing=capture.doing))
        rt.scheduler.add(cursor)
        capture.start()
        return Stream(plan, stats, ring, cursor, capture)

    def _retire(self, stream: Stream, reason: str) -> None:
        rt, capture = self._runtime, stream.capture
        rt.scheduler.remove(stream.plan.id)  # no window of it is taken any more
        stream.stats.set_state(StreamState.REMOVED, reason)  # final; announced below, after its events end
        capture.stop(reason)
        capture.join(REMOVE_JOIN_S)
        rt.supervisor.forget(capture.name)
        if capture.is_alive():  # blocked in OpenCV: joined at shutdown with the others
            log.warning("[%s] capture thread still %s %.1f s after its removal; it ends on its own",
                        stream.plan.id, capture.doing(), REMOVE_JOIN_S)
            name = f"{capture.name} (removed, session {stream.stats.session})"
            self._leftover[name] = capture
            rt.supervisor.watch(Watched(name, thread=lambda: capture, failure=lambda: None, policy=Policy.STREAM,
                                        may_end=True, doing=capture.doing))
        self.stats.remove(stream.plan.id)
        rt.operate.remove_stream(rt.publisher, stream.stats)
        log.info("[%s] removed (%s)", stream.plan.id, reason)

    @staticmethod
    def _started(stream: Stream) -> dict:
        return {"id": stream.plan.id, "session": stream.stats.session, "state": str(stream.stats.state)}

    @staticmethod
    def _entry(stream: Stream) -> dict:
        snap = stream.stats.snapshot()
        return list_entry(stream.plan.config, url=stream.plan.display_url, mode="live" if stream.plan.live else "file",
                          state=snap["state"], reason=snap["reason"], session=stream.stats.session, fps=snap["fps"],
                          frames=snap["frames"], results=snap["results"], drops=sum(snap["drops"].values()))


__all__ = ["StreamSet", "Stream", "Runtime", "REMOVE_JOIN_S"]

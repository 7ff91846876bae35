"""The control API in cluster mode: one address, each operation carried out by the worker that owns the stream.

:class:`ClusterService` is the head's :class:`streamer.control.api.SourceService`: the control socket
(:class:`streamer.control.server.ControlServer`, as in single-machine mode) calls it from its own
thread; every change happens under the fleet's lock, so it never interleaves with a tick.

- ``add``: checked as single-machine mode checks it (a duplicate id, ``run.max_sources``, a source the
  YAML would refuse), then the stream waits for the next tick, which places it by expected cost like
  the streams at start (the head says ``connecting`` until a worker publishes it). The reply's
  ``session`` is the one its messages will carry: the head chooses each start's session and the
  worker runs the stream under it (a move to another worker is a new start, with a new session).
- ``remove``: the owning worker takes the stream out of its pipeline (its open events end, its last
  status says ``removed``); the reply comes once the worker confirmed, or after :data:`REMOVE_WAIT_S`
  (the stream is fenced at the head either way). A stream without a worker is removed by the head.
- ``update``: ``remove`` then ``add`` under the lock, as one step: a new session.
- ``list`` / ``health``: from what the head forwarded last (each stream's latest status), with the
  ``worker`` serving it. ``reload``: the config files' sources applied by id through the above.
- ``rebalance``: the only way a live stream moves while its worker is up (a worker that joins takes new
  and orphaned streams only): the fewest moves that even out the expected cost
  (:meth:`streamer.cluster.fleet.Fleet.rebalance`); each moved stream loses its window.

The running set is written to ``control.state_file`` before a change is made, as in single-machine
mode (R24), so a restarted head resumes it.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable, Optional

from model.errors import ControlError
from streamer.config import AppConfig, SourceConfig
from streamer.control.api import (assess, check_cap, check_known, check_new, list_entry, plan_reload,
                                  reload_allow_list, reload_with, save_state)
from streamer.redact import redact
from streamer.sources.table import plan_source

log = logging.getLogger(__name__)

REMOVE_WAIT_S = 5.0  #: a remove (or update) waits this long for the owning worker's confirmation


class ClusterService:
    def __init__(self, config: AppConfig, fleet, *, mode_override: Optional[str] = None,
                 reload_config: Optional[Callable[[], AppConfig]] = None) -> None:
        self.config = config
        self.fleet = fleet
        self.state_path = Path(config.control.state_file) if config.control.state_file else None
        self._mode = mode_override
        self._reload_config = reload_config
        self._closing = False

    def start(self) -> None:
        """The start-up set goes to the state file first, as in one process (an unwritable one fails here)."""
        with self.fleet.lock:
            self._save(self._configs())

    def close(self) -> None:
        """Shutting down: from now on every change is refused (list and health still answer)."""
        with self.fleet.lock:
            self._closing = True

    # ---- the operations --------------------------------------------------------------------------
    def add(self, source: SourceConfig) -> dict:
        with self.fleet.lock:
            self._check_open()
            check_new(source.id, self.fleet.streams)
            check_cap(len(self.fleet.streams) + 1, self.config.run.max_sources)
            source = self._planned(source)
            self._save([*self._configs(), source])
            return self._started(self.fleet.add(source))

    def remove(self, stream_id: str) -> dict:
        with self.fleet.lock:
            self._check_open()
            check_known(stream_id, self.fleet.streams)
            self._save([c for c in self._configs() if c.id != stream_id])
            call = self.fleet.remove(stream_id, "removed by a control request")
        self._confirm(call, stream_id)
        return {"id": stream_id}

    def update(self, source: SourceConfig) -> dict:
        with self.fleet.lock:
            self._check_open()
            check_known(source.id, self.fleet.streams)
            source = self._planned(source)
            self._save([source if c.id == source.id else c for c in self._configs()])
            call = self.fleet.remove(source.id, "updated: a new session follows")
            reply = self._started(self.fleet.add(source))
        self._confirm(call, source.id)
        return reply

    def list(self) -> dict:
        with self.fleet.lock:
            streams = list(self.fleet.streams.values())
        view = self.fleet.hub.cache.view()
        return {"sources": [self._entry(s, view.get(s.source.id)) for s in streams]}

    def health(self) -> dict:
        return assess(self.list()["sources"])

    def rebalance(self) -> dict:
        """Even out the workers' load by moving the fewest live streams; reply field ``moved``."""
        with self.fleet.lock:
            self._check_open()
            done = self.fleet.rebalance()
        return {"moved": [{"id": stream, "from": src, "to": dst} for stream, src, dst in done]}

    def reload(self) -> dict:
        """The CURVE allow folder read again (when CURVE is on: the head's sockets share it), then the config
        files' sources applied by id; a file that fails validation changes no source (logged once)."""
        keys = reload_allow_list(self.fleet.hub.curve) if self._reload_config is not None else {}
        return {**reload_with(self._reload_config, self.fleet.lock, self._apply), **keys}

    # ---- helpers (under the lock) -----------------------------------------------------------------
    def _apply(self, config: AppConfig) -> dict:
        self._check_open()
        change = plan_reload(self._configs(), config.sources, self.config.run.max_sources, self._planned)
        self._save(list(config.sources))
        for stream_id, reason in change.retired.items():
            self.fleet.remove(stream_id, reason)
        for source in config.sources:
            if source.id in change.planned:
                self.fleet.add(change.planned[source.id])
        return change.reply()

    def _check_open(self) -> None:
        if self._closing:
            raise ControlError("the cluster head is shutting down; nothing was changed")

    def _planned(self, source: SourceConfig) -> SourceConfig:
        """The source as the workers will run it (``--mode`` applied); ConfigError as the YAML's would be.
        Local cameras are checked on the worker that opens them."""
        if self._mode is not None:
            source = source.model_copy(update={"mode": self._mode})
        plan_source(source)
        return source

    def _configs(self) -> list[SourceConfig]:
        return [s.source for s in self.fleet.streams.values()]

    def _save(self, sources: list[SourceConfig]) -> None:
        save_state(self.state_path, sources)

    @staticmethod
    def _started(stream) -> dict:
        return {"id": stream.source.id, "session": stream.session, "state": str(stream.state)}

    @staticmethod
    def _confirm(call, stream_id: str) -> None:
        """Wait (outside the lock) for the owning worker to confirm a removal; it is fenced at the head anyway."""
        deadline = time.monotonic() + REMOVE_WAIT_S
        while call is not None and not call.done() and time.monotonic() < deadline:
            time.sleep(0.02)
        if call is not None and not call.done():
            log.warning("stream %s: its worker did not confirm the removal within %.0f s (fenced at the head)",
                        stream_id, REMOVE_WAIT_S)

    @staticmethod
    def _entry(stream, entry) -> dict:
        """One ``list`` row: the stream's latest status as the head forwarded it (of its current session),
        and its worker."""
        status = entry.status if entry is not None and entry.status is not None else {}
        if status.get("session") != stream.session:
            status = {}  # the previous start's (an update): what the head says for the new one meanwhile
        counters = status.get("counters", {})
        row = list_entry(stream.source, url=redact(stream.source.url),
                         mode="live" if plan_source(stream.source).live else "file",
                         state=status.get("state", str(stream.state)), reason=status.get("reason", stream.reason),
                         session=status.get("session", stream.session), fps=status.get("fps", 0.0),
                         frames=counters.get("frames", 0), results=counters.get("results", 0),
                         drops=sum(counters.get("drops", {}).values()))
        return {**row, "worker": status.get("worker")}


__all__ = ["ClusterService", "REMOVE_WAIT_S"]

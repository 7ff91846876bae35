"""The cluster head: what ``python run_stream.py --cluster ADDRESS`` runs instead of the single-machine Pipeline.

Start-up: the config is checked (:func:`check_supported`, every source planned: a config mistake
fails before Ray starts), every listening address is checked (streamer/endpoints.py), then
``started()`` (from here a signal only sets ``stop``: a half-started local Ray must be shut down, not
abandoned), then Ray is started or joined, the hub (XSUB per worker -> XPUB at ``publisher.address``)
and the snapshot socket are bound, the worker actors are asked for, the fleet places the streams,
and the control socket answers (streamer/cluster/control.py: each operation lands on the worker that
owns the stream); then systemd hears ``READY=1`` (when it started the head).

While it runs, the main thread waits on ``stop`` and every 0.1 s runs the fleet (health, placement,
reassignment: streamer/cluster/fleet.py), a pending SIGHUP (``reload``) and the supervisor (the hub
is fatal, the snapshot and control servers are restarted on their endpoints, as in single-machine mode).

Shutdown, in one ``finally``: control requests are refused from its start, the workers stop their
pipelines (their final status goes out through the hub), the head sends ``stopped`` for streams no
worker served, the snapshot and control servers and the hub close, then every worker actor is ended
and Ray is left (a local Ray this process started is shut down with all its processes), all within
:data:`SHUTDOWN_S`.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from model.errors import ConfigError
from streamer.control.api import reload_on_hangup
from streamer.config import AppConfig
from streamer.endpoints import Listen, check_free, pipeline_context
from streamer.sources.table import plan_source
from streamer.supervisor import Deadline, Policy, Supervisor, Watched, restarted

log = logging.getLogger(__name__)

WORKERS_STOP_S = 4.0  #: the workers' pipelines stop (each joins its threads within 1.5 s) within this
SERVERS_S = 1.0  #: then the hub and the snapshot server close within this
SHUTDOWN_S = 10.0  #: SIGTERM -> every worker ended, Ray left, exit (the whole shutdown)


def check_supported(config: AppConfig) -> None:
    """What cluster mode cannot do is refused with one line (ConfigError); what it leaves out is logged."""
    if config.run.max_windows is not None:
        raise ConfigError("run.max_windows: not available with --cluster (each worker would count its own); "
                          "use --duration, or stop the head with SIGTERM")
    if config.publisher.wait_subscribers:
        raise ConfigError("publisher.wait_subscribers: not available with --cluster (the head's publisher "
                          "forwards live streams); connect subscribers first, or use the snapshot socket")
    wanted = {"the web console": config.ui.enabled, "metrics": config.metrics.enabled,
              "the annotated video": config.annotate.active}
    off = [what for what, on in wanted.items() if on]
    if off:
        log.info("cluster mode: %s not served (single-machine features: they need the frames, which stay on "
                 "the workers)", ", ".join(off))


class ClusterHead:
    def __init__(self, config: AppConfig, *, mode_override: str | None = None,
                 reload_config: Callable[[], AppConfig] | None = None, notifier=None) -> None:
        """``reload_config()``: the config as its files say now (``reload``, SIGHUP); ``notifier``: systemd's."""
        from streamer.control.sdnotify import Notifier

        self._mode, self._reload_config = mode_override, reload_config
        self.notifier = notifier or Notifier({})
        if mode_override is not None:  # --mode: every source's mode, as the workers' pipelines will read it
            config = config.model_copy(update={"sources": tuple(s.model_copy(update={"mode": mode_override})
                                                                for s in config.sources)})
        check_supported(config)
        for source in config.sources:
            plan_source(source)  # ConfigError before Ray starts (cameras are checked on their worker)
        self.config = config
        self.supervisor = Supervisor()
        self.error: str | None = None
        self.hub = None
        self.fleet = None
        self.snapshot = None
        self.service = None  # streamer.cluster.control.ClusterService once the fleet runs
        self.control = None  # its control socket (control.address)

    def listens(self) -> list[Listen]:
        cfg = self.config
        out = [Listen("publisher", cfg.publisher.address, "--publish ADDRESS")]
        if cfg.snapshot.address is not None:
            out.append(Listen("snapshot", cfg.snapshot.address, "--snapshot ADDRESS"))
        if cfg.control.address is not None:
            out.append(Listen("control", cfg.control.address, "--control ADDRESS"))
        return out

    def run(self, stop: threading.Event, *, started: Callable[[], None] = lambda: None,
            hangup: threading.Event | None = None) -> int:
        """Serve until ``stop`` is set or ``run.duration_s`` has passed; 0, or 1 when the hub failed.
        ``hangup`` (SIGHUP): when set, the config files are read again and their sources applied."""
        import os

        # The CLI's own SIGINT/SIGTERM handler stops the head (R19); Ray's C++ failure handler would also
        # log a stack trace for every SIGTERM. Ray reads this when it is first imported (next line).
        os.environ.setdefault("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", "1")
        from streamer.cluster.raybackend import RayBackend  # ClusterError naming the extra if Ray is missing

        check_free(self.listens())
        started()
        backend = RayBackend(self.config.cluster, self.config.logging.level)
        deadline = None
        try:
            backend.connect()
            if stop.is_set():
                log.info("stop requested")
                return 0
            ctx = pipeline_context()  # the hub's XPUB on its own I/O thread, the request sockets on the other
            try:
                self._start(backend, ctx, stop)
                self._wait(stop, hangup or threading.Event())
            finally:
                deadline = Deadline(SHUTDOWN_S)
                self._shutdown(ctx, deadline)
        finally:
            backend.close()
            if deadline is not None and deadline.left() == 0:
                log.warning("shutdown took longer than %.0f s", SHUTDOWN_S)
        return 1 if self.error else 0

    def _start(self, backend, ctx, stop: threading.Event) -> None:
        from streamer.cluster.fleet import Fleet
        from streamer.cluster.hub import Hub

        cfg = self.config
        self.hub = Hub(cfg.publisher, [s.id for s in cfg.sources], ctx)
        self.supervisor.watch(Watched("hub", thread=lambda: self.hub.thread, failure=lambda: self.hub.failure,
                                      policy=Policy.FATAL, doing=lambda: "forwarding"))
        self.hub.start(stop)
        if cfg.snapshot.address is not None and not stop.is_set():
            self._start_snapshot(ctx)
        self.fleet = Fleet(cfg, backend, self.hub, workers=backend.default_workers())
        self.fleet.start()
        from streamer.cluster.control import ClusterService

        self.service = ClusterService(cfg, self.fleet, mode_override=self._mode, reload_config=self._reload_config)
        self.service.start()
        if cfg.control.address is not None and not stop.is_set():
            self._start_control(ctx)
        self.notifier.ready(f"{len(self.fleet.streams)} stream(s) on {len(self.fleet.slots)} worker(s)")

    def _start_control(self, ctx) -> None:
        """The control socket, as in single-machine mode, over the fleet (streamer/cluster/control.py)."""
        import functools

        from streamer.control import requests
        from streamer.control.server import ControlServer

        cfg, curve = self.config.control, self.hub.curve
        self.control = ControlServer(cfg.address, functools.partial(requests.handle, self.service), ctx,
                                     secure=curve.secure if curve is not None else None,
                                     max_request_bytes=cfg.max_request_bytes)
        self.supervisor.watch(Watched("control", thread=lambda: self.control, failure=lambda: self.control.failure,
                                      policy=Policy.RESTART, doing=lambda: "answering",
                                      restart=lambda: setattr(self, "control", restarted(self.control))))
        self.control.start_and_wait()

    def _start_snapshot(self, ctx) -> None:
        from streamer.outputs.snapshot import SnapshotServer

        curve = self.hub.curve
        self.snapshot = SnapshotServer(self.config.snapshot, self.hub.cache, ctx,
                                       secure=curve.secure if curve is not None else None)
        self.supervisor.watch(Watched("snapshot", thread=lambda: self.snapshot, failure=lambda: self.snapshot.failure,
                                      policy=Policy.RESTART, doing=lambda: "answering",
                                      restart=lambda: setattr(self, "snapshot", restarted(self.snapshot))))
        self.snapshot.start_and_wait()

    def _wait(self, stop: threading.Event, hangup: threading.Event) -> None:
        duration = self.config.run.duration_s
        deadline = None if duration is None else time.monotonic() + duration
        while not stop.wait(0.1):
            self.fleet.tick()
            self.notifier.tick(time.monotonic())
            if hangup.is_set():
                hangup.clear()
                self._reload()
            cause = self.supervisor.check()
            if cause is not None:
                self.error = cause
                return
            if deadline is not None and time.monotonic() >= deadline:
                log.info("duration reached")
                return
        log.info("stop requested")

    def _reload(self) -> None:
        """SIGHUP: the config files' sources applied by id (a refused file is logged once by the service)."""
        reload_on_hangup(self.service, self.notifier, lambda: len(self.fleet.streams))

    def _shutdown(self, ctx, deadline: Deadline) -> None:
        self.notifier.stopping()
        self.supervisor.stop_watching()
        if self.service is not None:
            self.service.close()  # control requests are refused from here on (still answered, until the end)
        if self.fleet is not None:
            self.fleet.stop(min(WORKERS_STOP_S, deadline.left(SERVERS_S)))
        if self.snapshot is not None:
            self.snapshot.request_stop()
        if self.control is not None:
            self.control.request_stop()
        if self.hub is not None:
            self.hub.request_stop()
        self.supervisor.join(self.supervisor.names(), deadline, reserve=SHUTDOWN_S - WORKERS_STOP_S - SERVERS_S)
        self.error = self.error or self.supervisor.report_late()
        behind = self.supervisor.left_behind()
        if behind:
            log.warning("shutdown: not waiting for %s", ", ".join(behind))
            ctx.destroy(linger=0)
        else:
            ctx.term()


__all__ = ["ClusterHead", "check_supported", "SHUTDOWN_S"]

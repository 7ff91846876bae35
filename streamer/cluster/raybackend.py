"""Ray, and only here: start a local Ray or join a cluster, run the worker actors, call them, clean up.

This is the only module of the project that imports ``ray`` (at import time: it is imported only in
cluster mode, by :mod:`streamer.cluster.head`). Everything the fleet needs goes through
:class:`RayBackend` (``spawn``, ``call``, ``kill``, ``close``), so the fleet's logic is tested without
Ray (tests/cluster/test_fleet.py) and Ray's facts stay in one place:

- an actor is restarted by Ray after its process or node dies (``max_restarts``), possibly on
  another node, rerunning its constructor: a restarted worker is empty, with a new incarnation id;
- calls are at-most-once (``max_task_retries=0``): a call to an actor that is lost or restarting
  fails with ``RayActorError`` (:class:`~model.errors.WorkerUnavailable` here); a call to an actor
  that has no room to start yet waits until it starts;
- an actor dies with its owner: if the head process is killed, Ray ends its workers too;
- ``ray.kill`` ends an actor's process at once (``no_restart=False`` lets Ray start a fresh one).

The workers import the same code as the head: its folder is put on their ``PYTHONPATH`` through the
job's runtime environment (a folder missing on another node is ignored there, and the installed
package is used: install the same version on every node, docs/CLUSTER.md).
"""

from __future__ import annotations

import logging
import math
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from model.errors import ClusterError, RecognizerError, WorkerUnavailable
from streamer.config import AppConfig, ClusterConfig, SourceConfig

try:
    import ray
    from ray.exceptions import RayActorError, RayTaskError
except ImportError:  # pragma: no cover - the message is the point
    raise ClusterError("cluster mode needs Ray: pip install 'timesformer-stream[cluster]' "
                       "(or pip install 'ray>=2.40,<3')") from None

log = logging.getLogger(__name__)

NAMESPACE = "timesformer-stream"  #: Ray namespace of the worker actors
ROOT = Path(__file__).resolve().parents[2]  #: the folder holding streamer/ and model/
_LOCAL_OBJECT_STORE = 128 << 20  # bytes: the workers exchange small messages only
_MAX_CONCURRENCY = 4  # health answers while assign loads a model


class WorkerActor:
    """The Ray actor: a thin shell over :class:`streamer.cluster.worker.WorkerCore` in its own process."""

    def __init__(self, name: str, head_ip: str, log_level: str) -> None:
        from streamer.pipeline import tune_interpreter
        from streamer.redact import RedactingFormatter
        from streamer.sources.cvenv import prepare_opencv_environment
        from streamer.cluster.worker import WorkerCore

        prepare_opencv_environment()  # before anything imports cv2 in this process
        tune_interpreter()
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(RedactingFormatter(f"%(asctime)s %(levelname)s [{name}] %(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(getattr(logging, log_level))
        node_ip = ray.util.get_node_ip_address()
        self.core = WorkerCore(name, "127.0.0.1" if node_ip == head_ip else node_ip)

    def assign(self, config: AppConfig, sources: list[SourceConfig], first_seq: dict[str, int],
               sessions: dict[str, str]) -> dict:
        return self.core.assign(config, sources, first_seq, sessions)

    def remove(self, share: str, stream: str) -> dict:
        return self.core.remove(share, stream)

    def release(self, share: str) -> None:
        self.core.release(share)

    def health(self) -> dict:
        return self.core.health()

    def stop(self) -> None:
        self.core.stop()


class Pending:
    """One call in flight; ``done()`` never blocks, ``result()`` is its value or its error."""

    def __init__(self, ref) -> None:
        self._ref = ref

    def done(self) -> bool:
        ready, _ = ray.wait([self._ref], timeout=0, fetch_local=True)
        return bool(ready)

    def result(self) -> Any:
        try:
            return ray.get(self._ref, timeout=0)
        except RayActorError as exc:
            log.debug("worker call failed: %s", _one_line(exc))
            raise WorkerUnavailable(_UNAVAILABLE.get(type(exc).__name__, "its actor failed")) from None
        except RayTaskError as exc:  # the worker raised: hand on its own error when it is one of ours
            cause = exc.cause
            if isinstance(cause, RecognizerError):
                raise cause from None
            raise ClusterError(f"worker call failed: {_one_line(cause or exc)}") from None


#: Ray's errors for a call that found no actor, said briefly (Ray's own text, with ids, is logged at DEBUG)
_UNAVAILABLE = {"ActorDiedError": "its actor died (process or node lost)",
                "ActorUnavailableError": "its actor is unreachable or being restarted"}


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _signal_handlers() -> dict:
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}


def _restore(handlers: dict) -> None:
    for sig, handler in handlers.items():
        if handler is not None:
            signal.signal(sig, handler)


class RayBackend:
    def __init__(self, config: ClusterConfig, log_level: str = "INFO") -> None:
        self.config = config
        self.log_level = log_level
        self.head_ip: str | None = None
        self._handles: list = []
        self._connected = False

    def connect(self) -> None:
        """Start a local Ray (``local:N``) or join the cluster at ``address``; ClusterError if it cannot."""
        cfg = self.config
        path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
        common = dict(namespace=NAMESPACE, runtime_env={"env_vars": {"PYTHONPATH": path}}, log_to_driver=True,
                      logging_level=logging.WARNING)
        handlers = _signal_handlers()
        try:
            if cfg.local_workers is not None:
                ray.init(num_cpus=max(1, math.ceil(cfg.local_workers * cfg.cpus_per_worker)),
                         include_dashboard=False, object_store_memory=_LOCAL_OBJECT_STORE, **common)
            else:
                ray.init(address=cfg.address, **common)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ClusterError(f"cannot reach the Ray cluster at {cfg.address}: {_one_line(exc)}; start it with "
                               "`ray start --head` (docs/CLUSTER.md) or use --cluster local:N") from None
        finally:
            _restore(handlers)  # ray.init installs its own SIGTERM handler (sys.exit): the CLI's stops the head (R19)
        self._connected = True
        self.head_ip = ray.util.get_node_ip_address()
        log.info("ray: %s, %s", "local Ray started" if cfg.local_workers else f"joined {cfg.address}",
                 ", ".join(f"{k} {v:g}" for k, v in sorted(ray.cluster_resources().items())
                           if k in ("CPU", "GPU")))

    def gpus_per_worker(self) -> float:
        """``gpus_per_worker``, or by default 1 when the cluster has GPUs, else 0."""
        if self.config.gpus_per_worker is not None:
            return self.config.gpus_per_worker
        return 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0

    def default_workers(self) -> int:
        """``workers``, else N of ``local:N``, else one per GPU (one per node when there are none)."""
        cfg = self.config
        if cfg.workers is not None:
            return cfg.workers
        if cfg.local_workers is not None:
            return cfg.local_workers
        gpus = self.gpus_per_worker()
        if gpus > 0:
            return max(1, int(ray.cluster_resources().get("GPU", 0) // gpus))
        nodes = [n for n in ray.nodes() if n.get("Alive") and n["Resources"].get("CPU", 0) >= cfg.cpus_per_worker]
        return max(1, len(nodes))

    def spawn(self, name: str):
        """A worker actor (placed by Ray where there is room; its calls wait until it is)."""
        cfg = self.config
        actor = ray.remote(WorkerActor).options(
            num_cpus=cfg.cpus_per_worker, num_gpus=self.gpus_per_worker(), max_restarts=cfg.max_restarts,
            max_task_retries=0, max_concurrency=_MAX_CONCURRENCY, scheduling_strategy="SPREAD")
        handle = actor.remote(name, self.head_ip, self.log_level)
        self._handles.append(handle)
        return handle

    def call(self, handle, method: str, *args) -> Pending:
        return Pending(getattr(handle, method).remote(*args))

    def kill(self, handle, *, restart: bool) -> None:
        """End the actor's process now; with ``restart`` Ray starts a fresh one (if restarts are left)."""
        try:
            ray.kill(handle, no_restart=not restart)
        except Exception as exc:  # an actor already gone: nothing to end
            log.debug("ray.kill: %s", _one_line(exc))

    def close(self) -> None:
        """End every worker actor, then leave Ray (a local Ray this process started is shut down with it)."""
        if not self._connected:
            return
        for handle in self._handles:
            self.kill(handle, restart=False)
        self._handles.clear()
        ray.shutdown()
        self._connected = False
        log.info("ray: %s", "local Ray shut down" if self.config.local_workers else "left the cluster")


__all__ = ["RayBackend", "Pending", "WorkerActor", "NAMESPACE"]

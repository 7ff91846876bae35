"""What a running monitor can be asked to do, independent of how the request arrives.

A :class:`SourceService` carries out the operations, one method each: the pipeline's stream set in
one process, a cluster head routing each call to the worker that owns the stream (issue 15), or an
in-memory fake in tests. The control socket (:mod:`streamer.control.server`) is one transport over
it; :func:`streamer.control.requests.handle` turns the bytes of one request into the bytes of one
reply by calling exactly one method.

A method returns the fields of its reply (a JSON-ready dict) or raises a
:class:`~model.errors.RecognizerError` whose message becomes the reply's one-line ``error``:
``ConfigError`` for an invalid source, ``ControlError`` for a request that cannot be carried out now
(duplicate or unknown id, over ``run.max_sources``, shutting down). A refused request changes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional, Protocol

from model.errors import ControlError, RecognizerError
from streamer.config import CONTROL_ADDRESS, AppConfig, SourceConfig

log = logging.getLogger(__name__)

#: Where the control socket listens unless told otherwise (loopback only: S10).
DEFAULT_ADDRESS = CONTROL_ADDRESS

#: Operations and the request keys each needs (besides ``op`` and the optional ``version``).
OPERATIONS: dict[str, tuple[str, ...]] = {
    "add": ("source",),
    "remove": ("id",),
    "update": ("source",),
    "list": (),
    "reload": (),
    "health": (),
    "rebalance": (),
}

#: States in which a stream counts as healthy: delivering frames, or a file that reached its end.
HEALTHY_STATES = ("running", "ended")


class SourceService(Protocol):
    """The operations behind the control API; each call is atomic as seen by the other callers."""

    def add(self, source: SourceConfig) -> dict:
        """Start a new stream; reply fields ``id``, ``session``, ``state``."""

    def remove(self, stream_id: str) -> dict:
        """Stop a stream and release everything it held; reply field ``id``."""

    def update(self, source: SourceConfig) -> dict:
        """Replace the stream with that id (remove + add in one step); reply as :meth:`add`."""

    def list(self) -> dict:
        """Reply field ``sources``: one :func:`list_entry` per stream, in the order they were added."""

    def reload(self) -> dict:
        """Re-read the config file and apply its sources by id; reply fields from :func:`diff_reply`."""

    def health(self) -> dict:
        """Reply fields from :func:`assess`."""

    def rebalance(self) -> dict:
        """Cluster mode: even out the workers' load by moving live streams; reply field ``moved``. One
        machine refuses it (ControlError)."""


def list_entry(source: SourceConfig, *, url: str, mode: str, state: str, reason: str, session: str,
               fps: float, frames: int, results: int, drops: int) -> dict:
    """One stream as ``list`` shows it (``url`` already redacted: S6)."""
    return {"id": source.id, "url": url, "mode": mode, "state": state, "reason": reason, "session": session,
            "fps": fps, "frames": frames, "results": results, "drops": drops}


def assess(entries: Iterable[dict]) -> dict:
    """``healthy`` unless a stream is in a state other than :data:`HEALTHY_STATES`; ``problems`` names them."""
    entries = list(entries)
    problems = [f"{e['id']}: {e['state']}" + (f" ({e['reason']})" if e.get("reason") else "")
                for e in entries if e["state"] not in HEALTHY_STATES]
    return {"healthy": not problems, "streams": len(entries), "problems": problems}


def diff_sources(old: Iterable[SourceConfig], new: Iterable[SourceConfig]) -> tuple[list[SourceConfig], list[str],
                                                                                    list[SourceConfig], list[str]]:
    """What turns ``old`` into ``new`` by id: (added, removed ids, changed, unchanged ids), each in order."""
    before = {s.id: s for s in old}
    after = {s.id: s for s in new}
    added = [s for i, s in after.items() if i not in before]
    removed = [i for i in before if i not in after]
    changed = [s for i, s in after.items() if i in before and before[i] != s]
    unchanged = [i for i, s in after.items() if i in before and before[i] == s]
    return added, removed, changed, unchanged


def diff_reply(added: Iterable[SourceConfig], removed: Iterable[str], changed: Iterable[SourceConfig],
               unchanged: Iterable[str]) -> dict:
    """The reply fields of ``reload``: ids added, removed, updated, and how many were left alone."""
    return {"added": [s.id for s in added], "removed": list(removed), "updated": [s.id for s in changed],
            "unchanged": len(list(unchanged))}


# ---- the checks and steps every SourceService shares (one process: streamer/streams.py; a cluster
# head: streamer/cluster/control.py) ----------------------------------------------------------------
def check_new(stream_id: str, running: Iterable[str]) -> None:
    """ControlError when ``stream_id`` is already running (``add``)."""
    if stream_id in running:
        raise ControlError(f"source {stream_id!r} is already running; use update to change it, or remove it first")


def check_known(stream_id: str, running: Iterable[str]) -> None:
    """ControlError naming the running ids when ``stream_id`` is not one of them (``remove``, ``update``)."""
    running = list(running)
    if stream_id not in running:
        raise ControlError(f"no source {stream_id!r} is running (running: {', '.join(running) or 'none'}); use add "
                           f"for a new one")


def check_cap(count: int, limit: int) -> None:
    """ControlError when ``count`` sources would be more than ``run.max_sources``."""
    if count > limit:
        raise ControlError(f"{count} sources would be more than run.max_sources = {limit}; remove one first, or "
                           f"raise run.max_sources (restart) if this machine can carry them")


def save_state(path: Optional[Path], sources: Iterable[SourceConfig]) -> None:
    """Rewrite the state file (R24) before a change is made; ControlError (nothing changed) if it cannot be."""
    if path is None:
        return
    from streamer.control import state_file

    try:
        state_file.write(path, sources)
    except OSError as exc:
        raise ControlError(f"cannot write the state file {path}: {exc.strerror or exc}; nothing was changed (check "
                           "--state / control.state_file and its folder)") from None


def reload_with(reload_config: Optional[Callable[[], AppConfig]], lock, apply: Callable[[AppConfig], dict]) -> dict:
    """``reload``: the config as its files say now, handed to ``apply`` under ``lock`` (the service's; it
    applies the sources by id); a file that fails validation changes nothing and is logged once."""
    if reload_config is None:
        raise ControlError("reload: this service was not started from config files; use add, remove or update")
    try:
        config = reload_config()
        with lock:
            return apply(config)
    except RecognizerError as exc:
        log.error("reload refused, the running sources are unchanged: %s", exc)
        raise


@dataclass(frozen=True)
class Reload:
    """What a reload changes, checked whole before anything changes (:func:`plan_reload`)."""

    changes: tuple  #: (added, removed ids, changed, unchanged ids): :func:`diff_sources`
    planned: dict  #: id -> what the service's ``plan(source)`` made of each added or changed source
    retired: dict[str, str]  #: id -> why, for each stream the reload stops (removed, or changed: restarted)

    def reply(self) -> dict:
        """The reply fields (:func:`diff_reply`), logged."""
        reply = diff_reply(*self.changes)
        log.info("reloaded: added %s, removed %s, updated %s, %d unchanged", reply["added"], reply["removed"],
                 reply["updated"], reply["unchanged"])
        return reply


def plan_reload(running: Iterable[SourceConfig], sources: Iterable[SourceConfig], limit: int,
                plan: Callable[[SourceConfig], object]) -> Reload:
    """The reload from ``running`` to ``sources`` by id: over ``run.max_sources`` (``limit``) or a source
    that ``plan`` refuses raises here, before anything changes."""
    sources = list(sources)
    changes = diff_sources(running, sources)
    added, removed, changed, _ = changes
    check_cap(len(sources), limit)
    planned = {s.id: plan(s) for s in [*added, *changed]}
    retired = {**{i: "removed: not in the reloaded config" for i in removed},
               **{s.id: "updated by the reloaded config: a new session follows" for s in changed}}
    return Reload(changes, planned, retired)


def reload_allow_list(curve) -> dict:
    """The CURVE allow-list (``streamer.outputs.security.CurveServer``, shared by the publisher, snapshot and
    control sockets) read again; reply fields ``allow_list_keys`` (the keys in force) and, when the folder
    was refused, ``allow_list_error`` (the list in force stays: fail closed). Nothing when CURVE is off."""
    from model.errors import PublisherError

    if curve is None:
        return {}
    try:
        return {"allow_list_keys": len(curve.reload())}
    except PublisherError as exc:
        log.error("CURVE allow-list reload refused, the %d key(s) in force stay: %s", len(curve.allowed), exc)
        return {"allow_list_keys": len(curve.allowed), "allow_list_error": str(exc)}


def reload_on_hangup(service: SourceService, notifier, count: Callable[[], int]) -> None:
    """SIGHUP: ``reload``, told to systemd (a refused file is logged once by :func:`reload_with`)."""
    notifier.reloading()
    try:
        service.reload()
    except RecognizerError:
        pass  # the running set stays as it was
    notifier.ready(f"{count()} stream(s)")


__all__ = ["SourceService", "OPERATIONS", "HEALTHY_STATES", "DEFAULT_ADDRESS", "list_entry", "assess",
           "diff_sources", "diff_reply", "check_new", "check_known", "check_cap", "save_state", "reload_with",
           "reload_on_hangup", "reload_allow_list", "Reload", "plan_reload"]

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

from typing import Iterable, Protocol

from streamer.config import CONTROL_ADDRESS, SourceConfig

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


__all__ = ["SourceService", "OPERATIONS", "HEALTHY_STATES", "DEFAULT_ADDRESS", "list_entry", "assess",
           "diff_sources", "diff_reply"]

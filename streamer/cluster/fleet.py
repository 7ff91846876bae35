"""The head's worker management, without Ray: slots, health, placement, loss and reassignment.

The head runs :meth:`Fleet.tick` from its main thread every 0.1 s; nothing here blocks. Every call to
a worker goes through a backend (:class:`streamer.cluster.raybackend.RayBackend`; a fake in the
tests): ``spawn(name)``, ``call(handle, method, *args)`` returning a pending call with ``done()`` and
``result()`` (raising :class:`~model.errors.WorkerUnavailable` when the worker is lost or restarting),
and ``kill(handle, restart=...)``.

- **Slots**: ``workers`` named slots ``w0``, ``w1``, ...; each has an actor, asked for its health every
  :data:`HEALTH_INTERVAL_S`. A slot is *ready* from its first answer; it is *lost* when a health call
  fails (process or node gone, Ray restarting it) or has not been answered for
  ``cluster.health_timeout_s``, or when an answer comes from a new incarnation (the process was
  restarted: its streams died with the old one). A lost actor is killed with a restart allowed, so a
  worker that was only unreachable cannot go on serving (fenced in the hub as well), and Ray brings a
  fresh one up where there is room; it is ready again, and empty, on its first answer.
- **Placement** (:func:`streamer.cluster.cost.place`): at start, once every slot is ready (or after
  :data:`START_GRACE_S`, on those that are), every stream by expected cost; later, each stream that
  is waiting: those of a lost worker, or of a pipeline that stopped with an error. A stream moves as
  one ``assign`` call to the chosen worker with its first ``seq`` (:meth:`Hub.next_seq`); once the
  worker answers with its publisher's endpoint, the hub forwards the stream from that feed only.
- **Status while no worker serves a stream** is the head's to send (R17): ``connecting`` before its
  first worker, ``reassigning`` after losing one (with why, and, when no worker has room, that it
  waits for one to join), ``failed`` when a worker refused it, every ``publisher.heartbeat_s``.
- **Sessions** are the head's: each start of a stream (at start-up, after a move, after ``add`` or
  ``update``) gets a new one, which the head's status messages and the reply to ``add`` carry and the
  worker runs the stream under (``seq`` goes on from where subscribers saw it stop on a move).
- **Control** (streamer/cluster/control.py, from the control socket's thread, under :attr:`Fleet.lock`):
  :meth:`Fleet.add` (placed at the next tick), :meth:`Fleet.remove` (the owning worker takes it out
  of its pipeline; the hub retires it), :meth:`Fleet.rebalance`.
- Moving live streams otherwise happens only on request (``rebalance``: :func:`streamer.cluster.cost.moves`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from model.errors import RecognizerError, WorkerUnavailable
from streamer.cluster.cost import Bin, Item, expected_cost, moves, place
from streamer.config import AppConfig, SourceConfig
from streamer.core.stats import StreamState, StreamStats
from streamer.outputs import protocol
from streamer.redact import redact

log = logging.getLogger(__name__)

HEALTH_INTERVAL_S = 0.5  #: how often each worker is asked for its health
RETIRE_WAIT_S = 2.0  #: a removed stream's worker has this long to send its last status, else the head does
START_GRACE_S = 60.0  #: at start, how long placement waits for every worker to come up


@dataclass
class Slot:
    name: str
    handle: Any
    ready: bool = False
    incarnation: str | None = None
    last_ok: float = 0.0  #: monotonic time of the last health answer
    health: Any = None  #: the health call in flight
    health_at: float = float("-inf")  #: when it was sent
    report: dict = field(default_factory=dict)
    feeds: set[str] = field(default_factory=set)  #: the shares (hub feeds) of this incarnation


@dataclass
class Stream:
    source: SourceConfig
    cost: float
    slot: str | None = None  #: the worker serving it (or being asked to)
    feed: str | None = None  #: the share it is forwarded from, once serving
    phase: str = "waiting"  #: waiting | starting | serving | done
    state: StreamState = StreamState.CONNECTING  #: what the head publishes while no worker serves it
    reason: str = "waiting for a worker to start"
    since: float = field(default_factory=time.time)
    demand: float | None = None  #: windows/s it asked for, as its last worker measured
    served: bool = False  #: some worker has served it (a later wait is a reassignment)
    session: str = field(default_factory=lambda: new_session())  #: this start of it (a move is a new start)


def new_session() -> str:
    """A stream's session id, as the single-machine pipeline makes them (streamer.core.stats.StreamStats)."""
    return os.urandom(4).hex()


@dataclass
class _Assign:
    slot: str
    incarnation: str | None
    call: Any
    streams: tuple[str, ...]


class Fleet:
    def __init__(self, config: AppConfig, backend, hub, *, workers: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.backend = backend
        self.hub = hub
        self.clock = clock
        self.slots = [Slot(f"w{i}", None) for i in range(workers)]
        self.streams = {s.id: Stream(s, expected_cost(s)) for s in config.sources}
        #: held by :meth:`tick` and by the control operations (streamer/cluster/control.py, another thread)
        self.lock = threading.RLock()
        self._assigning: list[_Assign] = []
        self._removing: list[tuple[str, str, Any]] = []  # (slot, share, pending remove call)
        self._started_at = clock()
        self._placed_once = False
        self._next_beat = 0.0

    # ---- start, tick, stop ---------------------------------------------------------------------
    def start(self) -> None:
        """Ask for every worker actor (Ray places them as room allows) and announce the streams."""
        for slot in self.slots:
            slot.handle = self.backend.spawn(slot.name)
        self._started_at = self.clock()
        log.info("cluster: %d workers asked for, %d streams to place", len(self.slots), len(self.streams))

    def tick(self) -> None:
        with self.lock:
            self._tick(self.clock())

    def _tick(self, now: float) -> None:
        for slot in self.slots:
            self._check_health(slot, now)
        self._collect_assigns()
        self._collect_removals()
        if self._may_place(now):
            self._place_waiting()
        if now >= self._next_beat:
            self._next_beat = now + self.config.publisher.heartbeat_s
            for stream in self.streams.values():
                if stream.phase in ("waiting", "starting"):
                    self._publish(stream)

    def stop(self, seconds: float) -> None:
        """Tell every ready worker to stop its pipelines (their final status goes out through the hub) and
        wait up to ``seconds``; the streams no worker serves get a final ``stopped`` from the head."""
        calls = [self.backend.call(slot.handle, "stop") for slot in self.slots if slot.ready]
        deadline = time.monotonic() + seconds  # real time: this waits for other processes
        while calls and time.monotonic() < deadline:
            calls = [c for c in calls if not c.done()]
            time.sleep(0.02)
        if calls:
            log.warning("cluster: %d worker(s) did not confirm their stop within %.1f s", len(calls), seconds)
        for stream in self.streams.values():
            if stream.phase in ("waiting", "starting"):
                self._set(stream, StreamState.STOPPED, "")

    # ---- health --------------------------------------------------------------------------------
    def _check_health(self, slot: Slot, now: float) -> None:
        if slot.health is not None and slot.health.done():
            call, slot.health = slot.health, None
            try:
                report = call.result()
            except RecognizerError as exc:  # WorkerUnavailable: lost, restarting (or a defect in health())
                if slot.ready:
                    self._lose(slot, str(exc))
            else:
                self._healthy(slot, report, now)
        elif slot.health is not None and slot.ready and now - slot.last_ok > self.config.cluster.health_timeout_s:
            self._lose(slot, f"no health report for {self.config.cluster.health_timeout_s:g} s")
        if slot.health is None and now - slot.health_at >= HEALTH_INTERVAL_S:
            slot.health, slot.health_at = self.backend.call(slot.handle, "health"), now

    def _healthy(self, slot: Slot, report: dict, now: float) -> None:
        if slot.ready and report["incarnation"] != slot.incarnation:
            self._lose(slot, "its process was restarted", kill=False)
        if not slot.ready:
            slot.ready, slot.incarnation = True, report["incarnation"]
            log.info("cluster: worker %s is up (pid %s on %s, %s)", slot.name, report.get("pid"), report.get("host"),
                     report.get("device") or "device chosen with its first streams")
        slot.last_ok, slot.report = now, report
        for stream_id, info in report.get("streams", {}).items():
            stream = self.streams.get(stream_id)
            if stream is not None and stream.slot == slot.name and info.get("demand") is not None:
                stream.demand = info["demand"]
        for share, info in report.get("shares", {}).items():
            if not info["running"] and share in slot.feeds:
                self._share_ended(slot, share, info.get("error"))

    def _share_ended(self, slot: Slot, share: str, error: str | None) -> None:
        """A share's pipeline returned: its files ended (the streams are done), or it failed (they move)."""
        slot.feeds.discard(share)
        self.hub.drop_feed(share)
        self.backend.call(slot.handle, "release", share)
        for stream in self.streams.values():
            if stream.feed != share:
                continue
            if error:
                self._orphan(stream, f"its pipeline on worker {slot.name} stopped: {error}")
            else:
                stream.phase, stream.slot, stream.feed = "done", None, None
        if error:
            log.error("cluster: the pipeline of share %s on worker %s stopped: %s", share, slot.name, error)

    def _lose(self, slot: Slot, why: str, *, kill: bool = True) -> None:
        """The slot's worker is gone: fence it, and put its streams back to be placed."""
        moved = [s for s in self.streams.values() if s.slot == slot.name]
        log.warning("cluster: worker %s lost (%s); %s", slot.name, redact(why),
                    f"moving {', '.join(s.source.id for s in moved)}" if moved else "it served no stream")
        slot.ready = False
        for feed in slot.feeds:
            self.hub.drop_feed(feed)  # nothing more of it reaches subscribers
        slot.feeds.clear()
        for stream in moved:
            self._orphan(stream, f"worker {slot.name} lost ({why})")
        if kill:  # a worker that was only unreachable must not go on serving: Ray starts a fresh one
            self.backend.kill(slot.handle, restart=True)

    def _orphan(self, stream: Stream, why: str) -> None:
        stream.slot = stream.feed = None
        stream.phase, stream.session = "waiting", new_session()  # its next start is a new session
        self._set(stream, StreamState.REASSIGNING, f"{why}; moving it to another worker")

    # ---- placement -----------------------------------------------------------------------------
    def _may_place(self, now: float) -> bool:
        if self._placed_once:
            return True
        ready = [s for s in self.slots if s.ready]
        if len(ready) == len(self.slots) or (ready and now - self._started_at >= START_GRACE_S):
            if len(ready) < len(self.slots):
                log.warning("cluster: workers %s have not started within %.0f s (is there room for them? "
                            "cluster.cpus_per_worker, gpus_per_worker); placing the streams on %s",
                            ", ".join(s.name for s in self.slots if not s.ready), START_GRACE_S,
                            ", ".join(s.name for s in ready))
            self._placed_once = True
        return self._placed_once

    def bins(self) -> list[Bin]:
        """The ready workers with what they serve (or are being asked to)."""
        out = {s.name: Bin(s.name, capacity=s.report.get("capacity")) for s in self.slots if s.ready}
        for stream in self.streams.values():
            if stream.slot in out and stream.phase in ("starting", "serving"):
                out[stream.slot].take(Item(stream.source.id, stream.cost, stream.demand))
        return list(out.values())

    def _place_waiting(self) -> None:
        waiting = [s for s in self.streams.values() if s.phase == "waiting"]
        if not waiting:
            return
        chosen = place([Item(s.source.id, s.cost, s.demand) for s in waiting], self.bins())
        by_slot: dict[str, list[Stream]] = {}
        for stream in waiting:
            target = chosen[stream.source.id]
            if target is None:
                self._no_room(stream)
            else:
                by_slot.setdefault(target, []).append(stream)
        for name, streams in by_slot.items():
            self.assign(next(s for s in self.slots if s.name == name), streams)

    def _no_room(self, stream: Stream) -> None:
        lost = sum(1 for s in self.slots if not s.ready)
        why = "no worker has room for it" if lost < len(self.slots) else "no worker is up"
        state = StreamState.REASSIGNING if stream.served else StreamState.CONNECTING
        self._set(stream, state, f"{why} ({lost} of {len(self.slots)} workers lost or not started); "
                                 "waiting for a worker to join")

    def assign(self, slot: Slot, streams: list[Stream]) -> None:
        """Ask ``slot``'s worker to serve ``streams`` (one share), each going on from its next seq."""
        ids = tuple(s.source.id for s in streams)
        first_seq = {i: self.hub.next_seq(i) for i in ids}
        sessions = {s.source.id: s.session for s in streams}
        call = self.backend.call(slot.handle, "assign", self.config, [s.source for s in streams], first_seq,
                                 sessions)
        self._assigning.append(_Assign(slot.name, slot.incarnation, call, ids))
        for stream in streams:
            stream.phase, stream.slot = "starting", slot.name
        log.info("cluster: %s -> worker %s", ", ".join(ids), slot.name)

    def _collect_assigns(self) -> None:
        for entry in [a for a in self._assigning if a.call.done()]:
            self._assigning.remove(entry)
            slot = next(s for s in self.slots if s.name == entry.slot)
            streams = [self.streams[i] for i in entry.streams if i in self.streams
                       and self.streams[i].slot == entry.slot and self.streams[i].phase == "starting"]
            try:
                reply = entry.call.result()
            except WorkerUnavailable:
                continue  # the health check loses the slot, which puts its streams back
            except RecognizerError as exc:
                log.error("cluster: worker %s refused %s: %s", slot.name, ", ".join(entry.streams), exc)
                for stream in streams:
                    stream.phase, stream.slot = "done", None
                    self._set(stream, StreamState.FAILED, f"worker {slot.name}: {exc}")
                continue
            if not slot.ready or slot.incarnation != entry.incarnation or len(streams) != len(entry.streams):
                self.backend.call(slot.handle, "release", reply["share"])  # lost, moved or removed meanwhile
                for stream in streams:  # the others of the share start again, in a share of their own
                    stream.phase, stream.slot = "waiting", None
                continue
            slot.feeds.add(reply["share"])
            self.hub.add_feed(reply["share"], reply["endpoint"], slot.name, entry.streams)
            for stream in streams:
                stream.phase, stream.feed, stream.served = "serving", reply["share"], True

    # ---- control operations (streamer/cluster/control.py; the caller holds self.lock) ----------
    def add(self, source: SourceConfig) -> Stream:
        """A new stream, placed at the next tick as the streams at start are; the head speaks for it until then."""
        stream = Stream(source, expected_cost(source))
        self.streams[source.id] = stream
        log.info("stream %s: added (%s)", source.id, redact(source.url))
        self._publish(stream)
        return stream

    def remove(self, stream_id: str, reason: str):
        """Take a stream out: its worker removes it from its pipeline (its events end, its last status says
        ``removed``). The pending call, or None when no worker serves it (the head says ``removed``)."""
        stream = self.streams.pop(stream_id)
        stream.state, stream.reason, stream.since = StreamState.REMOVED, reason, time.time()
        log.info("stream %s: removed (%s)", stream_id, reason)
        slot = next((s for s in self.slots if s.name == stream.slot and s.ready), None)
        if stream.phase != "serving" or slot is None:  # a share still starting is released when it answers
            self.hub.retire(stream_id, self.status(stream), 0.0)
            return None
        self.hub.retire(stream_id, self.status(stream), RETIRE_WAIT_S)
        call = self.backend.call(slot.handle, "remove", stream.feed, stream_id)
        self._removing.append((slot.name, stream.feed, call))
        return call

    def rebalance(self) -> list[tuple[str, str, str]]:
        """Even out the load with the fewest moves (:func:`streamer.cluster.cost.moves`); each moved stream
        loses its window: it is fenced at once, says ``reassigning``, and starts on its new worker under a new
        session, its seq going on. The (stream, from, to) moves."""
        serving = {s.source.id: s for s in self.streams.values() if s.phase == "serving"}
        bins = [Bin(b.name, b.load, b.demand, b.capacity, [i for i in b.items if i in serving]) for b in self.bins()]
        done = moves(bins, {i: Item(i, s.cost, s.demand) for i, s in serving.items()})
        for stream_id, src, dst in done:
            self._move(serving[stream_id], src, dst)
        log.info("cluster: rebalance %s", ", ".join(f"{s} {a}->{b}" for s, a, b in done) or "moved nothing")
        return done

    def _move(self, stream: Stream, src: str, dst: str) -> None:
        source, target = (next(s for s in self.slots if s.name == name) for name in (src, dst))
        self.hub.release([stream.source.id])  # nothing more of it from src (its "removed" included)
        self._removing.append((src, stream.feed, self.backend.call(source.handle, "remove", stream.feed,
                                                                   stream.source.id)))
        stream.feed, stream.session = None, new_session()
        self._set(stream, StreamState.REASSIGNING, f"moving from worker {src} to {dst} (rebalance)")
        self.assign(target, [stream])

    def _collect_removals(self) -> None:
        for entry in [r for r in self._removing if r[2].done()]:
            self._removing.remove(entry)
            name, share, call = entry
            try:
                released = call.result()["released"]
            except RecognizerError as exc:  # lost meanwhile (its health check moves the rest), or ended
                log.debug("cluster: remove on worker %s: %s", name, exc)
                continue
            slot = next(s for s in self.slots if s.name == name)
            if released and share in slot.feeds:  # its last stream: the worker stopped the share
                slot.feeds.discard(share)
                self.hub.drop_feed(share)

    # ---- what the head says for streams without a worker ---------------------------------------
    def _set(self, stream: Stream, state: StreamState, reason: str) -> None:
        """Change what the head says for a stream; sent at once when it changed (and at every heartbeat)."""
        if (stream.state, stream.reason) == (state, reason):
            return
        stream.state, stream.reason, stream.since = state, reason, time.time()
        log.info("stream %s: %s%s", stream.source.id, state, f" ({redact(reason)})" if reason else "")
        self._publish(stream)

    def _publish(self, stream: Stream) -> None:
        self.hub.publish(protocol.status_topic(stream.source.id), self.status(stream))

    def status(self, stream: Stream) -> dict:
        """The head's status message for a stream: its state and reason, the counters its last worker sent."""
        sid = stream.source.id
        snap = StreamStats(sid, redact(stream.source.url)).snapshot()
        entry = self.hub.cache.view().get(sid)
        last = entry.status if entry is not None else None
        if last is not None:
            snap.update({k: last["counters"][k] for k in ("frames", "windows", "results", "drops", "decode_errors",
                                                         "reconnects")})
        snap.update(state=str(stream.state), reason=redact(stream.reason), state_since=stream.since,
                    session=stream.session)
        return protocol.with_worker(protocol.status_message(sid, redact(stream.source.url), snap), None)


__all__ = ["Fleet", "Slot", "Stream", "HEALTH_INTERVAL_S", "START_GRACE_S"]

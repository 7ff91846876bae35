"""Action events: turn a stream of per-window scores into "move_left from 14:02:11 to 14:02:19".

Per stream and per class, every result's score (the class's softmax probability; 0 when the class is
not in ``top_k``) goes through a smoother, then a hysteresis with two thresholds:

* ``smoothing: ema`` — ``v = alpha * score + (1 - alpha) * v``;
  ``smoothing: k_of_n`` — ``v`` is the k-th largest of the last n scores, so ``v >= enter`` means
  "at least k of the last n windows scored >= enter" and ``v < exit`` means "fewer than k of the last
  n windows scored >= exit".
* ``v >= enter`` opens a *pending* event; it becomes an event (phase ``start``) once the windows
  that back it span ``min_duration_s``, and is dropped silently if ``v`` falls below ``exit`` first
  (no flicker).
* An open event sends ``update`` every ``update_interval_s`` and ends (phase ``end``) when
  ``v < exit``; after that the class cannot start again for ``cooldown_s``.

*Whether* an event starts or ends is decided by the hysteresis; *where* it starts and ends is
back-dated to the windows that support it: the boundary halfway (in time and in frame number)
between the centre of the last window scoring below ``(enter + exit) / 2`` and the first window
scoring above it (and the same at the end). So an event's times do not lag by the smoothing delay.

Durations, cooldowns and ``update_interval_s`` are measured on one clock, the stream's: media time
(frame number / fps) for file-mode sources, wall-clock capture time for live ones; updates are
checked at each result, so they come at least ``update_interval_s`` apart on that clock. While an
event is open its ``duration_s`` counts to the centre of its newest supporting window, the earliest
place its end can be back-dated to, so the end never reports less than an update did. Events carry
both wall-clock timestamps (``start_ts``, ``end_ts``) and source frame numbers (``start_frame``,
``end_frame``).
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from dataclasses import dataclass
from typing import Callable

from streamer.config import EVENT_HISTORY as _HISTORY, EventRule, EventsConfig
from streamer.outputs import protocol

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Point:
    """One instant on the three clocks: the tracker's clock, wall-clock capture time, source frame number."""

    t: float
    wall: float
    frame: float

    def mid(self, other: "Point") -> "Point":
        return Point((self.t + other.t) / 2, (self.wall + other.wall) / 2, (self.frame + other.frame) / 2)


@dataclass(frozen=True)
class Obs:
    """One result as the tracker sees it: its window's start, centre and end."""

    index: int
    start: Point
    centre: Point
    end: Point


class _ClassTrack:
    """Smoother and hysteresis state of one (stream, class)."""

    def __init__(self, label: str, rule: EventRule) -> None:
        self.label, self.rule = label, rule
        self.raw: deque[tuple[int, float]] = deque(maxlen=_HISTORY)  # (obs index, score)
        self.recent: deque[float] = deque(maxlen=rule.n)  # the last n scores
        self.ema = 0.0
        self.phase = "idle"  # idle | pending | active
        self.start: Point | None = None
        self.peak = 0.0
        self.event_id = ""
        self.last_support: int | None = None  # obs index of the newest window scoring >= boundary
        self.last_emit_t = 0.0
        self.cooldown_until = float("-inf")
        self.floor = -1  # obs index of the previous event's end: back-dating never crosses it

    def smooth(self, score: float) -> float:
        r = self.rule
        if r.smoothing == "ema":
            self.ema = r.alpha * score + (1.0 - r.alpha) * self.ema
            return self.ema
        if len(self.recent) < r.k:
            return 0.0
        return sorted(self.recent, reverse=True)[r.k - 1]

    def forgettable(self, now: float) -> bool:
        """Nothing to remember: idle, out of cooldown, no recent score that could count."""
        return self.phase == "idle" and now >= self.cooldown_until and self.ema < 1e-3 \
            and all(s < self.rule.exit for s in self.recent)


class StreamEvents:
    """The event tracker of one stream: feed it results in order, get event messages back."""

    def __init__(self, stream: str, config: EventsConfig, *, fps: Callable[[], float | None] = lambda: None,
                 session: str | None = None) -> None:
        self.stream = stream
        self.config = config
        self.fps = fps  # media clock when it returns a frame rate, else wall clock
        #: the stream's session (its results'): in every event message, and the prefix of event ids, so ids
        #: stay unique when the stream is removed and added again, or the process restarts
        self.session = session or os.urandom(4).hex()
        self.tracks: dict[str, _ClassTrack] = {}
        self.obs: deque[Obs] = deque(maxlen=_HISTORY)
        self.count = 0  # events started on this stream
        self.suppressed = 0  # candidates that never lasted min_duration_s

    # ---- input --------------------------------------------------------------------------------
    def _obs(self, result: dict) -> Obs:
        w = result["window"]
        f0, f1 = float(w["frame_indices"][0]), float(w["frame_indices"][-1])
        w0, w1 = float(w["start_ts"]), float(w["end_ts"])
        fps = self.fps()
        t0, t1 = (f0 / fps, f1 / fps) if fps else (w0, w1)
        start, end = Point(t0, w0, f0), Point(t1, w1, f1)
        index = self.obs[-1].index + 1 if self.obs else 0
        return Obs(index, start, start.mid(end), end)

    def observe(self, result: dict) -> list[dict]:
        """Update every class with one result; returns the event messages it causes (maybe none)."""
        obs = self._obs(result)
        self.obs.append(obs)
        scores = {t["label"]: float(t["score"]) for t in result.get("top_k", [])}
        out: list[dict] = []
        for label in scores:
            if label not in self.tracks:
                rule = self.config.rule(label)
                if rule.enabled:
                    self.tracks[label] = _ClassTrack(label, rule)
        for label, track in list(self.tracks.items()):
            out.extend(self._step(track, obs, scores.get(label, 0.0)))
            if label not in scores and track.forgettable(obs.centre.t):
                del self.tracks[label]  # keeps the set small for models with many labels
        return out

    def close(self, reason: str) -> list[dict]:
        """End every open event at the end of the newest window (stream ended, or shutdown)."""
        out = []
        if not self.obs:
            return out
        last = self.obs[-1]
        for track in self.tracks.values():
            if track.phase == "active":
                out.append(self._end(track, last.end, last.index, reason))
            track.phase = "idle"
        return out

    def open_events(self) -> list[str]:
        return [t.event_id for t in self.tracks.values() if t.phase == "active"]

    # ---- the state machine --------------------------------------------------------------------
    def _step(self, track: _ClassTrack, obs: Obs, score: float) -> list[dict]:
        rule = track.rule
        track.raw.append((obs.index, score))
        track.recent.append(score)
        v = track.smooth(score)
        now = obs.centre.t
        if score >= rule.boundary:
            track.last_support = obs.index
        if track.phase == "idle":
            if v < rule.enter or now < track.cooldown_until:
                return []
            track.phase = "pending"
            track.start, track.peak = self._back_date(track, obs)
        if track.phase == "pending":
            track.peak = max(track.peak, score)
            if v < rule.exit:
                track.phase = "idle"
                self.suppressed += 1
                return []
            support = self._by_index(track.last_support) if track.last_support is not None else None
            if support is None or support.centre.t - track.start.t < rule.min_duration_s:
                return []  # the windows that back it do not yet span min_duration_s
            track.phase = "active"
            self.count += 1
            track.event_id = f"{self.session}-{self.stream}-{self.count}"
            track.last_emit_t = now
            return [self._message(track, "start", v)]
        track.peak = max(track.peak, score)
        if v < rule.exit:
            last = self._by_index(track.last_support) if track.last_support is not None else None
            after = self._after(last.index) if last is not None else None
            if last is None:  # no supporting window left in the history: end where the history starts
                last = after = self.obs[0]
            where = last.centre.mid(after.centre) if after is not None else obs.end
            return [self._end(track, where, last.index, "score")]
        if now - track.last_emit_t >= self.config.update_interval_s:
            track.last_emit_t = now
            return [self._message(track, "update", v)]
        return []

    def _back_date(self, track: _ClassTrack, obs: Obs) -> tuple[Point, float]:
        """Where the pending event really began: before the earliest supporting window of this run."""
        rule = track.rule
        tolerance = rule.n - rule.k if rule.smoothing == "k_of_n" else 0
        earliest, misses, peak = obs.index, 0, 0.0
        for index, score in reversed(track.raw):
            if index <= track.floor:
                break
            if score >= rule.boundary:
                earliest, misses, peak = index, 0, max(peak, score)
            else:
                misses += 1
                if misses > tolerance:
                    break
        first = self._by_index(earliest)
        before = self._by_index(earliest - 1)
        if before is None or earliest - 1 <= track.floor:
            return first.start, peak
        return before.centre.mid(first.centre), peak

    def _end(self, track: _ClassTrack, where: Point, end_index: int, reason: str) -> dict:
        msg = self._message(track, "end", None, end=where, reason=reason)
        track.phase = "idle"
        track.floor = end_index
        track.cooldown_until = where.t + track.rule.cooldown_s
        track.last_support = None
        return msg

    def _by_index(self, index: int) -> Obs | None:
        if not self.obs or index < self.obs[0].index or index > self.obs[-1].index:
            return None
        return self.obs[index - self.obs[0].index]

    def _after(self, index: int) -> Obs | None:
        return self._by_index(index + 1)

    # ---- messages -----------------------------------------------------------------------------
    def _reached(self, track: _ClassTrack) -> Point:
        """How far an open event reaches so far: the centre of its newest supporting window (or the oldest
        window still remembered). Its end is never before this point, so ``duration_s`` never shrinks."""
        support = self._by_index(track.last_support) if track.last_support is not None else None
        return (support or self.obs[0]).centre

    def _message(self, track: _ClassTrack, phase: str, score: float | None, *,
                 end: Point | None = None, reason: str | None = None) -> dict:
        start = track.start
        until = end if end is not None else self._reached(track)
        return protocol.event_message(
            stream=self.stream, session=self.session, event_id=track.event_id, phase=phase, label=track.label,
            start_ts=start.wall, start_frame=round(start.frame), duration_s=until.t - start.t, peak_score=track.peak,
            end_ts=None if end is None else end.wall, end_frame=None if end is None else round(end.frame),
            score=score, reason=reason)


class EventStage:
    """Pipeline glue: called for every message the publisher sent; publishes the events results cause.

    ``on_sent`` runs in the publisher thread; ``close_all`` in the main thread at shutdown, after
    inference has stopped. A lock keeps the two apart.
    """

    #: a live stream in one of these states sends no results: its open events end, with this reason
    LOST_STATES = {"stalled": "stream stalled", "backoff": "stream lost", "failed": "stream failed"}

    def __init__(self, config: EventsConfig, publish: Callable[[str, dict], object], *,
                 fps_for: Callable[[str], float | None] = lambda stream: None,
                 live_for: Callable[[str], bool] = lambda stream: True) -> None:
        self.config = config
        self.publish = publish
        self.fps_for = fps_for
        self.live_for = live_for
        self.streams: dict[str, StreamEvents] = {}
        self._lock = threading.Lock()

    def _tracker(self, stream: str, session: str | None) -> StreamEvents:
        tracker = self.streams.get(stream)
        if tracker is None or (session is not None and tracker.session != session):  # a new start of the stream
            tracker = StreamEvents(stream, self.config, fps=lambda: self.fps_for(stream), session=session)
            self.streams[stream] = tracker
        return tracker

    def on_sent(self, topic: str, payload: dict) -> None:
        kind, stream = payload.get("type"), str(payload.get("stream"))
        if kind == "status" and payload.get("state") in self.LOST_STATES and self.live_for(stream):
            # a file-mode source may look "stalled" while it waits for a slow model: only live ones end here
            with self._lock:
                tracker = self.streams.get(stream)
                events = tracker.close(self.LOST_STATES[payload["state"]]) if tracker is not None else []
        elif kind == "result":
            with self._lock:
                events = self._tracker(stream, payload.get("session")).observe(payload)
        else:
            return
        for msg in events:
            log.log(logging.DEBUG if msg["phase"] == "update" else logging.INFO, "[%s] event %s %s %s (peak %.2f)",
                    msg["stream"], msg["phase"], msg["label"], msg["id"], msg["peak_score"])
            self.publish(protocol.event_topic(msg["stream"]), msg)

    def close_stream(self, stream: str, reason: str) -> None:
        """End the stream's open events with ``reason`` and forget the stream (it was removed)."""
        with self._lock:
            tracker = self.streams.pop(stream, None)
            events = tracker.close(reason) if tracker is not None else []
        for msg in events:
            log.info("[%s] event end %s %s (%s)", msg["stream"], msg["label"], msg["id"], msg["reason"])
            self.publish(protocol.event_topic(msg["stream"]), msg)

    def close_all(self, reason_for: Callable[[str], str] = lambda stream: "stopped") -> None:
        """End every open event (``reason_for(stream)`` says why: "stream ended", "stopped")."""
        with self._lock:
            events = [msg for stream, tracker in self.streams.items() for msg in tracker.close(reason_for(stream))]
        for msg in events:
            log.info("[%s] event end %s %s (%s)", msg["stream"], msg["label"], msg["id"], msg["reason"])
            self.publish(protocol.event_topic(msg["stream"]), msg)

"""The operator features, wired once: action events, metrics, snapshot socket, annotated video,
event clips, alerts (webhooks, MQTT) and the web console.

:class:`OperatorFeatures` keeps :mod:`streamer.pipeline` to a few calls. Everything hangs off the
publisher's listeners (called in the publisher thread after each send), so what an operator sees —
events, counters, snapshots, drawn labels, clips, alerts, the web page — is exactly what went out
on the wire. Raw frames reach the annotator, the clip recorder and the console's previews through
one tap on the capture thread's preprocess (:meth:`OperatorFeatures.tap`); none of them ever blocks
a live capture thread or the publisher (R27).

Order: ``start`` after the publisher is bound and before capture starts (a bad per-class event
rule or a busy port fails before any camera opens); ``close_events`` after inference has stopped
(so every result is in) and before the final status; ``request_stop`` for the servers at the start
of shutdown and for the annotator after the publisher has stopped; the pipeline joins the threads
(``watched``) before the ZeroMQ context is terminated.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from model.errors import PublisherError
from streamer.config import AppConfig
from streamer.core.stats import StatsRegistry

if TYPE_CHECKING:
    from model.loaded import LoadedModel

log = logging.getLogger(__name__)


class OperatorFeatures:
    def __init__(self, config: AppConfig, stats: StatsRegistry) -> None:
        self.config = config
        self.stats = stats
        self.events = None
        self.metrics = None
        self.cache = None
        self.snapshot = None
        self.annotator = None
        self.clips = None
        self.alerts = None
        self.console = None
        self._captures: dict = {}
        self._live: dict[str, bool] = {}

    def _fps(self, stream: str) -> float | None:
        thread = self._captures.get(stream)
        interval = getattr(thread, "interval", None)
        return 1.0 / interval if interval else None

    def _media_fps(self, stream: str) -> float | None:
        """Events measure time in media seconds for file-mode sources, wall clock for live ones."""
        return None if self._live.get(stream, True) else self._fps(stream)

    def start(self, publisher, context, *, model: LoadedModel, device: str) -> None:
        cfg = self.config
        streams = [s.stream for s in self.stats]
        if cfg.clips.enabled:
            from streamer.ops.clips import ClipRecorder

            self.clips = ClipRecorder(cfg.clips, self.stats, root=Path(cfg.clips.dir), fps_for=self._fps,
                                      live_for=lambda stream: self._live.get(stream, True))
        if cfg.events.enabled:
            from streamer.ops.events import EventStage

            cfg.events.check_labels(list(model.labels))
            self.events = EventStage(cfg.events, self._event_publisher(publisher), fps_for=self._media_fps,
                                     live_for=lambda stream: self._live.get(stream, True))
            publisher.listeners.append(self.events.on_sent)
        if cfg.snapshot.address is not None:
            from streamer.outputs.snapshot import LastValueCache, SnapshotServer

            self.cache = LastValueCache(streams)
            publisher.listeners.append(self.cache.on_sent)
            curve = publisher.curve  # the publisher's CURVE keys and allow-list, if on
            if cfg.publisher.curve and curve is None:
                raise PublisherError("the snapshot socket cannot share the publisher's CURVE keys; "
                                     "leave snapshot.address unset or report this defect")
            self.snapshot = SnapshotServer(cfg.snapshot, self.cache, context,
                                           secure=curve.secure if curve is not None else None)
            self.snapshot.start_and_wait()
        if cfg.metrics.enabled:
            from streamer.ops.metrics import Metrics

            snapshot = self.snapshot
            self.metrics = Metrics(cfg.metrics, self.stats, model_info=model.info(), model_size=model.weight_bytes(),
                                   device=device, publisher_counts=lambda: (publisher.sent, publisher.queue_dropped),
                                   snapshot_counts=snapshot and (lambda: {"served": snapshot.served,
                                                                          "refused": snapshot.refused,
                                                                          "limited": snapshot.limited}))
            publisher.listeners.append(self.metrics.on_sent)
            self.metrics.start()
        if cfg.annotate.active:
            from streamer.ops.annotate import Annotator

            annotator = Annotator(cfg.annotate, streams, self.stats, fps_for=self._fps)
            if annotator.show or cfg.annotate.path is not None:  # a window without a display: nothing to do
                self.annotator = annotator
                publisher.listeners.append(annotator.on_sent)
                annotator.start()
        self._start_console(publisher, streams)

    def _start_console(self, publisher, streams: list[str]) -> None:
        """Clips, alerts and the web page: listeners after the ones above, so they see events as sent."""
        cfg = self.config
        if self.clips is not None:
            publisher.listeners.append(self.clips.on_sent)
            self.clips.start()
        if cfg.alerts:
            from streamer.ops.alerts import Alerts

            self.alerts = Alerts(cfg.alerts, self.stats)
            publisher.listeners.append(self.alerts.on_sent)
            self.alerts.start()
        if cfg.ui.enabled:
            from streamer.ops.console.server import Console

            self.console = Console(cfg.ui, streams, clips_root=Path(cfg.clips.dir) if self.clips else None)
            if self.clips is not None:
                self.clips.on_clip = self.console.on_clip
            publisher.listeners.append(self.console.on_sent)
            self.console.start_and_wait()  # a busy port fails here, before any camera opens

    def _event_publisher(self, publisher) -> Callable:
        """``publisher.publish`` for events: an ``end`` carries the path of its clip when one is written."""
        if self.clips is None:
            return publisher.publish
        clips = self.clips

        def publish(topic: str, msg: dict) -> bool:
            if msg.get("phase") == "end":
                clip = clips.clip_for(msg["stream"], msg["id"])
                if clip is not None:
                    msg["clip"] = clip
            return publisher.publish(topic, msg)

        return publish

    def tap(self, plan, preprocess: Callable) -> Callable:
        """The capture thread's preprocess, wrapped so the annotator, the clip recorder and the console's
        previews see the raw frames (those that are on). The annotated video's streams are fixed at start:
        a stream added later is not drawn."""
        self._live = {**self._live, plan.id: plan.live}
        if self.annotator is not None and plan.id in self.annotator.streams:
            preprocess = self.annotator.tap(plan.id, preprocess, wait=not plan.live)
        sinks = [sink.on_frame for sink in (self.clips, self.console) if sink is not None]
        return raw_frames(plan.id, preprocess, sinks) if sinks else preprocess

    def add_stream(self, stream: str, capture) -> None:
        """A stream about to start (at start-up, or added while running): its capture thread, for the frame
        rate it finds on open, and a place in the features that keep something per stream."""
        self._captures = {**self._captures, stream: capture}  # copy-on-write: other threads read them
        for feature in (self.clips, self.console, self.metrics):
            if feature is not None:
                feature.add_stream(stream)

    def remove_stream(self, publisher, stats) -> None:
        """A removed stream's last messages, then everything kept about it let go, in the publisher thread
        after what it already queued: its open events end (reason ``removed``), its last status (state
        ``removed``) goes out, then the snapshot cache, metrics, clip buffer and console forget it."""
        stream = stats.stream
        self._captures = {k: v for k, v in self._captures.items() if k != stream}
        self._live = {k: v for k, v in self._live.items() if k != stream}

        def forget() -> None:
            for feature in (self.cache, self.metrics, self.clips, self.console):
                if feature is not None:
                    feature.forget(stream)

        def retire() -> None:
            if self.events is not None:
                self.events.close_stream(stream, "removed")
            publisher.publish_status(stats)
            if not publisher.call_soon(forget):
                forget()  # queue full: the last status may then reach a cache that forgot the stream

        if not publisher.call_soon(retire):
            retire()  # queue full: at once (the last status may then be dropped; the state is still removed)

    def close_events(self, publisher) -> None:
        """End the open events, in the publisher thread after the results still queued there."""
        if self.events is None:
            return
        ended = {"ended": "stream ended", "failed": "stream failed"}

        def close() -> None:
            self.events.close_all(lambda stream: ended.get(self.stats[stream].state, "stopped"))

        if not publisher.call_soon(close):
            close()  # queue full: close now (a result still queued may then reopen an event)

    def watched(self) -> list:
        """The threads started here, for the supervisor (policies: streamer/supervisor.py)."""
        from streamer.supervisor import Policy, Watched

        out = []
        if self.snapshot is not None:
            out.append(Watched("snapshot", thread=lambda: self.snapshot, failure=lambda: self.snapshot.failure,
                               policy=Policy.RESTART, restart=self._restart_snapshot, doing=lambda: "answering"))
        if self.metrics is not None:
            out.append(Watched("metrics", thread=lambda: self.metrics.thread, failure=lambda: self.metrics.failure,
                               policy=Policy.RESTART, restart=self.metrics.restart, doing=lambda: "serving"))
        if self.annotator is not None:
            out.append(Watched("annotate", thread=lambda: self.annotator, failure=lambda: self.annotator.failure,
                               policy=Policy.FATAL, doing=lambda: "writing the annotated video"))
        for thread in self._side_threads():
            out.append(Watched(thread.name, thread=lambda thread=thread: thread, failure=lambda: None,
                               policy=Policy.SIDE, doing=lambda: "finishing its output"))
        return out

    def _side_threads(self) -> list:
        """The side outputs' threads (clips writer, alert senders, console): R27, they never stop the pipeline."""
        threads = [self.clips, self.console] + (list(self.alerts.senders) if self.alerts is not None else [])
        return [t for t in threads if t is not None]

    def _restart_snapshot(self) -> None:
        """Serve snapshots again on the same endpoint."""
        from streamer.supervisor import restarted

        self.snapshot = restarted(self.snapshot)

    def request_stop(self, *, servers: bool) -> None:
        """Tell threads to end without waiting (the pipeline joins them against one deadline):
        ``servers``: the snapshot and metrics servers; else the annotator (after the last result)."""
        if servers:
            for server in (self.snapshot, self.metrics):
                if server is not None:
                    server.request_stop()
            return
        if self.annotator is not None:
            self.annotator.request_stop()
        for thread in self._side_threads():  # the clips first: they finish with the frames there are
            thread.request_stop()

    def finish(self) -> None:
        """After the joins: say what the annotator and the alerts had to leave out."""
        if self.annotator is not None and self.annotator.dropped:
            log.warning("annotate: %d frames were not annotated (queue full)", self.annotator.dropped)
        if self.alerts is not None:
            self.alerts.finish()


def raw_frames(stream: str, preprocess: Callable, sinks: list[Callable]) -> Callable:
    """Wrap ``preprocess`` so each raw frame also goes to every ``sink(stream, index, wall, frame)``
    first (capture thread; a sink only keeps a reference, it never copies, encodes or waits).
    ``index`` counts the frames handed to preprocessing, as the annotator's frame numbers do."""
    counter = iter(range(1 << 62))

    def tapped(frame):
        index, wall = next(counter), time.time()
        for sink in sinks:
            sink(stream, index, wall, frame)
        return preprocess(frame)

    return tapped

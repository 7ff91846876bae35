"""Event clips: the source frames from ``pre_s`` before an event's start to ``post_s`` after its end, as MP4.

Frames enter through the capture thread's frame tap (:meth:`ClipRecorder.on_frame`): each stream has
a :class:`PreRoll`, a buffer of raw frames bounded in bytes (``clips.buffer_mb``) and in time
(``pre_s`` plus the few seconds an event takes to be announced). Capture only appends to it and
never waits. Events arrive from the publisher (:meth:`ClipRecorder.on_sent`, after the send): a
``start`` opens a clip, an ``end`` tells it where to stop. One thread, ``clips``, owns every open
file and encoder, in the idle scheduling class while it keeps up
(:class:`streamer.supervisor.IdleWhileKeepingUp`).

The clips of a stream share one encoding (:mod:`streamer.ops.clipencoder`): each frame is encoded
once, an IDR frame where a clip starts, and its packet goes into every clip open at that frame. It
stays ``pre_s + SHARE_MARGIN_S`` behind the stream's newest frame, so an event announced up to
``SHARE_MARGIN_S`` after its (back-dated) start finds its first frame not yet encoded and joins. A
clip whose first frame was encoded already (a later start message, a buffer too small to hold frames
back that long), or has another size than the shared encoding's first clip (a size change
mid-stream; the shared encoder resizes to its own size, as a clip's own encoder does), gets its own
encoder (:class:`streamer.ops.clipfile.ClipFile`), as every clip did before.
The buffer is the bounded queue between capture and writer: a frame that left it before the writer
took it is counted as missed and the clip is marked incomplete (R27). A clip whose file cannot be written (disk full, unwritable dir) is dropped, the
stream's status shows a warning, and the pipeline carries on.

Clocks: a live stream's frames and events are matched by wall-clock capture time (``start_ts``,
``end_ts``); a file-mode stream's by media time (frame number / fps: ``start_frame``, ``end_frame``).
Frame numbers count the frames handed to preprocessing, as the annotator's do.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Callable

from streamer.core.stats import StatsRegistry
from streamer.ops.clipencoder import ClipMuxer, SharedEncoding
from streamer.ops.clipfile import ClipFile, enforce_retention, require_av
from streamer.ops.preroll import CLOCK_EPS, Frame, PreRoll
from streamer.config import ClipsConfig
from streamer.supervisor import IdleWhileKeepingUp, join_or_warn

log = logging.getLogger(__name__)

#: longest wait between an event's (back-dated) start and its start message that clips still cover (smoothing,
#: min_duration_s and a slow model add up: 14 s was seen with the 8-view demo on a loaded 2-core machine);
#: ``buffer_mb`` bounds the memory this takes
ANNOUNCE_SLACK_S = 30.0
#: the age limit, and files changed by others, are checked by a scan this often; the size limit also after
#: a finished clip takes the clips' total past it (scanning after every clip cost the writer a fifth of its
#: time with a few thousand clips stored)
_RETENTION_EVERY_S = 60.0
#: the writer's round: it takes the frames that arrived since the last round, a few per open clip at a
#: time (waking for every frame cost more CPU than encoding them); event messages and stop wake it at once
POLL_S = 0.1
#: the writer runs in the idle scheduling class (:class:`IdleWhileKeepingUp`) until a frame it encodes is
#: this old, or frames were missed; then at nice +10 until it is back under a quarter of it
BEHIND_S = 1.5
FINAL_BUDGET_S = 2.0  # at shutdown, open clips get this long to encode what they still have
#: the shared encoding stays pre_s plus this long behind a stream's newest frame (its clock), so an event announced
#: up to this long after its back-dated start joins it (the default rules announce within about 1 s); its clips
#: are finished that much later
SHARE_MARGIN_S = 3.0
#: ... but it holds back no frame the buffer may drop within this long (a buffer_mb that holds only a few
#: seconds of a large source leaves little to hold back: frames are encoded before they leave it)
HEADROOM_S = 2.0
#: a stream that sent no frame for this long (stopped, stalled, a file at its end) is encoded to its newest frame
QUIET_S = 1.0
_KNOWN = 4096  # events whose clip path is remembered for their end message


class _Job:
    """One clip being written (writer thread only, but ``rel`` and ``failed`` are read by others)."""

    def __init__(self, msg: dict, rel: str, start_t: float) -> None:
        self.stream, self.id, self.label = msg["stream"], msg["id"], msg["label"]
        self.rel = rel
        self.start_msg = msg
        self.start_t = start_t
        self.end_t: float | None = None
        self.end_msg: dict | None = None
        self.last_index = -1
        self.first: Frame | None = None
        self.last: Frame | None = None
        self.missed = 0
        self.reached = False  # a frame past the clip's end was seen
        self.truncated = False
        self.shared: bool | None = None  # on the stream's shared encoding, or with its own encoder (None: undecided)
        self.first_index = -1  # shared: the number of the clip's first frame
        self.file: ClipFile | ClipMuxer | None = None
        self.failed = False


class ClipRecorder(threading.Thread):
    """Fed by the capture threads (:meth:`on_frame`) and the publisher (:meth:`on_sent`); owns the clip files."""

    def __init__(self, config: ClipsConfig, stats: StatsRegistry, *, root: Path,
                 live_for: Callable[[str], bool] = lambda stream: True,
                 fps_for: Callable[[str], float | None] = lambda stream: None,
                 on_clip: Callable[[dict], None] | None = None, share_lag_s: float | None = None) -> None:
        super().__init__(name="clips", daemon=False)
        require_av()
        self.config = config
        self.stats = stats
        self.root = root
        self.live_for, self.fps_for = live_for, fps_for
        self.on_clip = on_clip  # told about every finished clip (its sidecar dict), in this thread
        self._stored = 0  # bytes of finished clips under root: the last scan's, plus those finished since
        self.priority: IdleWhileKeepingUp | None = None  # the thread's CPU class, once it runs
        self._lag = 0.0  # this round: how old the oldest frame encoded was when it was encoded (seconds)
        horizon = config.pre_s + ANNOUNCE_SLACK_S
        self.buffers = {s.stream: PreRoll(config.buffer_mb * 1e6, horizon) for s in stats}
        self._commands: queue.Queue = queue.Queue(maxsize=1000)
        self._wake = threading.Event()
        self._stop_event = threading.Event()
        #: event id -> relative path of its clip (None: it could not be written); the newest _KNOWN events
        self._clips: OrderedDict[str, str | None] = OrderedDict()
        self._jobs: dict[str, _Job] = {}
        #: how far (stream clock, s) each stream's shared encoding stays behind its newest frame (tests: 0)
        self.share_lag_s = config.pre_s + SHARE_MARGIN_S if share_lag_s is None else share_lag_s
        self._encodings: dict[str, SharedEncoding] = {}  # per stream with clips on its shared encoding
        self.written = 0
        self.missed = 0  # frames that left a buffer before the writer took them
        self.dropped_commands = 0
        self.cpu_s = 0.0  # CPU time this thread spent encoding (benchmarks)
        self.encoded = 0  # frames encoded, by the shared encoders and the clips' own
        self.shared_clips = 0  # clips that joined their stream's shared encoding
        self.own_clips = 0  # clips that got their own encoder (their first frame was encoded already)

    # ---- capture threads ------------------------------------------------------------------------
    def on_frame(self, stream: str, index: int, wall: float, image) -> None:
        buf = self.buffers.get(stream)
        if buf is None:
            return
        t = wall if self.live_for(stream) else index / (self.fps_for(stream) or 25.0)
        buf.add(Frame(index, t, wall, image))  # the writer takes it on its next round (POLL_S)

    # ---- publisher thread -----------------------------------------------------------------------
    def on_sent(self, topic: str, payload: dict) -> None:
        if payload.get("type") != "event" or payload.get("stream") not in self.buffers:
            return
        phase = payload.get("phase")
        if phase == "start":
            self._clips[payload["id"]] = f"{payload['stream']}/{payload['id']}.mp4"
            while len(self._clips) > _KNOWN:
                self._clips.popitem(last=False)
        elif phase != "end":
            return
        try:
            self._commands.put_nowait(payload)
        except queue.Full:
            self.dropped_commands += 1
            self._warn(payload["stream"], "clips: the clip writer is behind; event messages dropped")
            return
        self._wake.set()

    # ---- streams added and removed while running (streamer/streams.py) --------------------------
    def add_stream(self, stream: str) -> None:
        if stream in self.buffers:  # a stream of the start-up set: its buffer is there
            return
        horizon = self.config.pre_s + ANNOUNCE_SLACK_S
        self.buffers = {**self.buffers, stream: PreRoll(self.config.buffer_mb * 1e6, horizon)}  # copy-on-write

    def forget(self, stream: str) -> None:
        """A removed stream: the writer finishes its clips with the frames there are, then drops its buffer."""
        try:
            self._commands.put_nowait({"forget": stream})
        except queue.Full:
            self.dropped_commands += 1  # its buffer stays until shutdown; bounded by clips.buffer_mb
        self._wake.set()

    def clip_for(self, stream: str, event_id: str) -> str | None:
        """The clip's path relative to ``clips.dir`` if one is being written for this event, else None."""
        return self._clips.get(event_id)

    # ---- lifecycle ------------------------------------------------------------------------------
    def request_stop(self) -> None:
        """Finish every open clip with the frames there are (within ``FINAL_BUDGET_S``), then end."""
        self._stop_event.set()
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        """:meth:`request_stop`, then join."""
        self.request_stop()
        join_or_warn(self, timeout)

    def run(self) -> None:
        self.priority = IdleWhileKeepingUp()  # encoding waits for capture and inference on a busy machine
        self.priority.start()
        next_retention = 0.0
        try:
            while not self._stop_event.is_set():
                self._wake.wait(POLL_S)
                self._wake.clear()
                self.step(final=False)
                if time.monotonic() >= next_retention:
                    next_retention = time.monotonic() + _RETENTION_EVERY_S
                    self._retention()
            if self.priority is not None:
                self.priority.finish()
            self.step(final=True)
        except Exception:
            log.exception("clips thread failed; no more clips are written")
            for stats in self.stats:
                stats.warn("clips", "clips: the clip writer failed (see the log); no more clips are written")
        finally:
            for job in self._jobs.values():
                if job.file is not None:
                    job.file.abandon()
            for encoding in self._encodings.values():
                encoding.close()

    # ---- the thread -----------------------------------------------------------------------------
    def step(self, final: bool) -> None:
        """One round of the writer: take new event messages, encode what arrived, finish what is whole
        (``final``: every clip, with the frames there are). The thread calls it; tests may call it instead."""
        while True:
            try:
                msg = self._commands.get_nowait()
            except queue.Empty:
                break
            self._command(msg)
        cpu0 = time.thread_time()
        deadline = time.monotonic() + FINAL_BUDGET_S if final else None
        missed, self._lag = self.missed, 0.0
        for stream in {job.stream: None for job in self._jobs.values()}:
            self._write(stream, deadline, final)
        self.cpu_s += time.thread_time() - cpu0
        if self.priority is not None:
            self.priority.behind(self._lag > (BEHIND_S / 4 if not self.priority.idle else BEHIND_S)
                                 or self.missed > missed)

    def _clock(self, stream: str, msg: dict, when: str) -> float:
        if self.live_for(stream):
            return float(msg[f"{when}_ts"])
        return float(msg[f"{when}_frame"]) / (self.fps_for(stream) or 25.0)

    def _command(self, msg: dict) -> None:
        if "forget" in msg:
            self._forget(msg["forget"])
            return
        stream, event_id = msg["stream"], msg["id"]
        if msg["phase"] == "start":
            rel = f"{stream}/{event_id}.mp4"
            self._jobs[event_id] = _Job(msg, rel, self._clock(stream, msg, "start"))
            return
        job = self._jobs.get(event_id)
        if job is not None:
            job.end_t, job.end_msg = self._clock(stream, msg, "end"), msg

    def _forget(self, stream: str) -> None:
        self._write(stream, None, final=True)  # its clips end with the frames there are; its encoder closes
        buffers = dict(self.buffers)
        buffers.pop(stream, None)
        self.buffers = buffers

    def _warn(self, stream: str, text: str | None) -> None:
        stats = self.stats.get(stream)
        if stats is not None:  # a removed stream has no status any more
            stats.warn("clips", text)

    def _write(self, stream: str, deadline: float | None, final: bool) -> None:
        """One stream's round: new clips join the shared encoding or get their own encoder, the frames that
        arrived are encoded, and the clips that are whole (``final``: all) are finished."""
        jobs = [job for job in self._jobs.values() if job.stream == stream]
        for job in jobs:
            if job.shared is None:
                self._place(job)
        for job in jobs:
            if job.shared is False:
                self._pull(job, deadline)
        encoding = self._encodings.get(stream)
        buffer = self.buffers.get(stream)
        if encoding is not None and buffer is not None:
            shared = [job for job in jobs if job.shared]
            hold = self._hold(buffer)
            quiet = time.monotonic() - buffer.touched > QUIET_S  # stopped, stalled, at its end: encode to its newest
            done = encoding.run(buffer, shared, {job.id: self._stop_at(job) for job in shared}, deadline=deadline,
                                hold=0.0 if final or quiet else hold)
            self.encoded += done.encoded
            self.missed += done.missed
            if done.oldest is not None:  # behind: later than the frames held back on purpose
                self._lag = max(self._lag, time.time() - done.oldest - hold)
            failed = done.failed
            if final or all(job.reached for job in shared):  # nothing more to encode: what it holds comes out
                failed += encoding.flush(shared)
            for job, exc in failed:
                self._fail(job, exc)
        for job in jobs:
            if (final or job.reached) and not (job.shared and job.file is not None and job.file.owed):
                self._finish(job)
        if encoding is not None and not any(job.shared for job in self._jobs.values() if job.stream == stream):
            encoding.close()
            del self._encodings[stream]

    def _place(self, job: _Job) -> None:
        """A new clip joins its stream's shared encoding unless that has encoded its first frame already, or
        encodes frames of another size; then it gets its own encoder (:meth:`_pull`)."""
        buffer = self.buffers.get(job.stream)
        first = buffer.first_from(job.start_t - self.config.pre_s - CLOCK_EPS) if buffer is not None else None
        if first is None:  # its first frame has not come yet (or the stream was removed)
            return
        encoding = self._encodings.get(job.stream)
        if encoding is not None and not encoding.admits(first):
            job.shared = False
            self.own_clips += 1
            log.debug("[%s] clip %s: its own encoder (the shared one encoded frame %d, the clip starts at %d)",
                      job.stream, job.rel, encoding.encoder.encoded_to, first.index)
            return
        if encoding is None:
            encoding = SharedEncoding(job.stream, self.config.crf, self.config.preset, first)
            self._encodings[job.stream] = encoding
        encoding.join(job, first)
        job.shared = True
        self.shared_clips += 1
        job.file = ClipMuxer(self.root / job.rel)
        try:
            job.file.open()
        except Exception as exc:  # OSError: unwritable dir
            self._fail(job, exc)

    def _hold(self, buffer: PreRoll) -> float:
        """How far behind the stream's newest frame its shared encoding stays (stream clock, s): ``share_lag_s``,
        less where the buffer would drop frames first."""
        return max(0.0, min(self.share_lag_s, buffer.capacity_s() - HEADROOM_S))

    def _stop_at(self, job: _Job) -> tuple[float, float]:
        """The clock time of the job's last frame, and of its max_clip_s limit."""
        limit = job.start_t + self.config.max_clip_s
        return min(limit, job.end_t + self.config.post_s if job.end_t is not None else float("inf")), limit

    def _pull(self, job: _Job, deadline: float | None = None) -> None:
        """A clip with its own encoder: encode the job's frames that arrived since the last pull (its pre-roll
        on the first); past ``deadline`` (shutdown) the rest counts as missed."""
        cfg = self.config
        buffer = self.buffers.get(job.stream)
        if buffer is None:  # the stream was removed: the clip ends with what it has
            return
        frames, oldest = buffer.after(job.last_index, job.start_t - cfg.pre_s - CLOCK_EPS)
        if job.last_index >= 0 and oldest > job.last_index + 1:  # frames left the buffer unwritten
            lost = (frames[0].index if frames else oldest) - job.last_index - 1
            job.missed += lost
            self.missed += lost
        stop_t, limit = self._stop_at(job)
        for n, frame in enumerate(frames):
            if frame.t > stop_t + CLOCK_EPS:  # the first frame past the clip: it is whole
                job.reached, job.truncated = True, stop_t == limit
                break
            if deadline is not None and time.monotonic() > deadline:  # shutting down: keep exit prompt (R19)
                lost = sum(1 for f in frames[n:] if f.t <= stop_t + CLOCK_EPS)
                job.missed += lost
                self.missed += lost
                break
            job.last_index, job.last = frame.index, frame
            if job.first is None:
                job.first = frame
            if job.failed:
                continue
            self._lag = max(self._lag, time.time() - frame.wall)
            try:
                if job.file is None:
                    job.file = ClipFile(self.root / job.rel, cfg.crf, cfg.preset)
                job.file.add(frame.image, frame.t)
                self.encoded += 1
            except Exception as exc:  # OSError (disk full, unwritable dir) or an encoder error: drop the clip
                self._fail(job, exc)

    def _interval(self, stream: str) -> float:
        return 1.0 / (self.fps_for(stream) or 25.0)

    def _fail(self, job: _Job, exc: BaseException) -> None:
        job.failed = True
        if job.id in self._clips:
            self._clips[job.id] = None
        if job.file is not None:
            job.file.abandon()
            job.file = None
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        text = f"clips: cannot write {self.root / job.stream}: {reason}"
        log.warning("[%s] %s (event %s; the pipeline carries on)", job.stream, text, job.id)
        self._warn(job.stream, text)

    def _finish(self, job: _Job) -> None:
        del self._jobs[job.id]
        if job.failed or job.file is None or not job.file.frames:
            if job.file is not None:
                job.file.abandon()  # a shared clip's file, opened when it joined
            if not job.failed:
                log.info("[%s] no frames for the clip of event %s", job.stream, job.id)
            return
        meta = self._meta(job)
        try:
            job.file.finish(meta)
        except Exception as exc:
            self._fail(job, exc)
            return
        self.written += 1
        if job.missed:
            self._warn(job.stream, f"clips: the writer fell behind; {job.missed} frames missing from {job.rel}")
        else:
            self._warn(job.stream, None)  # written and nothing missed: an earlier problem is over
        log.info("[%s] clip %s: %d frames%s", job.stream, job.rel, meta["frames"],
                 "" if meta["complete"] else f" (incomplete: {meta['incomplete']})")
        if self.on_clip is not None:
            self.on_clip(meta)
        try:
            self._stored += job.file.path.stat().st_size
        except OSError:
            pass
        if self._stored > self.config.max_total_mb * 1e6:
            self._retention()  # the size limit, at once (the age limit waits for the next round's scan)

    def _meta(self, job: _Job) -> dict:
        cfg = self.config
        why = []
        if job.missed:
            why.append(f"{job.missed} frames missed")
        if job.first.t > job.start_t - cfg.pre_s + self._interval(job.stream):
            why.append(f"pre-roll {max(0.0, job.start_t - job.first.t):.2f} s of {cfg.pre_s:g} s")
        if job.truncated:
            why.append(f"longer than max_clip_s {cfg.max_clip_s:g} s")
        elif not job.reached:
            why.append("the stream stopped before the clip's end")
        end = job.end_msg or {}
        return {"id": job.id, "stream": job.stream, "label": job.label, "clip": job.rel,
                "start_ts": job.start_msg["start_ts"], "end_ts": end.get("end_ts"),
                "start_frame": job.start_msg["start_frame"], "end_frame": end.get("end_frame"),
                "first_frame": job.first.index, "last_frame": job.last.index,
                "first_ts": job.first.wall, "last_ts": job.last.wall, "frames": job.file.frames,
                "missed": job.missed, "complete": not why, "incomplete": "; ".join(why)}

    def _retention(self) -> None:
        cfg = self.config
        keep = {job.file.part for job in self._jobs.values() if job.file is not None}
        try:
            deleted, self._stored = enforce_retention(self.root, cfg.max_total_mb * 1e6, cfg.max_age_h * 3600.0, keep)
        except OSError as exc:
            log.warning("clips: retention could not scan %s: %s", self.root, exc.strerror)
            return
        if deleted:
            log.info("clips: retention deleted %d old clip(s) under %s", deleted, self.root)

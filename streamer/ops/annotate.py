"""Annotated video: each frame with the model's current top action, its score and the stream's state.

``--annotate out.mp4`` writes the frames of a stream (several streams: ``out.<stream>.mp4`` each);
``--show`` also shows them in a window where a display exists (a warning, and no window, otherwise).

Frames are tapped before preprocessing (:meth:`Annotator.tap` wraps the capture thread's
preprocess callable, so the capture code is unchanged) and results arrive from the publisher
(:meth:`Annotator.on_sent`). One thread, ``annotate``, owns the writers and the window. Frame ``i``
is drawn with the newest result whose window ended at or before frame ``i`` — what the model had
said when that frame was captured — and the stream's state when it was read (not when it is drawn:
the last frames of a file are drawn after the stream ended, but were read while it ran), and written once a result ending at or after ``i`` has come
(results of a stream arrive in order), when more than ``max_pending`` frames wait, or at the end.
Frame numbers count the frames handed to preprocessing, which matches the source's frame numbers
unless frames were dropped as ``oversize``. Annotation never slows a live source: when its queue is
full the frame is not annotated (counted); a file-mode source waits for room instead.
"""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
from collections import deque
from pathlib import Path
from typing import Callable

from model.errors import SourceError
from streamer.config import ANNOTATE_FORMATS as _FOURCC, AnnotateConfig
from streamer.core.stats import StatsRegistry
from streamer.supervisor import join_or_warn

log = logging.getLogger(__name__)

def output_path(path: str | Path, stream: str, several: bool) -> Path:
    """``out.mp4`` for a single stream; ``out.<stream>.mp4`` when several streams are annotated."""
    path = Path(path)
    return path.with_name(f"{path.stem}.{stream}{path.suffix}") if several else path


def has_display() -> bool:
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def draw(frame, lines: list[str]):
    """A copy of ``frame`` with ``lines`` of text on a dark box in its top-left corner."""
    import cv2

    out = frame.copy()
    height = out.shape[0]
    scale = max(0.35, height / 720.0)
    thickness = 1 if scale < 0.8 else 2
    pad = max(2, int(4 * scale))
    sizes = [cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)[0] for text in lines]
    line_h = max(h for _, h in sizes) + 2 * pad
    box_w = max(w for w, _ in sizes) + 2 * pad
    cv2.rectangle(out, (0, 0), (min(box_w, out.shape[1] - 1), min(line_h * len(lines), height - 1)), (0, 0, 0), -1)
    for i, text in enumerate(lines):
        y = (i + 1) * line_h - pad
        cv2.putText(out, text, (pad, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return out


class _Stream:
    """One stream's pending frames, the results seen so far, and its writer."""

    def __init__(self, stream: str, path: Path | None) -> None:
        self.stream = stream
        self.path = path
        self.pending: deque = deque()  # (frame_no, frame, state when it was read)
        self.results: deque = deque()  # (end frame_no, label, score), in order
        self.covered = -1  # newest frame number a result's window ended at
        self.writer = None
        self.size: tuple[int, int] | None = None
        self.written = 0


class Annotator(threading.Thread):
    """Owns the video writers and the window; fed by :meth:`tap` (capture threads) and :meth:`on_sent`."""

    def __init__(self, config: AnnotateConfig, streams: list[str], stats: StatsRegistry, *,
                 fps_for: Callable[[str], float | None] = lambda stream: None) -> None:
        super().__init__(name="annotate", daemon=False)
        self.config = config
        self.stats = stats
        self.fps_for = fps_for
        several = len(streams) > 1
        self.streams = {s: _Stream(s, output_path(config.path, s, several) if config.path else None) for s in streams}
        self._frames: queue.Queue = queue.Queue(maxsize=config.queue_size)
        self._lock = threading.Lock()  # guards every _Stream.results / covered
        self._stop_event = threading.Event()
        self.show = config.window
        if self.show and not has_display():
            log.warning("annotate: no display (DISPLAY is not set); not showing a window")
            self.show = False
        self.dropped = 0  # frames not annotated because the queue was full
        #: what ended the thread, for the supervisor (streamer/supervisor.py), which logs it
        self.failure: BaseException | None = None

    @property
    def error(self) -> str | None:
        """What ended the thread, as one line (None while it runs or after a clean stop)."""
        return None if self.failure is None else f"{type(self.failure).__name__}: {self.failure}"

    # ---- capture threads ------------------------------------------------------------------------
    def tap(self, stream: str, preprocess: Callable, *, wait: bool) -> Callable:
        """Wrap ``preprocess`` so each raw frame is also queued for annotation (``wait``: file mode)."""
        counter = iter(range(1 << 62))

        stats = self.stats[stream]

        def tapped(frame):
            item = (stream, next(counter), frame, stats.state)  # the state this frame was read in
            try:
                if wait:
                    self._frames.put(item, timeout=1.0)
                else:
                    self._frames.put_nowait(item)
            except queue.Full:
                self.dropped += 1
            return preprocess(frame)

        return tapped

    # ---- publisher thread -----------------------------------------------------------------------
    def on_sent(self, topic: str, payload: dict) -> None:
        if payload.get("type") != "result":
            return
        s = self.streams.get(str(payload.get("stream")))
        if s is None or not payload.get("top_k"):
            return
        end = int(payload["window"]["frame_indices"][-1])
        top = payload["top_k"][0]
        with self._lock:
            s.results.append((end, str(top["label"]), float(top["score"])))
            s.covered = max(s.covered, end)

    # ---- the thread -----------------------------------------------------------------------------
    def request_stop(self) -> None:
        """Tell the thread to write what is pending, close the files and end; does not wait."""
        self._stop_event.set()

    def stop(self, timeout: float = 10.0) -> None:
        """:meth:`request_stop`, then join."""
        self.request_stop()
        join_or_warn(self, timeout)

    def run(self) -> None:
        try:
            while not self._stop_event.is_set():
                try:
                    stream, frame_no, frame, state = self._frames.get(timeout=0.1)
                except queue.Empty:
                    self._flush(final=False)
                    continue
                self.streams[stream].pending.append((frame_no, frame, state))
                self._flush(final=False)
            while True:  # what the capture threads queued before they stopped
                try:
                    stream, frame_no, frame, state = self._frames.get_nowait()
                except queue.Empty:
                    break
                self.streams[stream].pending.append((frame_no, frame, state))
            self._flush(final=True)
        except Exception as exc:  # the supervisor logs it once and stops the pipeline
            self.failure = exc
        finally:
            for s in self.streams.values():
                if s.writer is not None:
                    s.writer.release()
                    log.info("[%s] annotated video %s: %d frames", s.stream, s.path, s.written)
            if self.show:
                import cv2

                cv2.destroyAllWindows()

    def _flush(self, final: bool) -> None:
        for s in self.streams.values():
            while s.pending:
                frame_no, frame, state = s.pending[0]
                with self._lock:
                    covered = s.covered
                if not (final or frame_no <= covered or len(s.pending) > self.config.max_pending):
                    break
                s.pending.popleft()
                self._emit(s, frame_no, frame, state)

    def _label_for(self, s: _Stream, frame_no: int) -> tuple[str, float] | None:
        with self._lock:
            while len(s.results) > 1 and s.results[1][0] <= frame_no:
                s.results.popleft()  # a newer result also ended at or before this frame
            if s.results and s.results[0][0] <= frame_no:
                return s.results[0][1], s.results[0][2]
        return None

    def _emit(self, s: _Stream, frame_no: int, frame, state: str) -> None:
        import cv2

        top = self._label_for(s, frame_no)
        lines = [f"{top[0]} {top[1]:.2f}" if top else "(waiting for the first window)",
                 f"{s.stream} {state} #{frame_no}"]
        out = draw(frame, lines)
        if s.path is not None:
            if s.writer is None:
                self._open(s, out)
            if (out.shape[1], out.shape[0]) != s.size:
                out = cv2.resize(out, s.size, interpolation=cv2.INTER_AREA)  # a mid-stream size change
            s.writer.write(out)
            s.written += 1
        if self.show:
            try:
                cv2.imshow(f"timesformer-stream: {s.stream}", out)
                cv2.waitKey(1)
            except cv2.error as exc:
                log.warning("annotate: cannot show a window (%s); writing the file only", str(exc).strip()[:120])
                self.show = False

    def _open(self, s: _Stream, frame) -> None:
        import cv2

        fps = self.fps_for(s.stream) or 25.0
        s.size = (frame.shape[1], frame.shape[0])
        s.path.parent.mkdir(parents=True, exist_ok=True)
        fourcc = cv2.VideoWriter_fourcc(*_FOURCC[s.path.suffix.lower()])
        s.writer = cv2.VideoWriter(str(s.path), fourcc, float(fps), s.size)
        if not s.writer.isOpened():
            s.writer = None
            raise SourceError(f"cannot write {s.path}: OpenCV has no encoder for it here; try a .avi path")
        log.info("[%s] writing annotated video to %s (%dx%d, %.1f fps)", s.stream, s.path, *s.size, fps)

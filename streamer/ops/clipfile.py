"""One event clip on disk: an H.264 MP4 written frame by frame with PyAV, and the clip store's retention.

Written as ``.<id>.mp4.part`` and renamed to ``<id>.mp4`` when finished (a reader never sees half a
file), with ``<id>.json`` beside it (what the clip holds: first frame, frames, missed frames, whether
it is complete). H.264 in yuv420p with ``+faststart``, which every browser plays. Timestamps are the
frames' own (milliseconds on the stream's clock), so a live source's uneven frame times are kept.

:class:`ClipFile` is a clip with its own encoder: the clips of a stream normally share one encoding
(:mod:`streamer.ops.clipencoder`, which uses the helpers below the same way), and a clip gets its own
when it cannot join that one.
"""

from __future__ import annotations

import json
import logging
import os
import time
from fractions import Fraction
from pathlib import Path

log = logging.getLogger(__name__)

TIME_BASE = Fraction(1, 1000)  # milliseconds: every clip's timestamps
_SUFFIXES = (".mp4", ".json", ".part")


def require_av():
    """PyAV with an H.264 encoder, or a one-line ConfigError (checked when clips start, before any camera)."""
    from model.errors import ConfigError

    try:
        import av
    except ImportError:
        raise ConfigError("clips need PyAV, a dependency of this package: pip install av (or --clips off)") from None
    if "libx264" not in av.codecs_available:
        raise ConfigError("clips: this PyAV build has no H.264 encoder (libx264); install the PyPI wheel "
                          "(pip install --force-reinstall av) or run with --clips off")
    return av


class ClipFile:
    """An MP4 being written; ``add`` frames in time order, then ``finish`` (or ``abandon``)."""

    def __init__(self, path: Path, crf: int, preset: str) -> None:
        self.path = path
        self.part = part_path(path)
        self.crf, self.preset = crf, preset
        self._out = None
        self._stream = None
        self._size: tuple[int, int] | None = None
        self._t0: float | None = None
        self._last_pts = -1
        self.frames = 0

    def _open(self, frame) -> None:
        self._size = even_size(frame)
        self._out = open_mp4(self.part)
        stream = self._out.add_stream("libx264", rate=RATE)
        stream.width, stream.height = self._size
        stream.time_base = TIME_BASE
        configure_x264(stream.codec_context, self.preset, self.crf)
        self._stream = stream

    def add(self, frame, t: float) -> None:
        """Encode one BGR frame captured at ``t`` seconds (stream clock). OSError/av errors propagate."""
        if self._out is None:
            self._open(frame)
            self._t0 = t
        video = yuv_frame(frame, self._size)
        pts = max(self._last_pts + 1, round((t - self._t0) * 1000))
        video.pts, video.time_base = pts, TIME_BASE
        self._last_pts = pts
        for packet in self._stream.encode(video):
            self._out.mux(packet)
        self.frames += 1

    def finish(self, meta: dict) -> bool:
        """Flush, close, move into place and write the sidecar; False when no frame was ever added."""
        if self._out is None:
            return False
        try:
            for packet in self._stream.encode():
                self._out.mux(packet)
        finally:
            self._out.close()
            self._out = None
        place(self.part, self.path, meta)
        return True

    def abandon(self) -> None:
        """Close and delete what was written (after a write error)."""
        discard(self._out, self.part, self.path)
        self._out = None


# ---- shared with streamer/ops/clipencoder.py ------------------------------------------------------
#: the frame rate x264's rate control assumes (timestamps stay the frames' own): without one it takes the
#: millisecond time base for 1000 fps and gives each frame a fraction of the bits (measured: 32.2 against
#: 33.7 dB PSNR at half the size); 24 is what PyAV gives a new stream, which clips always had
RATE = Fraction(24)


def configure_x264(ctx, preset: str, crf: int) -> None:
    """Set a libx264 codec context as every clip encodes. zerolatency: no look-ahead and no B-frames (each
    frame's packet comes out of ``encode`` at once, decoding order is display order); measured on synthetic
    video it took 20 % (160x120) to 35 % (1280x720) less CPU than without at the same preset and crf, files
    no larger. One thread: one core at most per encoder."""
    ctx.pix_fmt = "yuv420p"
    ctx.time_base = TIME_BASE
    ctx.framerate = RATE
    ctx.thread_count = 1
    ctx.options = {"preset": preset, "tune": "zerolatency", "crf": str(crf)}


def part_path(path: Path) -> Path:
    """Where a clip is written until it is finished: ``.<name>.part`` beside it."""
    return path.with_name(f".{path.name}.part")


def even_size(frame) -> tuple[int, int]:
    """(width, height) of a BGR frame, cut to even sides (yuv420p needs them)."""
    h, w = frame.shape[:2]
    return w - w % 2, h - h % 2


def yuv_frame(frame, size: tuple[int, int]):
    """A BGR frame as a yuv420p ``av.VideoFrame`` of ``size`` (resized when its own differs: odd sides, or
    a size change mid-stream)."""
    import av
    import cv2

    if (frame.shape[1], frame.shape[0]) != size:
        frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
    # OpenCV's BGR -> I420 costs a fraction of the encoder's own conversion (swscale): 1.1 vs 2-3 ms a
    # 1280x720 frame here
    return av.VideoFrame.from_ndarray(cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420), format="yuv420p")


def open_mp4(part: Path):
    """An MP4 container for writing at ``part`` (its folder made first: an unwritable one raises OSError)."""
    av = require_av()
    part.parent.mkdir(parents=True, exist_ok=True)
    return av.open(str(part), "w", format="mp4", options={"movflags": "+faststart"})


def place(part: Path, path: Path, meta: dict) -> None:
    """Move a closed ``.part`` into place and write the ``.json`` sidecar beside it (both by rename)."""
    os.replace(part, path)
    side = path.with_suffix(".json")
    tmp = side.with_name(f".{side.name}.part")
    tmp.write_text(json.dumps(meta, separators=(",", ":")))
    os.replace(tmp, side)


def discard(out, *paths: Path) -> None:
    """Close a container after a write error (it may fail again: the file is broken already) and delete
    what was written."""
    if out is not None:
        try:
            out.close()
        except Exception:  # disk full: nothing more to save
            log.debug("closing %s after an error failed too", paths[0], exc_info=True)
    for path in paths:
        try:
            path.unlink()
        except OSError:
            pass


def enforce_retention(root: Path, max_total_bytes: float, max_age_s: float, keep: set[Path]) -> tuple[int, int]:
    """Delete clips (``<root>/<stream>/<name>.mp4`` and their ``.json``) older than ``max_age_s``, then the
    oldest until the total is at most ``max_total_bytes``; ``keep`` (files being written) is never
    touched, nor any file that is not a clip. Returns how many clips were deleted and the bytes of
    those left."""
    if not root.is_dir():
        return 0, 0
    clips: dict[Path, list] = {}  # stem path -> [newest mtime, bytes, files]
    for path in root.glob("*/*"):
        if path.suffix not in _SUFFIXES or path in keep or not path.is_file():
            continue
        stem = path.parent / path.name.lstrip(".").split(".", 1)[0]
        try:
            st = path.stat()
        except OSError:
            continue
        entry = clips.setdefault(stem, [0.0, 0, []])
        entry[0] = max(entry[0], st.st_mtime)
        entry[1] += st.st_size
        entry[2].append(path)
    now = time.time()
    total = sum(entry[1] for entry in clips.values())
    deleted = 0
    for mtime, size, files in sorted(clips.values(), key=lambda entry: entry[0]):
        if now - mtime <= max_age_s and total <= max_total_bytes:
            break
        for path in files:
            try:
                path.unlink()
            except OSError as exc:
                log.warning("clips: cannot delete %s: %s", path, exc.strerror)
        total -= size
        deleted += 1
    return deleted, total

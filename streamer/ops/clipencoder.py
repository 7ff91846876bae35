"""One H.264 encoding per stream, shared by the stream's open clips: each frame is encoded once and its
packet muxed into every clip that holds that frame, without re-encoding.

:class:`SharedEncoder` is libx264 with the settings a clip's own encoder has
(:func:`streamer.ops.clipfile.configure_x264`: ``tune=zerolatency``, so no B-frames and no look-ahead;
each frame's packet comes out of ``encode`` at once, decoding order is display order, ``dts == pts``).
A clip's first frame is sent with ``pict_type = I``, which FFmpeg's libx264 wrapper turns into an IDR
frame (x264's "keyframe" without open GOP): nothing after it refers to a frame before it, so a clip
that starts there decodes from its first frame. The encoder writes no global header, so x264 puts
its parameter sets (SPS, PPS) before every IDR frame; each clip's muxer takes them from its first
packet into the MP4's ``avcC`` (PyAV's ``extract_extradata``), and the MP4 muxer stores the packets in
MP4's length-prefixed form, as ``ffmpeg -c copy`` does from an MPEG-TS (the parameter sets stay in the
IDR samples as well; headless Chromium played such clips to the end, every frame decoded).

:class:`ClipMuxer` is one clip's MP4: packets with their timestamps moved so that the clip's first
frame is at 0 (milliseconds, as :class:`streamer.ops.clipfile.ClipFile` writes them), ``+faststart``,
``.part`` renamed into place with its ``.json`` beside it, as a clip with its own encoder.

:class:`SharedEncoding` is what the clip writer (:mod:`streamer.ops.clips`) drives per stream: how far
the encoding got in the stream's buffer and which clips each frame goes to.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from pathlib import Path
from typing import NamedTuple

from streamer.ops.clipfile import (TIME_BASE, configure_x264, discard, even_size, open_mp4, part_path, place,
                                   require_av, yuv_frame)
from streamer.ops.preroll import CLOCK_EPS

log = logging.getLogger(__name__)

_DEFAULT_DURATION = 40  # ms: a packet's duration before two neighbouring frames show the stream's


class ClipMuxer:
    """One clip's MP4 fed with packets of its stream's :class:`SharedEncoder` (``add``), then ``finish``
    (or ``abandon``). ``frames``: packets written; ``owed``: frames handed to the encoder for this clip
    whose packet has not come out yet."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.part = part_path(path)
        self._out = None
        self._stream = None
        self._base = 0  # the encoder's pts of the clip's first frame
        self.frames = 0
        self.owed = 0
        self.closed = False

    def open(self) -> None:
        """Make the folder and open the file (OSError: unwritable folder, before any frame is encoded)."""
        self._out = open_mp4(self.part)

    def add(self, packet, pts: int, dts: int, duration: int, size: tuple[int, int]) -> None:
        """Mux one packet of the shared encoding (``pts``, ``dts``: the encoder's, in ms). The packet object is
        shared between clips and the muxer rescales it: every field it reads is set here. OSError/av errors
        propagate."""
        if self.closed:  # abandoned after an error: its packets go nowhere
            return
        if self._stream is None:  # the first packet: an IDR frame carrying SPS and PPS
            self._stream = self._out.add_mux_stream("h264", width=size[0], height=size[1])
            self._stream.time_base = TIME_BASE
            self._base = pts
        packet.stream = self._stream
        packet.time_base = TIME_BASE
        packet.pts, packet.dts, packet.duration = pts - self._base, dts - self._base, duration
        self._out.mux(packet)
        self.frames += 1

    def finish(self, meta: dict) -> bool:
        """Close, move into place and write the sidecar; False (and nothing left on disk) without a packet."""
        if self.closed:
            return False
        if self._stream is None:
            self.abandon()
            return False
        try:
            self._out.close()
        finally:
            self._out, self.closed = None, True
        place(self.part, self.path, meta)
        return True

    def abandon(self) -> None:
        """Close and delete what was written (after a write error)."""
        discard(self._out, self.part, self.path)
        self._out, self.closed = None, True


class SharedEncoder:
    """One stream's libx264 encoder for its clips. ``encode`` a frame with the clips that hold it; the
    packet goes to each of them. Opened at the first frame's size (even sides); frames of another size
    are resized to it, as a clip's own encoder does. After ``flush`` it is done: ``close`` it."""

    def __init__(self, stream: str, crf: int, preset: str) -> None:
        self.stream, self.crf, self.preset = stream, crf, preset
        self._ctx = None
        self.size: tuple[int, int] | None = None
        self._idr = None  # av's PictureType.I, looked up when the encoder opens
        self._t0 = 0.0
        self._last_pts = -1
        self._prev: tuple[int, int] | None = None  # (frame number, pts) of the last frame encoded
        self._duration = _DEFAULT_DURATION
        self._owed: deque[tuple[int, int, list[ClipMuxer]]] = deque()  # (pts, duration, clips) per frame

    @property
    def encoded_to(self) -> int:
        """The number of the last frame encoded (-1: none yet)."""
        return self._prev[0] if self._prev is not None else -1

    def _open(self, image, t: float) -> None:
        av = require_av()
        ctx = av.CodecContext.create("libx264", "w")
        from av.video.frame import PictureType

        self.size, self._idr = even_size(image), PictureType.I
        ctx.width, ctx.height = self.size
        configure_x264(ctx, self.preset, self.crf)
        ctx.open()
        self._ctx, self._t0 = ctx, t

    def encode(self, index: int, image, t: float, key: bool,
               clips: list[ClipMuxer]) -> list[tuple[ClipMuxer, Exception]]:
        """Encode frame ``index`` (BGR, captured at ``t`` s on the stream's clock), an IDR frame if ``key``,
        and mux its packet into ``clips``. Returns the clips whose write failed, with the error; an
        encoder error raises (the encoder is unusable then: close it)."""
        if self._ctx is None:
            self._open(image, t)
        video = yuv_frame(image, self.size)
        pts = max(self._last_pts + 1, round((t - self._t0) * 1000))
        video.pts, video.time_base = pts, TIME_BASE
        if key:
            video.pict_type = self._idr  # libx264: an IDR frame (no open GOP)
        if self._prev is not None and self._prev[0] == index - 1:
            self._duration = pts - self._prev[1]  # the stream's frame interval, for a clip's last packet
        self._prev, self._last_pts = (index, pts), pts
        for clip in clips:
            clip.owed += 1
        self._owed.append((pts, self._duration, clips))
        return self._deliver(self._ctx.encode(video))

    def flush(self) -> list[tuple[ClipMuxer, Exception]]:
        """The packets the encoder still holds (none with zerolatency), to their clips; it encodes no more."""
        if self._ctx is None:
            return []
        try:
            return self._deliver(self._ctx.encode(None))
        finally:
            self.close()

    def close(self) -> None:
        """Free the encoder; the next ``encode`` opens a new one (an IDR frame first, the timestamps anew)."""
        for _, _, clips in self._owed:  # frames whose packet never came: the clips miss them
            for clip in clips:
                clip.owed -= 1
        self._owed.clear()
        self._ctx = None  # PyAV frees the encoder with its context
        self.size = self._prev = None
        self._last_pts, self._duration = -1, _DEFAULT_DURATION

    def _deliver(self, packets) -> list[tuple[ClipMuxer, Exception]]:
        failed = []
        for packet in packets:
            pts, dts = packet.pts, packet.dts
            while self._owed and self._owed[0][0] < pts:  # not seen with x264; never muxed out of order
                _, _, clips = self._owed.popleft()
                log.warning("[%s] clips: the shared encoder dropped a frame (pts %d); %d clip(s) miss it",
                            self.stream, pts, len(clips))
                for clip in clips:
                    clip.owed -= 1
            if not self._owed or self._owed[0][0] != pts:
                log.warning("[%s] clips: a packet of the shared encoder matches no frame (pts %s); dropped",
                            self.stream, pts)
                continue
            _, duration, clips = self._owed.popleft()
            for clip in clips:
                clip.owed -= 1
                try:
                    clip.add(packet, pts, dts, duration, self.size)
                except Exception as exc:  # OSError (disk full) or a muxer error: that clip alone fails
                    failed.append((clip, exc))
        return failed


class Round(NamedTuple):
    """What one round of a :class:`SharedEncoding` did."""

    encoded: int  #: frames encoded
    missed: int  #: frames clips missed (they left the buffer first, or shutdown came)
    oldest: float | None  #: capture wall time of the first frame encoded (None: none was)
    failed: list  #: (clip job, exception) for each clip whose file failed


class SharedEncoding:
    """One stream's shared encoding as the clip writer drives it (in its thread only): where it is in the
    stream's buffer (``position``: the number of the last frame it passed, encoded or held by no clip) and
    which clips each frame goes to. The clips are the writer's jobs: it reads their ``first_index``,
    ``failed`` and ``file`` (a :class:`ClipMuxer`) and sets ``first``, ``last``, ``last_index``,
    ``reached``, ``truncated`` and ``missed``, as the writer does for a clip with its own encoder."""

    def __init__(self, stream: str, crf: int, preset: str, first) -> None:
        self.encoder = SharedEncoder(stream, crf, preset)
        self.position = first.index - 1
        self.shape = first.image.shape  # its first clip's frames: the size it encodes at

    def admits(self, first) -> bool:
        """A clip starting at frame ``first`` may join: that frame is not encoded yet (nor any later one), and
        it has the size of the encoding's first clip."""
        return self.encoder.encoded_to < first.index and first.image.shape == self.shape

    def join(self, job, first) -> None:
        # frames after the last one encoded were held by no clip: the encoding may go back to this clip's first
        self.position = min(self.position, first.index - 1)
        job.first_index = first.index

    def run(self, buffer, jobs: list, stops: dict, hold: float, deadline: float | None) -> Round:
        """Encode the frames of ``buffer`` (a :class:`streamer.ops.preroll.PreRoll`) that came since the last round,
        up to ``hold`` (stream clock, s) before the newest, each once, into the clips that hold it (an IDR
        frame where one starts); a frame no open clip holds is passed over. ``stops``: job id -> (clock time
        of its last frame, of its max_clip_s limit). Past ``deadline`` (shutdown) the rest counts as missed."""
        frames = buffer.upto(self.position, hold)
        encoded = missed = 0
        oldest = None
        failed: list = []
        if frames and self.position >= 0 and frames[0].index > self.position + 1:
            lost = frames[0].index - self.position - 1  # frames left the buffer unwritten
            for job in jobs:
                if job.first is not None and not job.reached:
                    job.missed += lost
                    missed += lost
        for n, frame in enumerate(frames):
            if deadline is not None and time.monotonic() > deadline:  # shutting down: keep exit prompt (R19)
                for job in jobs:
                    if not job.reached:
                        lost = sum(1 for f in frames[n:]
                                   if f.index >= job.first_index and f.t <= stops[job.id][0] + CLOCK_EPS)
                        job.missed += lost
                        missed += lost
                break
            self.position = frame.index
            takers, key = [], False
            for job in jobs:
                if job.reached or frame.index < job.first_index:
                    continue
                stop_t, limit = stops[job.id]
                if frame.t > stop_t + CLOCK_EPS:  # the first frame past the clip: it is whole
                    job.reached, job.truncated = True, stop_t == limit
                    continue
                job.last_index, job.last = frame.index, frame
                if job.first is None:
                    job.first, key = frame, True  # a clip starts here: an IDR frame
                if not job.failed:
                    takers.append(job)
            if not takers:
                continue
            oldest = frame.wall if oldest is None else oldest
            try:
                errors = self.encoder.encode(frame.index, frame.image, frame.t, key, [job.file for job in takers])
            except Exception as exc:  # an encoder error: these clips are lost; the next one opens a new encoder
                self.encoder.close()
                failed += [(job, exc) for job in takers]
                continue
            encoded += 1
            failed += [(job, exc) for clip, exc in errors for job in takers if job.file is clip]
        return Round(encoded, missed, oldest, failed)

    def flush(self, jobs: list) -> list:
        """Nothing more to encode: the packets the encoder holds to their clips; (job, exception) as ``run``."""
        return [(job, exc) for clip, exc in self.encoder.flush() for job in jobs if job.file is clip]

    def close(self) -> None:
        self.encoder.close()

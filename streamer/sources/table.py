"""Video sources as data: a table of kinds with their properties, and one way to open each.

A capture object has the ``cv2.VideoCapture`` shape (``isOpened``, ``read``, ``get``, ``release``).

| kind        | example                      | default mode | finite | reconnects | self-paced | catches up |
|-------------|------------------------------|--------------|--------|------------|------------|------------|
| camera      | ``0``, ``/dev/video0``       | live         | no     | yes        | yes        | yes        |
| rtsp        | ``rtsp://host/path``         | live         | no     | yes        | yes        | yes        |
| http        | ``http(s)://host/stream``    | live         | no     | yes        | yes        | yes        |
| tcp         | ``tcp://host:port``          | live         | no     | yes        | yes        | yes        |
| file        | ``clip.mp4``, ``file:///x``  | file         | yes    | no         | no         | no         |
| testpattern | ``testpattern://?fps=25``    | live         | yes    | no         | no         | no         |
| synthetic   | ``synthetic://actions?seed=3``| live        | yes    | no         | no         | no         |

*finite* sources can run in ``mode: file`` (every window, as fast as possible) and can loop;
*self-paced* sources deliver frames in real time by themselves, the others are paced to their
frame rate by the capture thread in ``mode: live``; sources that *catch up* hand out, right after
each (re)connect, a burst of frames that queued while they opened (dropped: see readloop.py).

Files are decoded with PyAV (:mod:`streamer.sources.avfile`: true frame sizes, corrupt packets told
from the end of the file); cameras and network streams with OpenCV's FFmpeg backend (open and read
timeouts, measured thread safety). A camera that does not exist is refused when the source is
checked before it starts (:func:`check_available`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qsl, urlsplit

from model.errors import ConfigError, SourceError
from streamer.config import SourceConfig, SourceOptions
from streamer.redact import redact
from streamer.sources.cameras import check_camera_exists

log = logging.getLogger(__name__)

Opener = Callable[[str, SourceOptions], Any]


@dataclass(frozen=True)
class SourceKind:
    name: str
    default_mode: str  #: "live" or "file"
    finite: bool  #: has an end; may run in file mode and loop
    reconnects: bool  #: a lost source is reopened with backoff
    self_paced: bool  #: read() blocks until the next real-time frame
    catches_up: bool  #: the first reads after open return frames that queued meanwhile, in a burst
    opener: Opener


def _ffmpeg_capture(url: str, options: SourceOptions):
    """OpenCV FFmpeg capture with open/read timeouts given at construction (setting them later does nothing)."""
    import cv2

    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(options.open_timeout_s * 1000),
              cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(options.read_timeout_s * 1000)]
    return cv2.VideoCapture(url, cv2.CAP_FFMPEG, params)


def _camera_capture(url: str, options: SourceOptions):
    import cv2

    target: int | str = int(url) if url.isdigit() else url
    return cv2.VideoCapture(target, cv2.CAP_ANY)


def _file_capture(url: str, options: SourceOptions):
    """A PyAV capture of the file; None if it is not a video (the capture thread says so, R9)."""
    import av

    from streamer.sources.avfile import AvFileCapture

    path = url[len("file://"):] if url.startswith("file://") else url
    if not Path(path).is_file():
        raise SourceError(f"video file {path} does not exist or is not a file; check the source url")
    try:
        return AvFileCapture(path, options.open_timeout_s, options.read_timeout_s)
    except av.FFmpegError as exc:
        log.debug("cannot read %s as a video: %s", redact(path), exc)
        return None


def _query(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query))


def _testpattern_capture(url: str, options: SourceOptions):
    from streamer.sources.testpattern import TestPatternCapture

    try:
        return TestPatternCapture.from_params(_query(url))
    except ValueError as exc:
        raise SourceError(f"testpattern url {url!r}: {exc}; use e.g. testpattern://?width=160&height=120&fps=25") from None


def _synthetic_capture(url: str, options: SourceOptions):
    from streamer.sources.synthetic import open_capture

    try:
        return open_capture(_query(url))
    except (ConfigError, ValueError) as exc:
        raise SourceError(f"synthetic source {url!r}: {exc}") from None


_NETWORK = dict(default_mode="live", finite=False, reconnects=True, self_paced=True, catches_up=True)
_GENERATED = dict(default_mode="live", finite=True, reconnects=False, self_paced=False, catches_up=False)

KINDS: dict[str, SourceKind] = {
    "camera": SourceKind("camera", opener=_camera_capture, **_NETWORK),
    "rtsp": SourceKind("rtsp", opener=_ffmpeg_capture, **_NETWORK),
    "http": SourceKind("http", opener=_ffmpeg_capture, **_NETWORK),
    "tcp": SourceKind("tcp", opener=_ffmpeg_capture, **_NETWORK),
    "file": SourceKind("file", default_mode="file", finite=True, reconnects=False, self_paced=False,
                       catches_up=False, opener=_file_capture),
    "testpattern": SourceKind("testpattern", opener=_testpattern_capture, **_GENERATED),
    "synthetic": SourceKind("synthetic", opener=_synthetic_capture, **_GENERATED),
}

_SCHEMES = {"rtsp": "rtsp", "rtsps": "rtsp", "http": "http", "https": "http", "tcp": "tcp", "udp": "tcp",
            "file": "file", "testpattern": "testpattern", "synthetic": "synthetic"}


def kind_of(url: str) -> SourceKind:
    """The source kind a URL names; an unknown scheme is a ConfigError that lists the known ones."""
    if url.isdigit() or url.startswith("/dev/video"):
        return KINDS["camera"]
    if "://" in url:
        scheme = url.split("://", 1)[0].lower()
        if scheme not in _SCHEMES:
            raise ConfigError(f"source url {redact(url)!r}: unknown scheme {scheme!r}; "
                              f"use one of {', '.join(sorted(_SCHEMES))}, a camera index or a file path")
        return KINDS[_SCHEMES[scheme]]
    return KINDS["file"]


@dataclass(frozen=True)
class SourcePlan:
    """What the capture thread does with one source: its kind's properties resolved against its config."""

    config: SourceConfig
    kind: SourceKind
    live: bool  #: keep only fresh windows (ring overwrites); else every window, capture waits for space
    pace: bool  #: the capture thread sleeps to the source's frame rate
    loop: bool

    @property
    def id(self) -> str:
        return self.config.id

    @property
    def display_url(self) -> str:
        return redact(self.config.url)

    def open(self):
        """Open the capture (may block up to the open timeout). Raises SourceError for a missing file."""
        return self.kind.opener(self.config.url, self.config.options)


def plan_source(config: SourceConfig, mode_override: str | None = None) -> SourcePlan:
    """Resolve a source's config against its kind; a mode the kind cannot do is a ConfigError."""
    kind = kind_of(config.url)
    mode = mode_override or config.mode or kind.default_mode
    if mode == "file" and not kind.finite:
        raise ConfigError(f"sources[{config.id}].mode: 'file' needs a finite source (file, testpattern, "
                          f"synthetic); {kind.name} sources run in 'live' mode")
    if config.options.loop and not kind.finite:
        raise ConfigError(f"sources[{config.id}].options.loop: only finite sources can loop, not {kind.name}")
    live = mode == "live"
    return SourcePlan(config=config, kind=kind, live=live, pace=live and not kind.self_paced,
                      loop=config.options.loop)


def check_available(plan: SourcePlan) -> None:
    """What must hold before a planned source starts (the pipeline checks every source at start; so
    must anything that adds one later): a local camera must exist. Raises a one-line SourceError."""
    check_camera_exists(plan.id, plan.config.url)

"""Local cameras: which exist, and a check that a camera source names one of them.

A camera index ``N`` is ``/dev/videoN`` to OpenCV's V4L2 backend. One that does not exist used to
be retried forever, OpenCV printing ``Camera index out of range`` on every retry; now it is a
one-line error at start that names the cameras this machine has. The check runs for every source
when the pipeline plans it (:func:`streamer.sources.table.plan_source`), so anything that adds a
source later gets the same check by planning it.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from model.errors import SourceError

_DEV = Path("/dev")
_VIDEO = re.compile(r"video(\d+)")


def camera_device(url: str) -> str | None:
    """The device path a camera URL means (``"2"`` -> ``/dev/video2``), or None if it names no camera."""
    if url.isdigit():
        return f"/dev/video{int(url)}"
    return url if url.startswith("/dev/video") else None


def available_cameras(dev: Path = _DEV) -> list[str]:
    """``/dev/videoN`` devices present, in index order (Linux; elsewhere the list is empty)."""
    if not dev.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in dev.iterdir() if (m := _VIDEO.fullmatch(p.name))]
    return [str(dev / p.name) for _, p in sorted(found)]


def check_camera_exists(source_id: str, url: str, dev: Path = _DEV) -> None:
    """Raise a one-line SourceError if ``url`` is a local camera that is not there (Linux only:
    other systems have no device files to look at, and their camera opens fail on their own)."""
    device = camera_device(url)
    if device is None or not sys.platform.startswith("linux"):
        return
    relative = Path(device).relative_to("/dev") if device.startswith("/dev/") else Path(device).name
    if (dev / relative).exists():
        return
    cameras = available_cameras(dev)
    here = (f"cameras on this machine: {', '.join(cameras)}" if cameras
            else "this machine has no camera (no /dev/video* device)")
    shown = url if url == device else f"{url} ({device})"
    raise SourceError(f"source {source_id!r}: camera {shown} does not exist; {here}")

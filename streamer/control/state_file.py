"""The running set of sources on disk, so a restart (or ``kill -9``) resumes it (R24).

    {"version": 1, "sources": [{"id": "door", "url": "rtsp://...", "options": {...}}, ...]}

:func:`write` replaces the file atomically: the new content goes to a temporary file in the same
folder, which is flushed to disk (``fsync``) and renamed over the old one, then the folder itself is
synced so the rename survives a power cut. A process killed at any moment leaves either the old or
the new file, never a mix; a temporary file left behind is overwritten by the next write. The file
is created with mode 0600: source URLs may carry credentials.

:func:`read` validates every entry exactly as the YAML's ``sources:`` entries are; :func:`resume`
makes a present state file the start-up source list.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Iterable, Optional

from model.errors import ConfigError
from streamer.config import AppConfig, SourceConfig
from streamer.control.entries import parse_source, source_to_dict

log = logging.getLogger(__name__)

VERSION = 1
MAX_BYTES = 4 << 20  #: 64 sources with every option set are ~30 kB


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp")


def write(path: str | Path, sources: Iterable[SourceConfig]) -> None:
    """Replace ``path`` with ``sources``, atomically and durably; OSError if the disk refuses."""
    path = Path(path)
    body = json.dumps({"version": VERSION, "sources": [source_to_dict(s) for s in sources]}, indent=1,
                      allow_nan=False).encode("utf-8") + b"\n"
    tmp = _temporary(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(body)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def read(path: str | Path) -> Optional[tuple[SourceConfig, ...]]:
    """The sources in ``path``; None when there is no such file; a one-line ConfigError when it is unusable."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"state file {path} cannot be read: {exc.strerror}; check its permissions") from None
    if len(raw) > MAX_BYTES:
        raise ConfigError(f"state file {path}: larger than {MAX_BYTES >> 20} MiB; is --state the right file?")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ConfigError(f"state file {path} is not valid JSON; it was not written by this program (or was edited): "
                          "fix it or remove it to start from the config's sources") from None
    if not isinstance(data, dict) or data.get("version") != VERSION or not isinstance(data.get("sources"), list):
        raise ConfigError(f"state file {path}: expected {{\"version\": {VERSION}, \"sources\": [...]}}; remove it to "
                          "start from the config's sources")
    sources = tuple(parse_source(entry, f"state file {path}: sources[{i}]") for i, entry in enumerate(data["sources"]))
    ids = [s.id for s in sources]
    twice = next((i for i in ids if ids.count(i) > 1), None)
    if twice is not None:
        raise ConfigError(f"state file {path}: duplicate id {twice!r}; give each source its own id")
    return sources


def resume(config: AppConfig) -> AppConfig:
    """``config`` with the state file's sources when ``control.state_file`` names a file that exists (R24);
    the config's own ``sources:`` are used only when there is none yet."""
    path = config.control.state_file
    sources = read(path) if path is not None else None
    if sources is None:
        if path is not None:
            log.info("state file %s does not exist yet: starting with the config's %d source(s)", path,
                     len(config.sources))
        return config
    limit = config.run.max_sources
    if len(sources) > limit:
        raise ConfigError(f"state file {path}: {len(sources)} sources, more than run.max_sources = {limit}; raise "
                          "run.max_sources, or remove the file to start from the config's sources")
    if not sources and config.control.address is None:
        raise ConfigError(f"state file {path} holds no sources and the control socket is off, so none could be "
                          "added: turn control on (control.address), or remove the file")
    log.info("sources from the state file %s (%d); the config's sources are used only when it is missing", path,
             len(sources))
    return config.model_copy(update={"sources": sources})


__all__ = ["write", "read", "resume", "VERSION"]

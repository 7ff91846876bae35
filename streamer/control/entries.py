"""Source entries as data (a control request's ``source``, a state file's ``sources``) <-> :class:`SourceConfig`.

An entry is validated exactly as a ``sources:`` entry of the YAML config is: the same model, the same
unknown-key and range checks, the same one-line errors, prefixed with where the entry came from
(``source.options.max_fps: must be > 0, got -1``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from streamer.config import SourceConfig, SourceOptions


def parse_source(data: Any, where: str = "source") -> SourceConfig:
    """``data`` (a mapping with ``id``, ``url`` and any source option) as a validated :class:`SourceConfig`."""
    from streamer.configfile import _build  # the YAML reader's own validation, so errors read the same

    return _build(SourceConfig, data, where)


def source_to_dict(source: SourceConfig) -> dict:
    """The entry that :func:`parse_source` reads back as ``source``: id, url, mode if set, options not at default."""
    out: dict[str, Any] = {"id": source.id, "url": source.url}
    if source.mode is not None:
        out["mode"] = source.mode
    defaults = SourceOptions()
    options = {f.name: getattr(source.options, f.name) for f in dataclasses.fields(SourceOptions)
               if getattr(source.options, f.name) != getattr(defaults, f.name)}
    if options:
        out["options"] = options
    return out


__all__ = ["parse_source", "source_to_dict"]

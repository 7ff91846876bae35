"""Source entries as data (a control request's ``source``, a state file's ``sources``) <-> :class:`SourceConfig`.

An entry is validated exactly as a ``sources:`` entry of the YAML config is: the same model, the same
unknown-key and range checks, the same one-line errors, prefixed with where the entry came from
(``source.options.max_fps: must be > 0, got -1``).
"""

from __future__ import annotations

from typing import Any

from model.errors import ConfigError
from streamer.config import SourceConfig
from streamer.configerrors import describe


def parse_source(data: Any, where: str = "source") -> SourceConfig:
    """``data`` (a mapping with ``id``, ``url`` and any source option) as a validated :class:`SourceConfig`."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {describe(data)}")
    try:
        return SourceConfig(**{str(key): value for key, value in data.items()})
    except ConfigError as exc:
        raise ConfigError(f"{where}.{exc}") from None


def source_to_dict(source: SourceConfig) -> dict:
    """The entry that :func:`parse_source` reads back as ``source``: id, url, and what differs from the defaults."""
    return source.model_dump(mode="json", exclude_defaults=True)


__all__ = ["parse_source", "source_to_dict"]

"""Read the config once, at the edge: configs/default.yaml, then ``--config FILE`` over it, then flags.

Precedence: model defaults < configs/default.yaml < ``--config`` file < flags. Each file layer has
its ``${ENV}`` references expanded and its relative paths resolved against its own folder
(:mod:`streamer.configlayers`), then the layers merge key by key and :func:`build_config` validates
the result into the frozen :class:`AppConfig`, or raises a one-line :class:`ConfigError` that starts
with the key path. Only ``yaml.safe_load`` is used, and absurd input is refused before anything
walks it: a file over 1 MiB, or one whose YAML aliases expand past :data:`MAX_VALUES` values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional

from model.errors import ConfigError
from streamer.config import AppConfig, SourceConfig
from streamer.configerrors import describe
from streamer.configlayers import expand_env, merge, resolve_paths, with_source_ids

MAX_FILE_BYTES = 1 << 20  #: a config file is a few kilobytes; larger is refused unread
MAX_VALUES = 10_000  #: values in a config once YAML aliases are expanded (64 full sources are ~1,000)
MAX_DEPTH = 32  #: nesting levels (the deepest key, events.classes.<label>.enter, is at 4)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """The YAML file as a dict (an empty file is an empty dict); errors name the file."""
    import yaml

    path = Path(path)
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist; pass an existing file to --config") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError(f"config file {path}: larger than {MAX_FILE_BYTES >> 20} MiB; a config file is a few "
                          f"kilobytes (is it the right file?)")
    try:
        data = yaml.safe_load(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path}: not UTF-8 text; save it as UTF-8") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"config file {path}{where}: {problem}") from None
    except (RecursionError, ValueError):  # thousands of nested brackets; an integer of thousands of digits
        raise ConfigError(f"config file {path}: nested too deeply or a number too long to read") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: the top level must be a mapping of sections, got {type(data).__name__}")
    check_size(data, f"config file {path}")
    return data


def check_size(data: Any, where: str) -> None:
    """Refuse a document with more than MAX_VALUES values or MAX_DEPTH levels, counted as aliases expand.

    Stops counting at the bound, so a "billion laughs" document costs a few thousand steps.
    """
    pending, count = [(data, 0)], 0
    while pending:
        item, depth = pending.pop()
        count += 1
        if count > MAX_VALUES:
            raise ConfigError(f"{where}: more than {MAX_VALUES} values (YAML aliases that expand without bound?); "
                              f"a config has a few hundred")
        if depth > MAX_DEPTH:
            raise ConfigError(f"{where}: nested deeper than {MAX_DEPTH} levels; a config has a few")
        if isinstance(item, dict):
            pending.extend((value, depth + 1) for value in item.values())
        elif isinstance(item, list):
            pending.extend((value, depth + 1) for value in item)


def build_config(data: Mapping[str, Any]) -> AppConfig:
    """Turn a plain dict (YAML + overrides) into an :class:`AppConfig`, or raise a one-line ConfigError."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"config: expected a mapping of sections, got {describe(data)}")
    check_size(data, "config")
    return AppConfig(**with_source_ids(_text_keys(data)))


def _text_keys(data: Any) -> Any:
    """A copy whose mapping keys are strings (YAML allows ``1:`` or ``true:``; they are unknown keys or labels)."""
    if isinstance(data, Mapping):
        return {str(key): _text_keys(value) for key, value in data.items()}
    if isinstance(data, list):
        return [_text_keys(value) for value in data]
    return data


def read_layer(path: str | Path) -> dict[str, Any]:
    """One config file as a layer: read, ``${ENV}`` expanded, relative paths resolved against its folder."""
    path = Path(path)
    data = expand_env(with_source_ids(load_yaml(path)))
    return resolve_paths(data, path.absolute().parent)


def load_config(config_file: Optional[str | Path], overrides: Optional[Mapping[str, Any]] = None, *,
                defaults: Optional[str | Path] = None) -> AppConfig:
    """``defaults`` (configs/default.yaml), ``config_file`` over it, then ``overrides`` (flags) over both."""
    data: dict[str, Any] = {}
    for path in (defaults, config_file):
        if path is not None:
            data = merge(data, read_layer(path))
    return build_config(merge(data, expand_env(dict(overrides or {}))))


def source_from_flag(text: str, index: int) -> dict[str, Any]:
    """``--source`` value: ``URL`` or ``ID=URL`` (an id is letters, digits, - and _)."""
    if "=" in text:
        head, tail = text.split("=", 1)
        if head and "/" not in head and ":" not in head and all(c.isalnum() or c in "-_" for c in head):
            return {"id": head, "url": tail}
    return {"id": f"s{index}", "url": text}


__all__ = ["load_yaml", "merge", "build_config", "load_config", "read_layer", "source_from_flag", "check_size",
           "SourceConfig"]

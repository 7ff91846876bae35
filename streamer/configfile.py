"""Read the YAML config once, merge flag overrides, and build the frozen :class:`AppConfig`.

Precedence: dataclass defaults < YAML < overrides (from CLI flags). Unknown keys are rejected with
their path (``window.hopp``), values are type-checked against the dataclass annotations, and range
errors from the dataclasses come back prefixed with the key path. Only ``yaml.safe_load`` is used.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal, Mapping

from model.errors import ConfigError
from streamer.config import AppConfig, SourceConfig
from streamer.redact import redact

_MISSING = object()


def load_yaml(path: str | Path) -> dict[str, Any]:
    """The YAML file as a dict (an empty file is an empty dict); errors name the file."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist; pass an existing file to --config") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"config file {path}{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: the top level must be a mapping of sections, got {type(data).__name__}")
    return data


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge two config dicts (override wins; lists are replaced, not merged)."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def build_config(data: Mapping[str, Any]) -> AppConfig:
    """Turn a plain dict (YAML + overrides) into an :class:`AppConfig`, or raise a one-line ConfigError."""
    data = dict(data)
    sources = data.get("sources")
    if isinstance(sources, list):
        data["sources"] = [_source_shorthand(s, i) for i, s in enumerate(sources)]
    return _build(AppConfig, data, "")


def _source_shorthand(entry: Any, index: int) -> Any:
    """A bare string in ``sources`` is a URL whose id is ``s<index>``."""
    if isinstance(entry, str):
        return {"id": f"s{index}", "url": entry}
    return entry


def _build(cls: type, data: Any, path: str) -> Any:
    where = path or "config"
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {_describe(data)}")
    hints = typing.get_type_hints(cls, include_extras=True)
    known = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in known:
            choices = ", ".join(sorted(known))
            raise ConfigError(f"{_join(path, str(key))}: unknown key; known keys here: {choices}")
    kwargs = {name: _convert(hints[name], data[name], _join(path, name)) for name in known if name in data}
    for name, f in known.items():
        if name not in data and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            hint = "; list at least one source or pass --source URL" if name == "sources" else "; this key is required"
            raise ConfigError(f"{_join(path, name)}: missing{hint}")
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        raise ConfigError(f"{path + '.' if path else ''}{exc}") from None


def _convert(tp: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated or (isinstance(tp, type) and hasattr(tp, "model_validate")):
        from streamer.ops.console_config import parse_section  # pydantic sections (ui, clips, alerts)

        return parse_section(tp, value, path)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, path)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{path}: {value!r} is not one of {', '.join(map(str, args))}")
        return value
    if origin is dict:  # a mapping with string keys (events.classes.<label>)
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path}: expected a mapping, got {_describe(value)}")
        return {str(k): _convert(args[1], v, _join(path, str(k))) for k, v in value.items()}
    if origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(f"{path}: expected a list, got {_describe(value)}")
        return tuple(_convert(args[0], v, f"{path}[{i}]") for i, v in enumerate(value))
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, path)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true or false, got {_describe(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {_describe(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {_describe(value)}")
        if not math.isfinite(value):  # YAML's .nan / .inf would pass every range check
            raise ConfigError(f"{path}: must be a finite number, got {value}")
        return float(value)
    if tp is str:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and path.endswith(".url"):
            return str(value)  # a camera index written as a number
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {_describe(value)}")
        return value
    raise ConfigError(f"{path}: unsupported type {tp!r}")  # a defect in the dataclasses, not user input


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _describe(value: Any) -> str:
    text = redact(repr(value))  # a misplaced URL may carry credentials (S6)
    return f"{type(value).__name__} {text if len(text) < 40 else text[:37] + '...'}"


def source_from_flag(text: str, index: int) -> dict[str, Any]:
    """``--source`` value: ``URL`` or ``ID=URL`` (an id is letters, digits, - and _)."""
    if "=" in text:
        head, tail = text.split("=", 1)
        if head and "/" not in head and ":" not in head and all(c.isalnum() or c in "-_" for c in head):
            return {"id": head, "url": tail}
    return {"id": f"s{index}", "url": text}


__all__ = ["load_yaml", "merge", "build_config", "source_from_flag", "SourceConfig"]

"""What happens to each config layer (configs/default.yaml, ``--config FILE``, flags) before they merge.

* :func:`expand_env`: ``${NAME}`` in any string value is replaced by the environment variable
  (unset: a one-line ConfigError naming the key and the variable); ``$${`` is a literal ``${``.
  Passwords stay out of YAML files and out of ``/proc/PID/cmdline``.
* :func:`resolve_paths`: a relative path in a config file is resolved against that file's folder
  (as docker-compose and Frigate do); which keys are paths is declared on the models
  (:class:`streamer.configtypes.PathRule`). Flags stay relative to the working directory.
* :func:`merge`: a later layer over an earlier one, key by key: mappings merge recursively, any
  other value (lists such as ``sources`` included) replaces; a layer that sets one of two exclusive
  keys (``window.stride``/``span_s``, ``hop``/``hop_s``) drops the other from the layers below.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from model.errors import ConfigError
from model.sources import BUILTIN, HUB_ID
from streamer.config import AppConfig
from streamer.configerrors import key_path
from streamer.configtypes import Section, nested_section, path_rule
from streamer.sources.table import kind_of

_REFERENCE = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$\{")


def with_source_ids(data: Mapping[str, Any]) -> dict[str, Any]:
    """A bare string in ``sources`` is a URL whose id is ``s<index>``."""
    out = dict(data)
    if isinstance(out.get("sources"), list):
        out["sources"] = [{"id": f"s{i}", "url": s} if isinstance(s, str) else s for i, s in enumerate(out["sources"])]
    return out


def expand_env(data: Any, environ: Mapping[str, str] = os.environ, loc: tuple = ()) -> Any:
    """``data`` with every ``${NAME}`` in its string values replaced (see the module docstring)."""
    if isinstance(data, str):
        return _expand(data, loc, environ) if "${" in data else data
    if isinstance(data, dict):
        return {key: expand_env(value, environ, (*loc, key)) for key, value in data.items()}
    if isinstance(data, list):
        return [expand_env(value, environ, (*loc, i)) for i, value in enumerate(data)]
    return data


def _expand(text: str, loc: tuple, environ: Mapping[str, str]) -> str:
    def substitute(match: re.Match) -> str:
        if match.group(0) == "$${":
            return "${"
        name = match.group(1)
        if name is None:
            raise ConfigError(f"{key_path(loc)}: '${{' must start a reference such as ${{CAM_PASSWORD}} (letters, "
                              f"digits and _ between the braces); write $${{ for a literal ${{")
        if name not in environ:
            raise ConfigError(f"{key_path(loc)}: environment variable {name} is not set; set it, or write $${{ for "
                              f"a literal ${{")
        return environ[name]

    return _REFERENCE.sub(substitute, text)


def _as_path(value: str, base: Path) -> str:
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else base / path)


def _source_url(value: str, base: Path) -> str:
    try:
        if kind_of(value).name != "file":
            return value  # a camera, a network URL, a generated source
    except ConfigError:
        return value  # an unknown scheme: reported when the source is planned
    if value.startswith("file://"):
        return "file://" + _as_path(value[len("file://"):], base)
    return _as_path(value, base)


def _checkpoint(value: str, base: Path) -> str:
    if value in BUILTIN or Path(value).expanduser().is_absolute():
        return value
    if not (base / value).exists() and HUB_ID.match(value) and not value.startswith((".", "~")):
        return value  # a hub id org/name (a folder of that name next to the config file wins)
    return _as_path(value, base)


_RESOLVERS: dict[str, Callable[[str, Path], str]] = {"path": _as_path, "source_url": _source_url,
                                                     "checkpoint": _checkpoint}


def resolve_paths(data: Any, base: Path, model: type[Section] = AppConfig) -> Any:
    """``data`` (one layer, as read) with its relative paths resolved against ``base``."""
    if not isinstance(data, dict):
        return data
    out = dict(data)
    for key, value in data.items():
        field = model.model_fields.get(key) if isinstance(key, str) else None
        if field is None:
            continue  # an unknown key: validation names it
        rule = path_rule(field)
        if rule is not None:
            out[key] = _RESOLVERS[rule.kind](value, base) if isinstance(value, str) and value else value
            continue
        section, shape = nested_section(field)
        if shape == "one":
            out[key] = resolve_paths(value, base, section)
        elif shape == "list" and isinstance(value, list):
            out[key] = [resolve_paths(item, base, section) for item in value]
        elif shape == "map" and isinstance(value, dict):
            out[key] = {name: resolve_paths(item, base, section) for name, item in value.items()}
    return out


def merge(base: Mapping[str, Any], override: Mapping[str, Any],
          model: Optional[type[Section]] = AppConfig) -> dict[str, Any]:
    """``override`` over ``base`` (see the module docstring); neither is changed."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            field = model.model_fields.get(key) if model is not None and isinstance(key, str) else None
            section, shape = nested_section(field) if field is not None else (None, "")
            out[key] = merge(out[key], value, section if shape == "one" else None)
        else:
            out[key] = value
    for pair in getattr(model, "exclusive", ()):
        for mine, other in (pair, pair[::-1]):
            if override.get(mine) is not None and other not in override:
                out.pop(other, None)
    return out

"""The building blocks of the config models in :mod:`streamer.config`.

* :class:`Section`, the base of every section: frozen, unknown keys refused, strict types (a bool is
  not a number, ``"5"`` is not 5, NaN and inf are refused), and a mistake is a :class:`ConfigError`
  with one line naming the key, whether the section is built from YAML or constructed in code.
* Annotated value types: :data:`Address` (the one ZeroMQ address check), :data:`ConfigPath` and the
  other path-like strings, marked with :class:`PathRule` so that a relative path in a config file
  is resolved against that file's folder (:func:`streamer.configlayers.resolve_paths`). A later
  feature that declares a key as ``ConfigPath`` gets that resolution without further code.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Optional

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, WithJsonSchema
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

from model.errors import ConfigError
from streamer.configerrors import one_line, short


class Section(BaseModel):
    """Base of every config section (see the module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)

    def __init__(self, /, **data: Any) -> None:
        # pydantic calls __init__ for nested sections too, so each level turns its own errors into a
        # line relative to itself and the level above prefixes its key (streamer.configerrors)
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise ConfigError(one_line(exc, type(self))) from None


def invalid(text: str) -> PydanticCustomError:
    """The error a field's own check raises; ``text`` follows the key path as it is (``KEY: text``)."""
    return PydanticCustomError("config_value", "{text}", {"text": text})


@dataclass(frozen=True)
class PathRule:
    """Marks a string key as naming a local path (``kind``: how to tell whether a value is one).

    ``path``: always a path; ``source_url``: a path when the source is a file (not a camera index or a
    URL); ``checkpoint``: a path unless it is a built-in model name or a hub id ``org/name``.
    """

    kind: Literal["path", "source_url", "checkpoint"]


def _check_address(value: str) -> str:
    scheme = value.split("://", 1)[0] if "://" in value else ""
    if scheme not in ("tcp", "ipc", "inproc"):
        raise invalid(f"{short(value)} must be tcp://HOST:PORT, ipc://PATH or inproc://NAME")
    return value


def _index_as_text(value: Any) -> Any:
    """A camera index written as a number (``url: 0``) is the string ``"0"``."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def list_as_tuple(value: Any) -> Any:
    """A YAML list where the model keeps a tuple (frozen all the way down)."""
    return tuple(value) if isinstance(value, list) else value


def keys_as_text(value: Any) -> Any:
    """A mapping keyed by labels: a YAML key such as ``1`` is the label ``"1"``."""
    return {str(k): v for k, v in value.items()} if isinstance(value, dict) else value


Address = Annotated[str, AfterValidator(_check_address)]  #: a ZeroMQ address to bind
ConfigPath = Annotated[str, PathRule("path")]  #: a local file or folder
SourceUrl = Annotated[str, BeforeValidator(_index_as_text), Field(min_length=1), PathRule("source_url"),
                      WithJsonSchema({"anyOf": [{"type": "string", "minLength": 1}, {"type": "integer", "minimum": 0}]})]
CheckpointRef = Annotated[str, Field(min_length=1), PathRule("checkpoint")]


def path_rule(field: FieldInfo) -> Optional[PathRule]:
    """The :class:`PathRule` a field's type carries, also inside ``Optional[...]``."""
    pending: list[Any] = [*field.metadata, field.annotation]
    while pending:
        item = pending.pop()
        if isinstance(item, PathRule):
            return item
        if typing.get_origin(item) is Annotated:
            pending.extend(item.__metadata__)
        pending.extend(typing.get_args(item))
    return None


def nested_section(field: FieldInfo) -> tuple[Optional[type[Section]], str]:
    """The section type a field holds and how: ``one`` (a section), ``list`` (of them), ``map`` (by name)."""
    tp = field.annotation
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is tuple and args and _is_section(args[0]):
        return args[0], "list"
    if origin is dict and len(args) == 2 and _is_section(args[1]):
        return args[1], "map"
    return (tp, "one") if _is_section(tp) else (None, "")


def _is_section(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, Section)

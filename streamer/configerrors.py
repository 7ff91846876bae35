"""One line per config mistake: a pydantic ``ValidationError`` as ``key.path: what is wrong, got VALUE``.

Every config section validates itself (:class:`streamer.configtypes.Section`) and, when that fails,
raises :class:`ConfigError` with one line relative to itself; a section nested in another comes back
to its parent as that line, which the parent prefixes with the key it sits under. So a message
starts with the full key path (``sources[0].options.max_fps: must be > 0, got -1``) at any depth.

What a message shows of a wrong value is bounded: at most two container levels and four items each,
40 characters in all, credentials redacted (S6). A YAML alias bomb expands to billions of items;
``repr`` of it cost 666 MB and 7 s before this.
"""

from __future__ import annotations

import difflib
import reprlib
import typing
from typing import Any, Iterable

from pydantic import BaseModel, ValidationError

from model.errors import ConfigError
from streamer.redact import redact

VALUE_CHARS = 40  #: the most characters of a value an error message shows

_EXPECTED = {
    "int_type": "expected an integer",
    "float_type": "expected a number",
    "bool_type": "expected true or false",
    "string_type": "expected a string",
    "model_type": "expected a mapping",
    "dict_type": "expected a mapping",
    "tuple_type": "expected a list",
    "list_type": "expected a list",
}
_BOUNDS = {"greater_than": ("gt", ">"), "greater_than_equal": ("ge", ">="),
           "less_than": ("lt", "<"), "less_than_equal": ("le", "<=")}


class _BoundedRepr(reprlib.Repr):
    """``repr`` that walks at most two levels and four items of a container; strings are redacted first."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel = 2
        self.maxlist = self.maxtuple = self.maxdict = self.maxset = self.maxfrozenset = self.maxdeque = 4
        self.maxstring = self.maxother = self.maxlong = VALUE_CHARS

    def repr_str(self, x: str, level: int) -> str:
        # redact before shortening: a cut URL could lose its "@" and show the password
        return super().repr_str(redact(x[:100_000]), level)


_REPR = _BoundedRepr()


def short(value: Any) -> str:
    """The value as a message shows it: bounded, redacted, at most ``VALUE_CHARS`` characters."""
    text = redact(_REPR.repr(value))
    return text if len(text) <= VALUE_CHARS else text[:VALUE_CHARS - 3] + "..."


def describe(value: Any) -> str:
    """``float 2.5``, ``str 'five'``, ``list [[...], ...]``: the value's type and its short form."""
    return f"{type(value).__name__} {short(value)}"


def key_path(loc: Iterable[Any], prefix: str = "") -> str:
    """``('sources', 0, 'url')`` -> ``sources[0].url``; a key that is not plain printable text is quoted."""
    out = prefix
    for part in loc:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
            continue
        text = part if isinstance(part, str) and part.isprintable() and 0 < len(part) <= VALUE_CHARS else short(part)
        out += f".{text}" if out else text
    return out


def one_line(exc: ValidationError, model: type[BaseModel]) -> str:
    """The first mistake of ``exc`` (an unknown key first: a typo often explains the rest) as one line."""
    errors = exc.errors(include_url=False)
    error = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    path = key_path(error["loc"])
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, ConfigError):  # a section's own check, or a nested section's line: relative to loc
        text = str(cause)
        return f"{path}.{text}" if path else text
    text = _explain(error, model)
    return f"{path}: {text}" if path else f"config: {text}"


def _explain(error: dict, model: type[BaseModel]) -> str:
    kind, value, loc = error["type"], error.get("input"), error["loc"]
    ctx = error.get("ctx") or {}
    if kind in _EXPECTED:
        return f"{_EXPECTED[kind]}, got {describe(value)}"
    if kind in _BOUNDS:
        name, sign = _BOUNDS[kind]
        return f"must be {sign} {_number(ctx.get(name))}, got {short(value)}"
    if kind == "extra_forbidden":
        return _unknown_key(loc[-1], list(model.model_fields) if len(loc) == 1 else [])
    if kind == "missing":
        hint = getattr(model, "missing_hints", {}).get(loc[-1] if len(loc) == 1 else None, "this key is required")
        return f"missing; {hint}"
    if kind == "literal_error":
        choices = _literal_choices(model, loc) or [str(ctx.get("expected", "?"))]
        return f"{short(value)} is not one of {', '.join(choices)}"
    if kind == "finite_number":
        return f"must be a finite number, got {short(value)}"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "config_value":  # a field's own check (streamer.configtypes.invalid): the message says it all
        return error["msg"]
    return f"{error['msg']}, got {describe(value)}"


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _unknown_key(key: Any, known: list[str]) -> str:
    text = "unknown key"
    if known:
        text += f"; known keys here: {', '.join(sorted(known))}"
        close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.7)
        if close:
            text += f"; did you mean {close[0]}?"
    return text


def _literal_choices(model: type[BaseModel], loc: tuple) -> list[str]:
    field = model.model_fields.get(loc[0]) if loc and isinstance(loc[0], str) else None
    pending = [field.annotation] if field is not None else []
    while pending:
        tp = pending.pop()
        if typing.get_origin(tp) is typing.Literal:
            return [str(choice) for choice in typing.get_args(tp)]
        pending.extend(typing.get_args(tp))
    return []

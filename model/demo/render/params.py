"""What a synthetic scene may be asked for (seed, frame rate, size, length), checked before rendering.

Shared by the renderer's CLI (``python -m model.demo.render``) and the ``synthetic://`` source's URL.
"""

from __future__ import annotations

from collections.abc import Mapping

from model.errors import ConfigError

# name -> (type, default, low, high)
PARAMS: dict[str, tuple[type, float | int | None, float, float]] = {
    "seed": (int, 0, 0, 2**31 - 1),
    "fps": (float, 25.0, 1.0, 240.0),
    "width": (int, 160, 16, 4096),
    "height": (int, 120, 16, 4096),
    "frames": (int, None, 1, 2**31 - 1),  # end of stream after this many frames (default: never)
}


def parse_params(params: Mapping[str, object]) -> dict:
    """Validate query parameters (strings or numbers) into typed values; unknown keys are errors."""
    unknown = sorted(set(params) - set(PARAMS))
    if unknown:
        raise ConfigError(
            f"synthetic source: unknown parameter(s) {', '.join(unknown)}; use {', '.join(PARAMS)}"
        )
    out = {}
    for name, (kind, default, low, high) in PARAMS.items():
        raw = params.get(name, default)
        if isinstance(raw, (list, tuple)):  # parse_qs gives lists
            raw = raw[-1] if raw else default
        if raw is None:
            out[name] = None
            continue
        try:
            value = kind(str(raw).strip()) if isinstance(raw, str) else kind(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"synthetic source: {name}={raw!r} is not a {kind.__name__}") from None
        if not low <= value <= high:
            raise ConfigError(f"synthetic source: {name}={value} is out of range; use {low}..{high}")
        out[name] = value
    return out

"""TimeSformer in plain PyTorch: network, checkpoint loading, quantization and preprocessing.

Public entry point: :func:`load_model`. Heavy imports (torch) happen on first attribute access,
so ``from model.errors import ...`` stays cheap.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "load_model": "model.checkpoint",
    "LoadedModel": "model.loaded",
    "Sampling": "model.config",
    "save_pretrained": "model.checkpoint",
    "TimesformerConfig": "model.config",
    "TimeSformer": "model.timesformer",
    "PreprocessConfig": "model.preprocess",
    "Preprocessor": "model.preprocess",
    "quantize": "model.quantize",
    "apply_precision": "model.quantize",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'model' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)

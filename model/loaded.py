"""A checkpoint as :func:`model.load_model` returns it: the network that runs and what is known about it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from model.config import Sampling, TimesformerConfig
from model.preprocess import PreprocessConfig


@dataclass(frozen=True)
class LoadedModel:
    """One loaded checkpoint; frozen: :func:`model.views.with_views` returns a new one.

    ``network`` is what runs: ``network(pixel_values (B, T, C, H, W)) -> (B, num_labels)`` scores, on its
    device, in eval mode without gradients (the :class:`model.timesformer.TimeSformer`, or
    :class:`model.views.SymmetricViews` around it).
    """

    network: nn.Module
    config: TimesformerConfig
    preprocess: PreprocessConfig  #: per-frame preprocessing (the checkpoint's preprocessor_config.json)
    name: str  #: built-in name, hub id, or the checkpoint's folder/file name
    license: str  #: licence of the weights ("unknown" when nothing says)
    precision: str  #: what actually runs: fp32, fp16, bf16 or int8
    input_dtype: torch.dtype  #: the dtype the network casts its input to: frames are kept in it
    views: int = 1  #: forward passes averaged per window (model.views)
    #: the clip sampling the checkpoint was trained with (config.json, or known for its hub id); None: not known
    sampling: Sampling | None = None
    domain: str | None = None  #: what the checkpoint has seen, when narrow (config.json ``domain``)

    @property
    def labels(self) -> tuple[str, ...]:
        return self.config.labels

    def info(self) -> dict[str, Any]:
        """The ``model`` object of every result message (docs/PROTOCOL.md)."""
        out: dict[str, Any] = {"name": self.name, "precision": self.precision, "license": self.license,
                               "views": self.views}
        if self.domain is not None:
            out["domain"] = self.domain
        return out

    def weight_bytes(self) -> int:
        """Bytes of the network's weights: see :func:`model.quantize.weight_bytes`."""
        from model.quantize import weight_bytes

        return weight_bytes(self.network)


__all__ = ["LoadedModel"]

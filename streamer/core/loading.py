"""The model as the pipeline runs it: device and precision resolved, views applied, the window's
sampling taken from what the checkpoint was trained with, and a warning when the sources show video
the model has never seen.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from model.config import Sampling
from model.errors import ConfigError
from streamer.config import AppConfig, WindowConfig
from streamer.core.scheduler import WindowPlan

if TYPE_CHECKING:
    from model.loaded import LoadedModel
    from streamer.sources.table import SourcePlan

log = logging.getLogger(__name__)


def resolve_device(device: str, precision: str, model_source: str | None = None, batch: int = 1) -> tuple[str, str]:
    """``auto`` device: CUDA if present, else CPU; ``auto`` precision: what ``--bench`` measured for this
    device, model and batch, else the rule in streamer/core/precision.py; ``int8``: the fastest 8-bit path
    measured to agree (CUDA), else the device's own (int8-x86 on CPU)."""
    if device == "auto" or device.startswith("cuda"):
        import torch

        has_cuda = torch.cuda.is_available()
        if device == "auto":
            device = "cuda" if has_cuda else "cpu"
        elif not has_cuda:
            raise ConfigError(f"model.device: {device!r} asked for but no CUDA device is present; use --device cpu")
    if precision == "auto":
        from streamer.core import precision as measured

        precision = (measured.choose(device, model_source, batch) if model_source is not None
                     else measured.fallback_precision(device))
    if precision == "int8":
        from streamer.core import precision as measured

        precision = measured.fast_8bit(device, model_source, batch)
    return device, precision


def load(cfg: AppConfig) -> tuple[LoadedModel, str]:
    """Load the model as configured (views applied); returns it and the device it runs on."""
    import model as model_pkg
    from model.views import with_views

    device, precision = resolve_device(cfg.model.device, cfg.model.precision, cfg.model.source, cfg.batching.max_batch)
    if cfg.model.threads:
        import torch

        torch.set_num_threads(cfg.model.threads)
    loaded = model_pkg.load_model(cfg.model.source, precision=precision, device=device,
                                  int8_threshold=cfg.model.int8_threshold)
    if cfg.model.precision == "auto":  # said once the checkpoint loaded, so a bad one still fails first
        from streamer.core import precision as measured

        log.info("precision auto: %s (%s)", loaded.precision,
                 measured.why(device, cfg.model.source, cfg.batching.max_batch))
    return with_views(loaded, cfg.model.views), device


def resolve_window(cfg: WindowConfig, model: LoadedModel) -> WindowPlan:
    """Fill the window's defaults: the sampling ``model`` was trained with (when it is known, else the
    model's num_frames, every frame); hop: one sample interval. A config whose sampling differs from the
    declared one wins, with one warning naming both."""
    declared = model.sampling
    base = declared or Sampling(model.config.num_frames, stride=1)
    num_frames = cfg.num_frames or base.num_frames or model.config.num_frames
    stride, span_s = (base.stride, base.span_s) if cfg.stride is None and cfg.span_s is None else (cfg.stride, cfg.span_s)
    if declared is not None:
        used = Sampling(num_frames, span_s=span_s, stride=stride)
        if used != declared:
            log.warning("window: the config's sampling (%s) overrides the one %s was trained with (%s); results may "
                        "be worse (leave window.num_frames, stride and span_s unset to use the model's)",
                        used.describe(), model.name, declared.describe())
    hop, hop_s = cfg.hop, cfg.hop_s
    if hop is None and hop_s is None:
        if stride is not None:
            hop = stride
        else:
            hop_s = span_s / num_frames
    return WindowPlan(num_frames=num_frames, stride=stride, span_s=span_s, hop=hop, hop_s=hop_s,
                      freshness_s=cfg.freshness_s)


def _shows_synthetic_shapes(plan: SourcePlan) -> bool:
    """A ``synthetic://`` source, or a file the demo renderer wrote (its sidecar says so)."""
    from model.demo.render import is_rendered

    if plan.kind.name == "synthetic":
        return True
    url = plan.config.url
    return plan.kind.name == "file" and is_rendered(Path(url[len("file://"):] if url.startswith("file://") else url))


def warn_outside_domain(model: LoadedModel, plans: Iterable[SourcePlan]) -> list[str]:
    """One warning when a model that has seen only synthetic shapes (``domain: synthetic-shapes``, the
    motion demo) watches other video; returns the ids of those sources."""
    from model.demo.render import DOMAIN

    if model.domain != DOMAIN:
        return []
    outside = [plan.id for plan in plans if not _shows_synthetic_shapes(plan)]
    if outside:
        log.warning("model %s knows only %s (the demo renderer's moving shapes): its labels for %s mean little; "
                    "use a model trained on such video (--model)", model.name, DOMAIN, ", ".join(outside))
    return outside


__all__ = ["load", "resolve_device", "resolve_window", "warn_outside_domain"]

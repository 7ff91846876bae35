"""Where fine-tuning starts: a new network of a named size (``scratch:tiny|small|base``) or any checkpoint
:func:`model.load_model` reads; its head replaced for the data's labels; what stays fixed.

Masks say what training may change: ``masks[name]`` is 1 where parameter ``name`` is trained and 0
where it is kept as it started (``--freeze``, or a ``--prior``'s fixed front end). Parameters that
are wholly fixed do not even get gradients.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
from dataclasses import dataclass

import torch
from torch import nn

from model.config import Sampling, TimesformerConfig
from model.errors import ConfigError
from model.finetune.settings import Freeze
from model.preprocess import PreprocessConfig
from model.timesformer import TimeSformer

log = logging.getLogger(__name__)

SCRATCH_PREFIX = "scratch:"
#: geometries of new networks (8 frames unless the sampling says otherwise); small is the motion-demo's,
#: small-wide the same with a 192-wide token (room for --prior motion-demo-regions; a step costs 1.6x)
SIZES: dict[str, dict[str, int]] = {
    "tiny": dict(image_size=64, patch_size=16, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                 intermediate_size=256),
    "small": dict(image_size=64, patch_size=16, hidden_size=128, num_hidden_layers=4, num_attention_heads=8,
                  intermediate_size=512),
    "small-wide": dict(image_size=64, patch_size=16, hidden_size=192, num_hidden_layers=4, num_attention_heads=12,
                       intermediate_size=768),
    "base": dict(image_size=224, patch_size=16, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                 intermediate_size=3072),
}
#: fixed front ends by name: module:function(model) -> masks (1 = trainable), and the size each is made for
PRIORS = {"motion-demo": "model.demo.prior:install", "motion-demo-regions": "model.demo.prior:install_regions"}
PRIOR_SIZES = {"motion-demo": "small", "motion-demo-regions": "small-wide"}
DEFAULT_SPAN_S = 2.0  # a new network's window when no --span-s/--stride is given: 8 frames over 2 s


@dataclass(frozen=True)
class Start:
    """The network to train, its preprocessing, what is fixed, and where it came from."""

    model: TimeSformer
    preprocess: PreprocessConfig
    masks: dict[str, torch.Tensor]
    scratch: bool
    description: str
    license: str

    @property
    def square(self) -> bool:
        """Whether every input frame is square (a transpose keeps the model's input shape)."""
        fixed = self.preprocess.crop_size or self.preprocess.size
        return fixed is not None and fixed[0] == fixed[1]


def start(base: str, labels: tuple[str, ...], sampling: Sampling | None, freeze: Freeze, prior: str | None,
          domain: str | None) -> Start:
    """Build or load the network named by ``base`` for ``labels`` (torch's generator must be seeded)."""
    scratch = base.startswith(SCRATCH_PREFIX)
    if prior is not None and not scratch:
        raise ConfigError(f"--prior {prior}: a fixed front end goes on a new network; use --base scratch:SIZE")
    if scratch and freeze.kind is not None:
        raise ConfigError("--freeze keeps pretrained weights; a scratch: network has none")
    build = _scratch if scratch else _pretrained
    model, pre, description, licence, sampling = build(base, labels, sampling)
    model.config = dataclasses.replace(model.config, sampling=sampling, domain=domain, label_symmetries=())
    masks = {name: torch.ones_like(p) for name, p in model.named_parameters()}
    if prior is not None:
        masks = _install_prior(prior, model)
    _freeze(model, freeze, masks)
    for name, p in model.named_parameters():
        p.requires_grad_(bool(masks[name].any()))
    return Start(model.train(), pre, masks, scratch, description, licence)


def _scratch(base: str, labels: tuple[str, ...], sampling: Sampling | None):
    size = base[len(SCRATCH_PREFIX):]
    if size not in SIZES:
        raise ConfigError(f"--base {base}: unknown size; use scratch:{', scratch:'.join(SIZES)}")
    frames = sampling.num_frames if sampling is not None and sampling.num_frames else 8
    if sampling is None:
        sampling = Sampling(frames, span_s=DEFAULT_SPAN_S)
        log.info("window: %s (the default for a new network; --span-s or --stride to choose)", sampling.describe())
    sampling = dataclasses.replace(sampling, num_frames=frames)
    config = TimesformerConfig(**SIZES[size], num_frames=frames, labels=labels, sampling=sampling)
    image = config.image_size  # exact resize, no crop: the whole frame stays in view
    pre = PreprocessConfig(shortest_edge=None, size=(image, image), crop_size=None)
    return TimeSformer(config), pre, f"new {size} network ({sum_params(config)} M parameters)", "unknown", sampling


def _pretrained(base: str, labels: tuple[str, ...], sampling: Sampling | None):
    from model.checkpoint import load_model

    loaded = load_model(base)
    model = loaded.network
    if not isinstance(model, TimeSformer):
        raise ConfigError(f"--base {base}: loaded as {type(model).__name__}, not a TimeSformer")
    sampling = sampling or loaded.sampling or Sampling(model.config.num_frames, span_s=DEFAULT_SPAN_S)
    frames = sampling.num_frames or model.config.num_frames
    sampling = dataclasses.replace(sampling, num_frames=frames)
    if frames != model.config.num_frames and hasattr(model, "time_embed"):
        from model.timesformer import resize_time_embed

        model.time_embed = nn.Parameter(resize_time_embed(model.time_embed.detach(), frames).clone())
    model.config = dataclasses.replace(model.config, num_frames=frames)
    if tuple(labels) == model.config.labels:
        log.info("the data's labels are the checkpoint's, in its order: its classifier is kept")
    else:
        model.head = nn.Linear(model.config.hidden_size, len(labels))
        model.config = dataclasses.replace(model.config, labels=tuple(labels), label_symmetries=())
    model.requires_grad_(True)
    return model, loaded.preprocess, f"{loaded.name} ({loaded.license})", loaded.license, sampling


def _install_prior(prior: str, model: TimeSformer) -> dict[str, torch.Tensor]:
    if prior not in PRIORS:
        raise ConfigError(f"--prior {prior!r}: use one of {', '.join(PRIORS)}")
    module, _, function = PRIORS[prior].partition(":")
    try:
        return getattr(importlib.import_module(module), function)(model)
    except (ValueError, IndexError, RuntimeError) as exc:
        raise ConfigError(f"--prior {prior} does not fit this network ({exc}); use --base scratch:{PRIOR_SIZES[prior]}") from None


def _freeze(model: TimeSformer, freeze: Freeze, masks: dict[str, torch.Tensor]) -> None:
    """Zero the masks of what ``freeze`` keeps: all but the head, or all but the last K blocks too."""
    if freeze.kind is None:
        return
    depth = len(model.blocks)
    if freeze.kind == "last" and freeze.last > depth:
        raise ConfigError(f"--freeze last:{freeze.last}: the network has only {depth} blocks")
    trained = ("head.",) if freeze.kind == "backbone" else \
        ("head.", "norm.", *(f"blocks.{i}." for i in range(depth - freeze.last, depth)))
    for name in masks:
        if not name.startswith(trained):
            masks[name].zero_()


def sum_params(config: TimesformerConfig) -> float:
    with torch.device("meta"):
        return round(sum(p.numel() for p in TimeSformer(config).parameters()) / 1e6, 2)

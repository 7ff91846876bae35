"""The network's geometry as one frozen dataclass, read from and written to Hugging Face `config.json`."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Mapping

from model.errors import ConfigError

ATTENTION_TYPES = ("divided_space_time", "space_only", "joint_space_time")
ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu", "silu")
SPATIAL_TRANSFORMS = ("hflip", "vflip", "transpose")  # what label_symmetries may declare (model/views.py)
_EXTRA_KEYS = ("labels", "label_symmetries", "sampling", "domain")  # not copied field by field from config.json


@dataclass(frozen=True)
class Sampling:
    """How a checkpoint's training clips were sampled: ``num_frames`` frames spread over ``span_s``
    seconds (by capture timestamp), or taken every ``stride``-th frame; exactly one of the two.

    config.json ``sampling``: ``{"num_frames": 8, "span_s": 1.28}`` or ``{"num_frames": 8, "stride": 4}``
    (``transformers`` ignores the key). ``num_frames`` None: the checkpoint's own ``num_frames``.
    """

    num_frames: int | None = None
    span_s: float | None = None
    stride: int | None = None

    def __post_init__(self) -> None:
        if (self.span_s is None) == (self.stride is None):
            raise ConfigError("model config: sampling needs exactly one of span_s (seconds) or stride (frames)")
        for name in ("num_frames", "stride"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                raise ConfigError(f"model config: sampling.{name} must be a positive integer, got {value!r}")
        span = self.span_s
        if span is not None and (isinstance(span, bool) or not isinstance(span, (int, float)) or not span > 0):
            raise ConfigError(f"model config: sampling.span_s must be a positive number of seconds, got {span!r}")

    def describe(self) -> str:
        """``8 frames over 1.28 s`` or ``8 frames, every 4th frame``."""
        frames = f"{self.num_frames} frames" if self.num_frames is not None else "its frames"
        if self.span_s is not None:
            return f"{frames} over {self.span_s:g} s"
        return f"{frames}, every frame" if self.stride == 1 else f"{frames}, one in {self.stride}"

    @classmethod
    def from_hf_dict(cls, raw: Any) -> Sampling:
        known = ("num_frames", "span_s", "stride")
        if not isinstance(raw, Mapping) or set(raw) - set(known):
            raise ConfigError('model config: sampling must be {"num_frames": N, "span_s": seconds} or '
                              '{"num_frames": N, "stride": frames}')
        return cls(**{k: raw[k] for k in known if k in raw})

    def to_hf_dict(self) -> dict[str, Any]:
        return {k: v for k, v in (("num_frames", self.num_frames), ("span_s", self.span_s), ("stride", self.stride))
                if v is not None}


@dataclass(frozen=True)
class TimesformerConfig:
    """Geometry of a TimeSformer; defaults are the base model (ViT-B/16, 8 frames, 224 px)."""

    image_size: int = 224
    patch_size: int = 16
    num_channels: int = 3
    num_frames: int = 8
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-6
    qkv_bias: bool = True
    attention_type: str = "divided_space_time"
    labels: tuple[str, ...] = field(default=("LABEL_0", "LABEL_1"))
    #: how labels change when the frames are mirrored or transposed: ((transform, ((label, becomes), ...)), ...);
    #: config.json ``label_symmetries`` {"hflip": {"move_left": "move_right", ...}}; empty: none declared
    label_symmetries: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()
    #: the clip sampling the checkpoint was trained with (config.json ``sampling``); None: not declared
    sampling: Sampling | None = None
    #: what the checkpoint has seen, when narrow (config.json ``domain``, e.g. "synthetic-shapes")
    domain: str | None = None

    def __post_init__(self) -> None:
        positive = ("image_size", "patch_size", "num_channels", "num_frames", "hidden_size",
                    "num_hidden_layers", "num_attention_heads", "intermediate_size")
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"model config: {name} must be a positive integer, got {value!r}")
        if self.image_size % self.patch_size:
            raise ConfigError(
                f"model config: image_size {self.image_size} is not a multiple of patch_size {self.patch_size}"
            )
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(
                f"model config: hidden_size {self.hidden_size} is not divisible by "
                f"num_attention_heads {self.num_attention_heads}"
            )
        if self.attention_type not in ATTENTION_TYPES:
            raise ConfigError(
                f"model config: attention_type {self.attention_type!r} is not one of {', '.join(ATTENTION_TYPES)}"
            )
        if self.hidden_act not in ACTIVATIONS:
            raise ConfigError(f"model config: hidden_act {self.hidden_act!r} is not one of {', '.join(ACTIVATIONS)}")
        if not (isinstance(self.layer_norm_eps, float) and self.layer_norm_eps > 0):
            raise ConfigError(f"model config: layer_norm_eps must be a positive float, got {self.layer_norm_eps!r}")
        if not isinstance(self.labels, tuple) or not self.labels or not all(isinstance(x, str) for x in self.labels):
            raise ConfigError("model config: labels must be a non-empty tuple of strings (index = class id)")
        for transform, pairs in self.label_symmetries:
            if transform not in SPATIAL_TRANSFORMS:
                raise ConfigError(f"model config: label_symmetries: {transform!r} is not one of "
                                  f"{', '.join(SPATIAL_TRANSFORMS)}")
            for name in (n for pair in pairs for n in pair):
                if name not in self.labels:
                    raise ConfigError(f"model config: label_symmetries.{transform}: {name!r} is not one of the labels")
        if self.domain is not None and (not isinstance(self.domain, str) or not self.domain.strip()):
            raise ConfigError(f"model config: domain must be a non-empty string, got {self.domain!r}")

    @property
    def symmetries(self) -> dict[str, dict[str, str]]:
        """``label_symmetries`` as ``{transform: {label: label it becomes}}``."""
        return {transform: dict(pairs) for transform, pairs in self.label_symmetries}

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.labels))

    @property
    def grid_size(self) -> int:
        """Patches per side at the checkpoint's image size."""
        return self.image_size // self.patch_size

    @classmethod
    def from_hf_dict(cls, d: Mapping[str, Any]) -> TimesformerConfig:
        """Read a Hugging Face TimeSformer `config.json` dict; keys we do not model (dropout, ...) are ignored."""
        model_type = d.get("model_type", "timesformer")
        if model_type != "timesformer":
            raise ConfigError(f"model config: model_type is {model_type!r}, expected 'timesformer'")
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in _EXTRA_KEYS and f.name in d:
                kwargs[f.name] = d[f.name]
        for name in ("image_size", "patch_size"):
            value = kwargs.get(name)
            if isinstance(value, (list, tuple)):
                if len(value) != 2 or value[0] != value[1]:
                    raise ConfigError(f"model config: only square {name} is supported, got {value!r}")
                kwargs[name] = int(value[0])
        if "layer_norm_eps" in kwargs:
            kwargs["layer_norm_eps"] = float(kwargs["layer_norm_eps"])
        kwargs["labels"] = _labels_from_hf(d)
        kwargs["label_symmetries"] = _symmetries_from_hf(d.get("label_symmetries"))
        if d.get("sampling") is not None:
            kwargs["sampling"] = Sampling.from_hf_dict(d["sampling"])
        kwargs["domain"] = d.get("domain")
        return cls(**kwargs)

    def to_hf_dict(self) -> dict[str, Any]:
        """A `config.json` dict that `transformers.TimesformerForVideoClassification` accepts."""
        d: dict[str, Any] = {
            "architectures": ["TimesformerForVideoClassification"],
            "model_type": "timesformer",
        }
        for f in fields(self):
            if f.name not in _EXTRA_KEYS:
                d[f.name] = getattr(self, f.name)
        if self.label_symmetries:
            d["label_symmetries"] = self.symmetries
        if self.sampling is not None:
            d["sampling"] = self.sampling.to_hf_dict()
        if self.domain is not None:
            d["domain"] = self.domain
        d["id2label"] = {str(i): label for i, label in enumerate(self.labels)}
        d["label2id"] = {label: i for i, label in enumerate(self.labels)}
        return d


def _symmetries_from_hf(raw: Any) -> tuple[tuple[str, tuple[tuple[str, str], ...]], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, Mapping) or not all(isinstance(m, Mapping) for m in raw.values()):
        raise ConfigError('model config: label_symmetries must map a transform to {label: label}, '
                          'e.g. {"hflip": {"move_left": "move_right"}}')
    return tuple((str(t), tuple((str(a), str(b)) for a, b in m.items())) for t, m in raw.items())


def _labels_from_hf(d: Mapping[str, Any]) -> tuple[str, ...]:
    id2label = d.get("id2label")
    if id2label:
        try:
            pairs = sorted((int(k), str(v)) for k, v in id2label.items())
        except (TypeError, ValueError, AttributeError):
            raise ConfigError("model config: id2label must map integer ids to label strings") from None
        ids = [i for i, _ in pairs]
        if ids != list(range(len(ids))):
            raise ConfigError("model config: id2label ids must be 0..N-1 without gaps")
        return tuple(label for _, label in pairs)
    num_labels = d.get("num_labels", 2)
    if not isinstance(num_labels, int) or num_labels <= 0:
        raise ConfigError(f"model config: num_labels must be a positive integer, got {num_labels!r}")
    return tuple(f"LABEL_{i}" for i in range(num_labels))

"""Per-frame preprocessing that matches a checkpoint's ``preprocessor_config.json``.

A frame is processed once, when it is captured: uint8 ``H x W x 3`` (BGR from OpenCV by default,
or RGB; the order is always stated) -> float32 ``(3, h, w)``, resized, cropped, rescaled and
normalized. The uint8 frame is uploaded first and the arithmetic runs on ``device``.

Semantics follow ``VideoMAEImageProcessor`` (what TimeSformer checkpoints name): resize so the
shortest edge is ``shortest_edge`` (or to an exact ``size``), bilinear with antialiasing, rounded
back to uint8 levels as PIL does, then a center crop, ``x * rescale_factor``, ``(x - mean) / std``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from model.errors import ConfigError

log = logging.getLogger(__name__)

TIMESFORMER_MEAN = (0.45, 0.45, 0.45)
TIMESFORMER_STD = (0.225, 0.225, 0.225)
INPUT_ORDERS = ("BGR", "RGB")


@dataclass(frozen=True)
class PreprocessConfig:
    """Exactly one of ``shortest_edge`` / ``size`` when resizing; ``crop_size`` None means no crop."""

    shortest_edge: int | None = 224
    size: tuple[int, int] | None = None  # exact (height, width), aspect ratio not kept
    crop_size: tuple[int, int] | None = (224, 224)  # (height, width)
    rescale_factor: float | None = 1 / 255
    mean: tuple[float, float, float] | None = TIMESFORMER_MEAN
    std: tuple[float, float, float] | None = TIMESFORMER_STD

    def __post_init__(self) -> None:
        if self.shortest_edge is not None and self.size is not None:
            raise ConfigError("preprocess: give shortest_edge or size, not both")
        if self.shortest_edge is not None and self.shortest_edge <= 0:
            raise ConfigError(f"preprocess: shortest_edge must be positive, got {self.shortest_edge}")
        for name in ("size", "crop_size"):
            value = getattr(self, name)
            if value is not None and (len(value) != 2 or min(value) <= 0):
                raise ConfigError(f"preprocess: {name} must be (height, width) with positive values, got {value!r}")
        if (self.mean is None) != (self.std is None):
            raise ConfigError("preprocess: give both mean and std, or neither")
        if self.std is not None and (len(self.std) != 3 or min(self.std) <= 0):
            raise ConfigError(f"preprocess: std must be 3 positive numbers, got {self.std!r}")
        if self.mean is not None and len(self.mean) != 3:
            raise ConfigError(f"preprocess: mean must be 3 numbers, got {self.mean!r}")

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """(h, w) of the tensor produced from a ``height x width`` frame."""
        if self.crop_size is not None:
            return self.crop_size
        return self.resized_size(height, width)

    def resized_size(self, height: int, width: int) -> tuple[int, int]:
        if self.size is not None:
            return self.size
        if self.shortest_edge is None:
            return height, width
        short, long = (height, width) if height <= width else (width, height)
        new_long = int(self.shortest_edge * long / short)
        return (self.shortest_edge, new_long) if height <= width else (new_long, self.shortest_edge)

    @classmethod
    def for_image_size(cls, image_size: int) -> PreprocessConfig:
        """TimeSformer's own recipe for a checkpoint of ``image_size``: short side, center crop, 0.45/0.225."""
        return cls(shortest_edge=image_size, crop_size=(image_size, image_size))

    @classmethod
    def from_hf_dict(cls, d: Mapping[str, Any]) -> PreprocessConfig:
        """Read a ``preprocessor_config.json`` dict (VideoMAEImageProcessor keys).

        Missing mean/std fall back to TimeSformer's 0.45/0.225 (not the processor class's ImageNet
        defaults) and are logged; a missing size is an error.
        """
        shortest, size = None, None
        if d.get("do_resize", True):
            raw = d.get("size")
            if isinstance(raw, int):
                shortest = raw
            elif isinstance(raw, Mapping) and "shortest_edge" in raw:
                shortest = int(raw["shortest_edge"])
            elif isinstance(raw, Mapping) and "height" in raw and "width" in raw:
                size = (int(raw["height"]), int(raw["width"]))
            else:
                raise ConfigError(f"preprocessor_config.json: size {raw!r} is neither shortest_edge nor height/width")
        crop = None
        if d.get("do_center_crop", True) and d.get("crop_size") is not None:
            raw = d["crop_size"]
            crop = (int(raw), int(raw)) if isinstance(raw, int) else (int(raw["height"]), int(raw["width"]))
        rescale = float(d.get("rescale_factor", 1 / 255)) if d.get("do_rescale", True) else None
        mean = std = None
        if d.get("do_normalize", True):
            if "image_mean" not in d or "image_std" not in d:
                log.warning("preprocessor_config.json has no image_mean/image_std: using TimeSformer's 0.45/0.225")
            mean = _triple(d.get("image_mean", TIMESFORMER_MEAN), "image_mean")
            std = _triple(d.get("image_std", TIMESFORMER_STD), "image_std")
        return cls(shortest_edge=shortest, size=size, crop_size=crop, rescale_factor=rescale, mean=mean, std=std)

    def to_hf_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"image_processor_type": "VideoMAEImageProcessor", "resample": 2}
        d["do_resize"] = self.shortest_edge is not None or self.size is not None
        if self.shortest_edge is not None:
            d["size"] = {"shortest_edge": self.shortest_edge}
        elif self.size is not None:
            d["size"] = {"height": self.size[0], "width": self.size[1]}
        d["do_center_crop"] = self.crop_size is not None
        if self.crop_size is not None:
            d["crop_size"] = {"height": self.crop_size[0], "width": self.crop_size[1]}
        d["do_rescale"] = self.rescale_factor is not None
        if self.rescale_factor is not None:
            d["rescale_factor"] = self.rescale_factor
        d["do_normalize"] = self.mean is not None
        if self.mean is not None:
            d["image_mean"] = list(self.mean)
            d["image_std"] = list(self.std)
        return d


def _triple(value: Any, name: str) -> tuple[float, float, float]:
    if isinstance(value, (int, float)):
        value = [value] * 3
    if len(value) != 3:
        raise ConfigError(f"preprocessor_config.json: {name} must have 3 values, got {value!r}")
    return tuple(float(v) for v in value)  # type: ignore[return-value]


class Preprocessor:
    """``__call__(frame)``: uint8 ``H x W x 3`` numpy (``input_order``) -> float32 ``(3, h, w)`` on ``device``."""

    def __init__(self, cfg: PreprocessConfig, device: str | torch.device = "cpu", input_order: str = "BGR") -> None:
        if input_order not in INPUT_ORDERS:
            raise ConfigError(f"preprocess: input_order must be BGR or RGB, got {input_order!r}")
        self.cfg = cfg
        self.device = torch.device(device)
        self.input_order = input_order
        scale = cfg.rescale_factor if cfg.rescale_factor is not None else 1.0
        mean = torch.tensor(cfg.mean if cfg.mean is not None else (0.0, 0.0, 0.0), dtype=torch.float32)
        std = torch.tensor(cfg.std if cfg.std is not None else (1.0, 1.0, 1.0), dtype=torch.float32)
        # (x * scale - mean) / std == x * a + b, per channel, shape (3, 1, 1)
        self._a = (scale / std).view(3, 1, 1).to(self.device)
        self._b = (-mean / std).view(3, 1, 1).to(self.device)
        # uint8 antialiased bilinear exists on CPU only; elsewhere resize in float and round to uint8 levels
        self.uint8_resize = self.device.type == "cpu"

    def __call__(self, frame: np.ndarray) -> torch.Tensor:
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            got = f"{type(frame).__name__} {getattr(frame, 'dtype', '')} {getattr(frame, 'shape', '')}"
            raise ValueError(f"frame must be a uint8 H x W x 3 array, got {got}")
        x = torch.from_numpy(np.ascontiguousarray(frame)).to(self.device, non_blocking=True)  # (H, W, 3) uint8
        return self.transform(x)

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 ``(H, W, 3)`` already on this preprocessor's device -> normalized float32 ``(3, h, w)``."""
        return torch.addcmul(self._b, self._levels(x), self._a)  # (3, h, w) float32

    def pixels(self, frame: np.ndarray) -> torch.Tensor:
        """uint8 ``H x W x 3`` numpy -> uint8 RGB ``(3, h, w)``: resized and cropped, not yet normalized.
        :meth:`normalize` of it equals ``self(frame)`` (training caches these, model.finetune)."""
        x = torch.from_numpy(np.ascontiguousarray(frame)).to(self.device)  # (H, W, 3) uint8
        return self._levels(x).to(torch.uint8)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 (or uint8-level float) ``(..., 3, h, w)`` RGB -> normalized float32, as :meth:`transform`."""
        return torch.addcmul(self._b, x.float(), self._a)

    def _levels(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 ``(H, W, 3)`` -> float ``(3, h, w)`` RGB at uint8 levels: resized, cropped."""
        x = x.permute(2, 0, 1)  # (3, H, W)
        x = self._resize(x)  # (3, h', w') float, uint8 levels
        x = self._center_crop(x)  # (3, h, w)
        if self.input_order == "BGR":
            # resize and crop act per channel: swapping after them equals swapping the whole frame, cheaper
            x = x.flip(0)  # (3, h, w) RGB
        return x

    def _resize(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        out_h, out_w = self.cfg.resized_size(height, width)
        if (out_h, out_w) == (height, width):
            return x.float()
        if self.uint8_resize:
            # uint8 antialiased bilinear: rounds to uint8 levels like PIL
            y = F.interpolate(x.unsqueeze(0), size=(out_h, out_w), mode="bilinear", antialias=True,
                              align_corners=False)  # (1, 3, h', w') uint8
            return y[0].float()
        y = F.interpolate(x.unsqueeze(0).float(), size=(out_h, out_w), mode="bilinear", antialias=True,
                          align_corners=False)  # (1, 3, h', w') float
        return y[0].round_().clamp_(0, 255)

    def _center_crop(self, x: torch.Tensor) -> torch.Tensor:
        if self.cfg.crop_size is None:
            return x
        crop_h, crop_w = self.cfg.crop_size
        height, width = x.shape[-2:]
        if crop_h > height or crop_w > width:
            pad_h, pad_w = max(crop_h - height, 0), max(crop_w - width, 0)
            x = F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
            height, width = x.shape[-2:]
        top = (height - crop_h) // 2
        left = (width - crop_w) // 2
        return x[:, top:top + crop_h, left:left + crop_w]

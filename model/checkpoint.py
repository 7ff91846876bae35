"""``load_model`` and ``save_pretrained``: the one way in and out for weights.

Loading is strict and loud: the format is detected from sentinel keys, keys are renamed through the
table in :mod:`model.keymap`, and every missing or unexpected key or shape mismatch is listed in a
one-line :class:`CheckpointError`. Weights are read with safetensors, or ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from model import keymap, sources
from model.config import TimesformerConfig
from model.errors import CheckpointError, ConfigError
from model.loaded import LoadedModel
from model.preprocess import PreprocessConfig
from model.quantize import PRECISIONS, apply_precision, quantized_as
from model.timesformer import TimeSformer

log = logging.getLogger(__name__)


def load_model(
    source: str | Path,
    *,
    precision: str = "fp32",
    device: str | torch.device = "cpu",
    num_frames: int | None = None,
    num_labels: int | None = None,
    labels: tuple[str, ...] | None = None,
    num_heads: int | None = None,
    int8_threshold: float = 6.0,
) -> LoadedModel:
    """Load a TimeSformer from a HF folder, a ``.pyth``/``.pth`` file, a hub id or a built-in name.

    ``num_frames``/``num_labels``/``labels``/``num_heads`` describe an original ``.pyth`` whose cfg
    lacks them (checked against the weights; heads default to hidden_size / 64, as in ViT-B);
    ``int8_threshold`` is bitsandbytes' outlier threshold. The network comes back in eval mode on
    ``device``, inside a :class:`LoadedModel` with its config, preprocessing, licence and sampling.
    """
    if precision not in PRECISIONS:
        raise CheckpointError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    where = sources.resolve(source)
    known_as = where.hub_id
    if where.kind == "folder":
        config, state, pre, name_or_path = _read_folder(where.path)
        known_as = known_as or name_or_path
        licence = sources.find_license(where.path, where.name, known_as)
    else:
        config, state = _read_original(where.path, num_frames=num_frames, num_labels=num_labels, labels=labels,
                                       num_heads=num_heads)
        pre = PreprocessConfig.for_image_size(config.image_size)
        licence = sources.find_license(None, where.name, original=True)

    with torch.device("meta"):  # no memory and no random init for weights that are replaced at once
        network = TimeSformer(config)
    load_state_strict(network, state, str(where.path), assign=True)
    del state
    network.eval().requires_grad_(False)
    target = torch.device(device)
    network, precision = apply_precision(network, precision, target, name=where.name, int8_threshold=int8_threshold)
    network.eval()  # precision: the backend that runs (int8-x86, int8-bnb, ...)
    sampling = config.sampling or sources.known_sampling(known_as)
    if sampling is not None and sampling.num_frames is None:
        sampling = dataclasses.replace(sampling, num_frames=config.num_frames)
    loaded = LoadedModel(network=network, config=config, preprocess=pre, name=where.name, license=licence,
                         precision=precision, input_dtype=network.patch_embed.proj.weight.dtype,
                         sampling=sampling, domain=config.domain)
    log.info("loaded model %s (%s, %s on %s, %d frames, %d px, %d labels%s); licence: %s",
             where.name, config.attention_type, precision, target, config.num_frames, config.image_size,
             config.num_labels, f", trained on {sampling.describe()}" if sampling else "", licence)
    return loaded


def load_state_strict(model: nn.Module, state: Mapping[str, Any], origin: str, assign: bool = False) -> None:
    """Rename ``state`` to our names (format from sentinel keys) and load it strictly, or raise listing why.
    ``assign=True`` makes the checkpoint's tensors the parameters (for a model built on the meta device)."""
    fmt = keymap.detect_format(list(state))
    native = keymap.to_native(state, fmt)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(native))
    unexpected = sorted(set(native) - set(expected))
    mismatched = [f"{k} {tuple(native[k].shape)} vs {tuple(expected[k].shape)}"
                  for k in expected if k in native and tuple(native[k].shape) != tuple(expected[k].shape)]
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} keys ({_few(missing)})")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)} keys ({_few(unexpected)})")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatches (checkpoint vs model: {_few(mismatched)})")
    if problems:
        raise CheckpointError(f"{origin}: checkpoint does not fit its config: " + "; ".join(problems))
    model.load_state_dict({k: v.to(torch.float32) if v.is_floating_point() else v for k, v in native.items()},
                          strict=True, assign=assign)


def _few(items: list[str], limit: int = 4) -> str:
    more = f", ... {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: cannot read JSON ({exc}); re-download or re-save the checkpoint") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return data


def _read_folder(folder: Path) -> tuple[TimesformerConfig, dict[str, torch.Tensor], PreprocessConfig, str | None]:
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise CheckpointError(f"{folder}: no config.json; a Hugging Face model folder needs config.json and weights")
    raw = _read_json(config_path)
    try:
        config = TimesformerConfig.from_hf_dict(raw)
    except ConfigError as exc:
        raise CheckpointError(f"{config_path}: {exc}") from None
    state = read_weights(folder)
    pre_path = folder / "preprocessor_config.json"
    if pre_path.is_file():
        try:
            pre = PreprocessConfig.from_hf_dict(_read_json(pre_path))
        except ConfigError as exc:
            raise CheckpointError(f"{pre_path}: {exc}") from None
    else:
        pre = PreprocessConfig.for_image_size(config.image_size)
        log.warning("%s: no preprocessor_config.json; using TimeSformer's recipe (short side %d, center crop, "
                    "mean 0.45, std 0.225)", folder, config.image_size)
    name_or_path = raw.get("_name_or_path")
    return config, state, pre, name_or_path if isinstance(name_or_path, str) else None


def read_weights(folder: Path) -> dict[str, torch.Tensor]:
    """The folder's state dict: model.safetensors, sharded safetensors, or pytorch_model.bin (in that order)."""
    single = folder / "model.safetensors"
    index = folder / "model.safetensors.index.json"
    binary = folder / "pytorch_model.bin"
    if single.is_file():
        return _read_safetensors(single)
    if index.is_file():
        shards = sorted(set(_read_json(index).get("weight_map", {}).values()))
        state: dict[str, torch.Tensor] = {}
        for shard in shards:
            state.update(_read_safetensors(folder / shard))
        return state
    if binary.is_file():
        return read_torch_state(binary)
    raise CheckpointError(f"{folder}: no model.safetensors or pytorch_model.bin; copy the weights next to config.json")


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except FileNotFoundError:
        raise CheckpointError(f"{path}: file not found") from None
    except Exception as exc:  # safetensors raises its own error type for truncated/corrupt headers
        raise CheckpointError(f"{path}: unreadable safetensors file ({exc}); it is truncated or corrupt, "
                              "download it again") from None


def read_torch_state(path: Path) -> dict[str, Any]:
    """``torch.load(weights_only=True)``: tensors and plain containers only, never arbitrary pickle."""
    try:
        data = torch.load(str(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: file not found") from None
    except Exception as exc:  # UnpicklingError, RuntimeError (zip), EOFError (truncated) ...
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({first}); it is truncated, corrupt, "
                              "or not a weights-only file") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a dict of tensors, found {type(data).__name__}")
    return data


def _read_original(path: Path, *, num_frames: int | None, num_labels: int | None,
                   labels: tuple[str, ...] | None, num_heads: int | None) -> tuple[TimesformerConfig, dict[str, torch.Tensor]]:
    """An original facebookresearch checkpoint: ``{"model_state": {"model.*": ...}, "cfg": yaml str, ...}``."""
    data = read_torch_state(path)
    state = data.get("model_state", data)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: no model_state dict of tensors; is this a facebookresearch TimeSformer file?")
    native = keymap.to_native(state, keymap.detect_format(list(state)))
    cfg = _original_cfg(data.get("cfg"))
    config = _infer_original_config(native, cfg, path, num_frames=num_frames, num_labels=num_labels,
                                   labels=labels, num_heads=num_heads)
    return config, state


def _original_cfg(raw: Any) -> dict[str, Any]:
    """The pyslowfast cfg saved next to the weights (a YAML string, or a dict); {} when absent or unreadable."""
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, str):
        import yaml

        try:
            parsed = yaml.safe_load(raw)
        except yaml.YAMLError:
            log.warning("original checkpoint: cfg is not valid YAML; inferring geometry from the weights")
            return {}
        return parsed if isinstance(parsed, dict) else {}
    return {}


def _infer_original_config(native: Mapping[str, torch.Tensor], cfg: Mapping[str, Any], path: Path, *,
                           num_frames: int | None, num_labels: int | None,
                           labels: tuple[str, ...] | None, num_heads: int | None) -> TimesformerConfig:
    """Geometry from the tensors' shapes; cfg and arguments may only agree with them."""
    try:
        hidden = native["cls_token"].shape[-1]
        patch = native["patch_embed.proj.weight"].shape[-1]
        channels = native["patch_embed.proj.weight"].shape[1]
        grid = math.isqrt(native["pos_embed"].shape[1] - 1)
        depth = len({k.split(".")[1] for k in native if k.startswith("blocks.")})
        intermediate = native["blocks.0.mlp.fc1.weight"].shape[0]
        weight_labels = native["head.weight"].shape[0]
    except (KeyError, IndexError) as exc:
        raise CheckpointError(f"{path}: original checkpoint lacks {exc}; the file is incomplete") from None
    if "time_embed" not in native:
        attention = "space_only"
    elif "blocks.0.temporal_fc.weight" in native:
        attention = "divided_space_time"
    else:
        attention = "joint_space_time"
    frames = native["time_embed"].shape[1] if "time_embed" in native else None
    model_cfg = cfg.get("MODEL", {}) if isinstance(cfg.get("MODEL"), dict) else {}
    data_cfg = cfg.get("DATA", {}) if isinstance(cfg.get("DATA"), dict) else {}
    cfg_frames = num_frames if num_frames is not None else data_cfg.get("NUM_FRAMES")
    cfg_labels = num_labels if num_labels is not None else model_cfg.get("NUM_CLASSES")
    if labels is not None:
        if cfg_labels is not None and len(labels) != cfg_labels:
            raise CheckpointError(f"{path}: {len(labels)} labels given but the model has {cfg_labels} classes")
        cfg_labels = len(labels)
    if cfg_labels is not None and cfg_labels != weight_labels:
        raise CheckpointError(f"{path}: {cfg_labels} classes requested but the classifier has {weight_labels}; "
                              "pass the checkpoint's own num_labels")
    if frames is None:
        frames = cfg_frames if cfg_frames is not None else 8
    elif cfg_frames is not None and cfg_frames != frames:
        log.warning("%s: %s frames requested, the checkpoint's time embeddings have %d; they are resized at run "
                    "time", path, cfg_frames, frames)
    heads = num_heads if num_heads is not None else max(hidden // 64, 1)
    try:
        return TimesformerConfig(
            image_size=grid * patch, patch_size=patch, num_channels=channels, num_frames=int(frames),
            hidden_size=hidden, num_hidden_layers=depth, num_attention_heads=heads,
            intermediate_size=intermediate, attention_type=attention,
            labels=tuple(labels) if labels is not None else tuple(f"LABEL_{i}" for i in range(weight_labels)),
        )
    except ConfigError as exc:
        raise CheckpointError(f"{path}: {exc}") from None


def save_pretrained(network: TimeSformer, folder: str | Path, *, preprocess: PreprocessConfig | None = None,
                    license: str | None = None) -> Path:
    """Write ``config.json``, ``model.safetensors`` (HF key names) and ``preprocessor_config.json``
    (``preprocess``, else TimeSformer's recipe for the image size) of a full-precision ``network``;
    ``transformers.TimesformerForVideoClassification.from_pretrained(folder)`` loads the result.
    With ``license`` a README.md model card says so."""
    from safetensors.torch import save_file

    if quantized_as(network) is not None:
        raise CheckpointError("cannot save an int8 model; save the fp32 model and quantize after loading")
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in network.state_dict().items()}
    save_file(keymap.native_to_hf(state), str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(network.config.to_hf_dict(), indent=2) + "\n", encoding="utf-8")
    pre = preprocess or PreprocessConfig.for_image_size(network.config.image_size)
    (out / "preprocessor_config.json").write_text(json.dumps(pre.to_hf_dict(), indent=2) + "\n", encoding="utf-8")
    if license and license != "unknown":
        (out / "README.md").write_text(f"---\nlicense: {license.lower()}\nlibrary_name: transformers\n"
                                       f"tags:\n- video-classification\n- timesformer\n---\n", encoding="utf-8")
    log.info("saved model to %s", out)
    return out

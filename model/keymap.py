"""Checkpoint key names: format detection from sentinel keys and renaming through tables (pure functions).

Our module's names follow the original facebookresearch repository (``blocks.0.attn.qkv.weight``), so

* ``original`` checkpoints (``model_state`` of a ``.pyth``) only lose their ``model.`` prefix;
* ``hf`` checkpoints (``TimesformerForVideoClassification``) are renamed by :data:`HF_TO_NATIVE`;
* ``native`` is our own state dict as it is.
"""

from __future__ import annotations

import re
from typing import Mapping, TypeVar

from model.errors import CheckpointError

V = TypeVar("V")

# Hugging Face name -> our name; "{i}" is a block index.
HF_TO_NATIVE: tuple[tuple[str, str], ...] = (
    ("timesformer.embeddings.cls_token", "cls_token"),
    ("timesformer.embeddings.position_embeddings", "pos_embed"),
    ("timesformer.embeddings.time_embeddings", "time_embed"),
    ("timesformer.embeddings.patch_embeddings.projection.", "patch_embed.proj."),
    ("timesformer.encoder.layer.{i}.layernorm_before.", "blocks.{i}.norm1."),
    ("timesformer.encoder.layer.{i}.attention.attention.qkv.", "blocks.{i}.attn.qkv."),
    ("timesformer.encoder.layer.{i}.attention.output.dense.", "blocks.{i}.attn.proj."),
    ("timesformer.encoder.layer.{i}.temporal_layernorm.", "blocks.{i}.temporal_norm1."),
    ("timesformer.encoder.layer.{i}.temporal_attention.attention.qkv.", "blocks.{i}.temporal_attn.qkv."),
    ("timesformer.encoder.layer.{i}.temporal_attention.output.dense.", "blocks.{i}.temporal_attn.proj."),
    ("timesformer.encoder.layer.{i}.temporal_dense.", "blocks.{i}.temporal_fc."),
    ("timesformer.encoder.layer.{i}.layernorm_after.", "blocks.{i}.norm2."),
    ("timesformer.encoder.layer.{i}.intermediate.dense.", "blocks.{i}.mlp.fc1."),
    ("timesformer.encoder.layer.{i}.output.dense.", "blocks.{i}.mlp.fc2."),
    ("timesformer.layernorm.", "norm."),
    ("classifier.", "head."),
)

ORIGINAL_PREFIX = "model."

# format -> keys whose presence identifies it
SENTINELS: dict[str, tuple[str, ...]] = {
    "hf": ("timesformer.embeddings.cls_token", "timesformer.embeddings.patch_embeddings.projection.weight"),
    "original": ("model.cls_token", "model.patch_embed.proj.weight"),
    "native": ("cls_token", "patch_embed.proj.weight"),
}


def _compile(table: tuple[tuple[str, str], ...]) -> list[tuple[re.Pattern[str], str]]:
    rules = []
    for src, dst in table:
        pattern = re.escape(src).replace(re.escape("{i}"), r"(\d+)")
        if src.endswith("."):
            pattern += r"(.+)"
        rules.append((re.compile("^" + pattern + "$"), dst))
    return rules


_HF_RULES = _compile(HF_TO_NATIVE)
_NATIVE_RULES = _compile(tuple((dst, src) for src, dst in HF_TO_NATIVE))


def _rename(key: str, rules: list[tuple[re.Pattern[str], str]]) -> str | None:
    for pattern, dst in rules:
        m = pattern.match(key)
        if m is None:
            continue
        groups = list(m.groups())
        out = dst.replace("{i}", groups.pop(0)) if "{i}" in dst else dst
        return out + (groups[0] if groups else "")
    return None


def detect_format(keys: Mapping[str, object] | list[str]) -> str:
    """'hf', 'original' or 'native', from sentinel keys; CheckpointError when none fits."""
    names = set(keys)
    if names and all(k.startswith("module.") for k in names):
        names = {k[len("module."):] for k in names}
    for fmt, sentinels in SENTINELS.items():
        if all(s in names for s in sentinels):
            return fmt
    sample = ", ".join(sorted(names)[:3]) or "no keys at all"
    raise CheckpointError(
        f"unknown checkpoint layout (first keys: {sample}); expected a Hugging Face TimeSformer, "
        "an original facebookresearch TimeSformer (model.* keys) or one saved by model.save_pretrained"
    )


def to_native(state: Mapping[str, V], fmt: str) -> dict[str, V]:
    """Rename a state dict of format ``fmt`` to our names. Keys no rule knows are kept as they are,
    so that strict loading reports them as unexpected."""
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    if fmt == "native":
        return dict(state)
    if fmt == "original":
        return {(k[len(ORIGINAL_PREFIX):] if k.startswith(ORIGINAL_PREFIX) else k): v for k, v in state.items()}
    if fmt == "hf":
        return {(_rename(k, _HF_RULES) or k): v for k, v in state.items()}
    raise ValueError(f"unknown checkpoint format {fmt!r}")


def native_to_hf(state: Mapping[str, V]) -> dict[str, V]:
    """Our names -> Hugging Face names (for save_pretrained); an unknown key is a programming error."""
    out = {}
    for key, value in state.items():
        hf = _rename(key, _NATIVE_RULES)
        if hf is None:
            raise ValueError(f"no Hugging Face name for parameter {key!r}")
        out[hf] = value
    return out

"""Fixtures for the model tests: random-weight transformers reference models and their checkpoints."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

SMALL = dict(image_size=32, patch_size=8, num_frames=4, hidden_size=32, num_hidden_layers=2,
             num_attention_heads=4, intermediate_size=64)
# base geometry (224 px, 16 px patches, 768 wide, 12 heads) with only 2 layers
BASE_FEW_LAYERS = dict(image_size=224, patch_size=16, num_frames=8, hidden_size=768, num_hidden_layers=2,
                       num_attention_heads=12, intermediate_size=3072)


def make_reference(attention_type: str = "divided_space_time", num_labels: int = 5, seed: int = 0, **geometry):
    """A transformers TimesformerForVideoClassification whose every parameter is random (none left at 0 or 1)."""
    from transformers import TimesformerConfig, TimesformerForVideoClassification

    torch.manual_seed(seed)
    cfg = TimesformerConfig(attention_type=attention_type, num_labels=num_labels, **{**SMALL, **geometry})
    ref = TimesformerForVideoClassification(cfg).eval()
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return ref


def save_reference(ref, folder: Path, safe: bool = True) -> Path:
    ref.save_pretrained(str(folder), safe_serialization=safe) if _has_safe_kw() else ref.save_pretrained(str(folder))
    if not safe and (folder / "model.safetensors").exists():
        # transformers >= 5 always writes safetensors: write the .bin layout ourselves
        torch.save(ref.state_dict(), folder / "pytorch_model.bin")
        (folder / "model.safetensors").unlink()
    return folder


def _has_safe_kw() -> bool:
    import inspect

    from transformers import PreTrainedModel

    return "safe_serialization" in inspect.signature(PreTrainedModel.save_pretrained).parameters


@torch.no_grad()
def reference_logits(ref, pixel_values: torch.Tensor) -> torch.Tensor:
    """transformers' logits, (B, num_labels). For space_only, transformers returns per-frame logits
    (B*T, L); the original repository averages the frames' tokens before the final norm, so the
    reference is built from transformers' own pre-norm hidden states, norm and classifier."""
    if ref.config.attention_type != "space_only":
        return ref(pixel_values).logits
    b, t = pixel_values.shape[:2]
    hidden = ref(pixel_values, output_hidden_states=True).hidden_states[-1]  # (B*T, 1+N, D), pre-norm
    cls = hidden[:, 0].reshape(b, t, -1).mean(dim=1)  # (B, D)
    return ref.classifier(ref.timesformer.layernorm(cls))


@pytest.fixture
def hf():
    """The helpers above, for tests (conftest modules cannot be imported under --import-mode=importlib)."""
    return SimpleNamespace(SMALL=SMALL, BASE_FEW_LAYERS=BASE_FEW_LAYERS, make=make_reference,
                           save=save_reference, logits=reference_logits)

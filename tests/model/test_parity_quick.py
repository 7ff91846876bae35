"""Quick parity: a transformers checkpoint loads through load_model and gives the same logits."""

from __future__ import annotations

import json

import pytest
import torch

from model import load_model, save_pretrained


def test_small_divided_checkpoint_matches_transformers(tmp_path, hf):
    ref = hf.make()
    hf.save(ref, tmp_path)
    ours = load_model(tmp_path)
    x = torch.randn(2, 4, 3, 32, 32)
    with torch.no_grad():
        diff = (ours(x) - hf.logits(ref, x)).abs().max().item()
    assert diff < 1e-4
    assert not ours.training
    assert ours.id2label == {i: f"LABEL_{i}" for i in range(5)}


def test_save_pretrained_round_trips_through_transformers(tmp_path, hf):
    from transformers import TimesformerForVideoClassification

    ref = hf.make(seed=3)
    hf.save(ref, tmp_path / "a")
    ours = load_model(tmp_path / "a")
    save_pretrained(ours, tmp_path / "b")
    assert {p.name for p in (tmp_path / "b").iterdir()} >= {"config.json", "model.safetensors",
                                                              "preprocessor_config.json"}
    again = TimesformerForVideoClassification.from_pretrained(str(tmp_path / "b")).eval()
    x = torch.randn(1, 4, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(again(x).logits, ref(x).logits, atol=1e-6)
    assert json.loads((tmp_path / "b" / "preprocessor_config.json").read_text())["image_mean"] == [0.45] * 3

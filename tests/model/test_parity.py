"""Our TimeSformer against transformers' TimesformerForVideoClassification, same weights, same input."""

from __future__ import annotations

import json

import pytest
import torch

from model import load_model, save_pretrained
from model.timesformer import resize_time_embed

ATTENTION_TYPES = ("divided_space_time", "space_only", "joint_space_time")
TOL = 1e-4


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape
    return (a - b).abs().max().item()


@pytest.mark.parametrize("safe", [True, False], ids=["safetensors", "bin"])
@pytest.mark.parametrize("attention_type", ATTENTION_TYPES)
def test_small_checkpoint_matches_transformers(tmp_path, hf, attention_type, safe):
    ref = hf.make(attention_type)
    hf.save(ref, tmp_path, safe=safe)
    assert (tmp_path / ("model.safetensors" if safe else "pytorch_model.bin")).is_file()
    ours = load_model(tmp_path).network
    assert ours.config.attention_type == attention_type
    x = torch.randn(3, 4, 3, 32, 32)
    with torch.no_grad():
        expected = hf.logits(ref, x)
        got = ours(x)
    assert got.shape == (3, 5)
    assert expected.abs().max() > 0.1  # the logits are not trivially small
    assert _max_diff(got, expected) < TOL
    assert not ours.training


@pytest.mark.parametrize("attention_type", ATTENTION_TYPES)
def test_base_geometry_checkpoint_matches_transformers(tmp_path, hf, attention_type):
    ref = hf.make(attention_type, num_labels=400, **hf.BASE_FEW_LAYERS)
    hf.save(ref, tmp_path)
    ours = load_model(tmp_path).network
    x = torch.randn(1, 8, 3, 224, 224)
    with torch.no_grad():
        assert _max_diff(ours(x), hf.logits(ref, x)) < TOL


@pytest.mark.parametrize("attention_type", ATTENTION_TYPES)
def test_sdpa_path_equals_reference_path(tmp_path, hf, attention_type):
    hf.save(hf.make(attention_type, seed=1), tmp_path)
    ours = load_model(tmp_path).network
    x = torch.randn(2, 4, 3, 32, 32)
    with torch.no_grad():
        ours.set_fused_attention(True)
        fused = ours(x)
        ours.set_fused_attention(False)
        plain = ours(x)
    assert _max_diff(fused, plain) < 1e-5
    assert not torch.equal(fused, ours.head.bias.expand_as(fused))  # the attention did contribute


def test_sixteen_frames_through_eight_frame_checkpoint_equals_offline_resized_copy(tmp_path, hf):
    """transformers silently mixes frames when T != config.num_frames; ours resizes the time embeddings.
    Reference: a 16-frame transformers model whose time embeddings were resized offline (nearest = each
    of the 8 embeddings repeated twice), which transformers runs correctly."""
    from transformers import TimesformerForVideoClassification

    ref8 = hf.make(num_frames=8, seed=2)
    hf.save(ref8, tmp_path / "t8")
    state = ref8.state_dict()
    key = "timesformer.embeddings.time_embeddings"
    state[key] = state[key].repeat_interleave(2, dim=1)  # (1, 16, D)
    config16 = ref8.config.to_dict() | {"num_frames": 16}
    ref16 = TimesformerForVideoClassification(type(ref8.config)(**{k: v for k, v in config16.items()
                                                                   if k in type(ref8.config).__dataclass_fields__}))
    ref16.load_state_dict(state)
    ref16.eval()

    ours8 = load_model(tmp_path / "t8").network
    x = torch.randn(2, 16, 3, 32, 32)
    with torch.no_grad():
        expected = ref16(x).logits
        assert _max_diff(ours8(x), expected) < TOL
        assert _max_diff(ref8(x).logits, expected) > 1e-3  # the reference library's silent error
    # and our own offline-resized copy agrees too
    ours8_state = ours8.state_dict()
    assert torch.equal(resize_time_embed(ours8_state["time_embed"], 16), state[key])


def test_other_image_size_runs_and_keeps_checkpoint_size_exact(tmp_path, hf):
    hf.save(hf.make(), tmp_path)
    ours = load_model(tmp_path).network
    with torch.no_grad():
        out = ours(torch.randn(1, 4, 3, 48, 64))  # 6 x 8 patches instead of 4 x 4
    assert out.shape == (1, 5) and torch.isfinite(out).all()


def test_save_pretrained_round_trips_through_transformers(tmp_path, hf):
    from transformers import TimesformerForVideoClassification

    ref = hf.make(seed=3)
    hf.save(ref, tmp_path / "a")
    ours = load_model(tmp_path / "a").network
    save_pretrained(ours, tmp_path / "b")
    assert {p.name for p in (tmp_path / "b").iterdir()} >= {"config.json", "model.safetensors",
                                                              "preprocessor_config.json"}
    again = TimesformerForVideoClassification.from_pretrained(str(tmp_path / "b")).eval()
    x = torch.randn(1, 4, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(again(x).logits, ref(x).logits, atol=1e-6)
    assert json.loads((tmp_path / "b" / "preprocessor_config.json").read_text())["image_mean"] == [0.45] * 3
    reloaded = load_model(tmp_path / "b").network
    assert reloaded.config == ours.config


def test_folded_temporal_projection_equals_two_linears(tmp_path, hf):
    """load_model folds temporal_attn.proj and temporal_fc into one plain linear, once; the logits equal
    the unfolded model's and transformers', and a second fold changes nothing."""
    ref = hf.make(seed=7)
    hf.save(ref, tmp_path)
    ours = load_model(tmp_path).network
    x = torch.randn(2, 4, 3, 32, 32)
    assert ours.folded and type(ours.blocks[0].temporal_fc) is torch.nn.Identity
    assert type(ours.blocks[0].temporal_attn.proj) is torch.nn.Linear
    with torch.no_grad():
        folded = ours(x)
        assert ours.fold() == 0  # already folded
        assert _max_diff(ours(x), folded) == 0.0
        assert _max_diff(folded, hf.logits(ref, x)) < 1e-5
    state = ours.state_dict()  # saved as the architecture: temporal_fc is the identity
    assert torch.equal(state["blocks.0.temporal_fc.weight"], torch.eye(ours.config.hidden_size))
    assert not state["blocks.0.temporal_fc.bias"].any()

"""TimesformerConfig and the key map: Hugging Face config.json round trips, validation, renaming."""

from __future__ import annotations

import dataclasses

import pytest

from model.config import Sampling, TimesformerConfig
from model.errors import CheckpointError, ConfigError
from model.keymap import detect_format, native_to_hf, to_native


def test_hf_dict_round_trip_keeps_labels_in_id_order():
    d = {"model_type": "timesformer", "image_size": 224, "num_frames": 16, "hidden_dropout_prob": 0.1,
         "id2label": {"2": "c", "0": "a", "1": "b", "10": "k", **{str(i): f"x{i}" for i in range(3, 10)}}}
    cfg = TimesformerConfig.from_hf_dict(d)
    assert cfg.labels[:3] == ("a", "b", "c") and cfg.labels[10] == "k" and cfg.num_labels == 11
    assert cfg.num_frames == 16 and cfg.id2label[10] == "k"
    assert TimesformerConfig.from_hf_dict(cfg.to_hf_dict()) == cfg


def test_transformers_accepts_our_config_dict():
    from transformers import TimesformerConfig as HFConfig

    cfg = TimesformerConfig(num_frames=4, labels=("walk", "run"), sampling=Sampling(4, stride=2), domain="yards")
    hf = HFConfig(**cfg.to_hf_dict())
    assert hf.num_frames == 4 and hf.id2label == {0: "walk", 1: "run"} and hf.layer_norm_eps == 1e-6
    # our extra keys ride along untouched and come back
    assert TimesformerConfig.from_hf_dict(hf.to_dict()) == cfg


def test_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        TimesformerConfig().num_frames = 16  # type: ignore[misc]


@pytest.mark.parametrize("change, match", [
    ({"attention_type": "space_time"}, "attention_type"),
    ({"hidden_size": 100}, "not divisible"),
    ({"image_size": 200, "patch_size": 16}, "not a multiple"),
    ({"num_frames": 0}, "num_frames"),
    ({"labels": ()}, "labels"),
    ({"hidden_act": "swish2"}, "hidden_act"),
])
def test_invalid_values_raise_config_error(change, match):
    with pytest.raises(ConfigError, match=match):
        TimesformerConfig(**change)


def test_bad_hf_dicts():
    with pytest.raises(ConfigError, match="model_type"):
        TimesformerConfig.from_hf_dict({"model_type": "vit"})
    with pytest.raises(ConfigError, match="without gaps"):
        TimesformerConfig.from_hf_dict({"id2label": {"0": "a", "2": "c"}})
    assert TimesformerConfig.from_hf_dict({"num_labels": 3}).labels == ("LABEL_0", "LABEL_1", "LABEL_2")


def test_keymap_round_trip_and_detection():
    hf_keys = ["timesformer.embeddings.cls_token", "timesformer.embeddings.patch_embeddings.projection.weight",
               "timesformer.encoder.layer.11.temporal_attention.output.dense.bias", "classifier.weight"]
    native = to_native(dict.fromkeys(hf_keys, 0), "hf")
    assert list(native) == ["cls_token", "patch_embed.proj.weight", "blocks.11.temporal_attn.proj.bias", "head.weight"]
    assert list(native_to_hf(native)) == hf_keys
    assert detect_format(hf_keys) == "hf"
    assert detect_format(["module.model.cls_token", "module.model.patch_embed.proj.weight"]) == "original"
    with pytest.raises(CheckpointError, match="unknown checkpoint layout"):
        detect_format(["foo"])


def test_model_imports_neither_streamer_nor_zmq():
    """Layers import downwards only: the model package, the demo's recipe and renderer included."""
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys, model, model.checkpoint, model.views, model.finetune.cli, model.finetune.run, "
            "model.demo.dataset, model.demo.heldout.__main__, model.demo.render.__main__; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('streamer', 'zmq')))")
    done = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"

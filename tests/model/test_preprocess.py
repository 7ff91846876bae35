"""Preprocessing against transformers' VideoMAE processor (PIL backend) on real frames of bikes.mp4.

Measured on 8 frames (640x272): the CPU path (uint8 antialiased resize) differs from PIL by exactly one
uint8 level (1/255/0.225 = 0.0174 after normalization) on 0.014% of values with shortest-edge resize
and 0.2% with an exact-size resize, and is equal elsewhere (< 1e-5). PIL resizes in fixed point with its
own rounding; torch's kernel rounds differently on a few ties. The float path (used on CUDA: resize in
float, round to uint8 levels) is off by one level on 7-9% of values, never by more.
"""

from __future__ import annotations

import dataclasses
import json

import feeds
import numpy as np
import pytest
import torch

from model import PreprocessConfig, Preprocessor, load_model
from model.errors import ConfigError

LEVEL = 1 / 255 / 0.225  # one uint8 step after normalization
CHECKPOINT_STYLE = {  # facebook/timesformer-base-finetuned-k400's preprocessor_config.json values
    "do_resize": True, "size": {"shortest_edge": 224}, "do_center_crop": True,
    "crop_size": {"height": 224, "width": 224}, "do_rescale": True, "rescale_factor": 1 / 255,
    "do_normalize": True, "image_mean": [0.45, 0.45, 0.45], "image_std": [0.225, 0.225, 0.225], "resample": 2,
    "image_processor_type": "VideoMAEImageProcessor",
}
EXACT_SIZE = {**CHECKPOINT_STYLE, "size": {"height": 160, "width": 200}, "do_center_crop": False}


@pytest.fixture(scope="module")
def bikes_frames(bikes_mp4):
    frames = feeds.read_frames(bikes_mp4, limit=8)
    assert len(frames) == 8, f"could not read 8 frames from {bikes_mp4}"
    return frames  # BGR uint8 (272, 640, 3)


def _reference(frames_bgr, hf_dict):
    from transformers.models.videomae.image_processing_pil_videomae import VideoMAEImageProcessorPil

    processor = VideoMAEImageProcessorPil(**{k: v for k, v in hf_dict.items() if k != "image_processor_type"})
    rgb = [np.ascontiguousarray(f[:, :, ::-1]) for f in frames_bgr]
    return processor(rgb, return_tensors="pt")["pixel_values"][0]  # (T, 3, h, w)


def _ours(frames_bgr, hf_dict, uint8_resize=True):
    pre = Preprocessor(PreprocessConfig.from_hf_dict(hf_dict), device="cpu", input_order="BGR")
    pre.uint8_resize = uint8_resize
    return torch.stack([pre(f) for f in frames_bgr])


@pytest.mark.parametrize("hf_dict, max_share", [(CHECKPOINT_STYLE, 0.001), (EXACT_SIZE, 0.005)],
                         ids=["shortest-edge-crop", "exact-size"])
def test_matches_transformers_processor_on_bikes(bikes_frames, hf_dict, max_share):
    expected = _reference(bikes_frames, hf_dict)
    got = _ours(bikes_frames, hf_dict)
    assert got.shape == expected.shape and got.dtype == torch.float32
    diff = (got - expected).abs()
    assert diff.max().item() <= LEVEL + 1e-5  # never more than one uint8 level
    assert (diff > 1e-3).float().mean().item() <= max_share  # and that on very few values


def test_float_path_used_on_gpus_is_within_one_level(bikes_frames):
    expected = _reference(bikes_frames, CHECKPOINT_STYLE)
    diff = (_ours(bikes_frames, CHECKPOINT_STYLE, uint8_resize=False) - expected).abs()
    assert diff.max().item() <= LEVEL + 1e-5
    assert (diff > 1e-3).float().mean().item() <= 0.15


def test_input_order_is_explicit(bikes_frames):
    cfg = PreprocessConfig.from_hf_dict(CHECKPOINT_STYLE)
    frame = bikes_frames[0]
    from_bgr = Preprocessor(cfg, input_order="BGR")(frame)
    from_rgb = Preprocessor(cfg, input_order="RGB")(np.ascontiguousarray(frame[:, :, ::-1]))
    assert torch.equal(from_bgr, from_rgb)
    assert not torch.equal(from_bgr, Preprocessor(cfg, input_order="RGB")(frame))
    with pytest.raises(ConfigError, match="input_order"):
        Preprocessor(cfg, input_order="bgr")


def test_checkpoint_values_not_class_defaults(caplog):
    cfg = PreprocessConfig.from_hf_dict(CHECKPOINT_STYLE)
    assert cfg.mean == (0.45, 0.45, 0.45) and cfg.std == (0.225, 0.225, 0.225)
    assert cfg.shortest_edge == 224 and cfg.crop_size == (224, 224) and cfg.size is None
    assert PreprocessConfig.from_hf_dict(cfg.to_hf_dict()) == cfg
    no_stats = {k: v for k, v in CHECKPOINT_STYLE.items() if k not in ("image_mean", "image_std")}
    with caplog.at_level("WARNING", logger="model.preprocess"):
        assert PreprocessConfig.from_hf_dict(no_stats).mean == (0.45, 0.45, 0.45)
    assert "no image_mean/image_std" in caplog.text
    exact = PreprocessConfig.from_hf_dict(EXACT_SIZE)
    assert exact.size == (160, 200) and exact.crop_size is None and exact.output_size(272, 640) == (160, 200)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.mean = (0.5, 0.5, 0.5)  # type: ignore[misc]


def test_bad_frames_and_configs():
    pre = Preprocessor(PreprocessConfig())
    for bad in (np.zeros((8, 8, 3), np.float32), np.zeros((8, 8), np.uint8), np.zeros((8, 8, 4), np.uint8)):
        with pytest.raises(ValueError, match="uint8 H x W x 3"):
            pre(bad)
    with pytest.raises(ConfigError, match="not both"):
        PreprocessConfig(shortest_edge=224, size=(224, 224))
    with pytest.raises(ConfigError, match="size"):
        PreprocessConfig.from_hf_dict({"size": {"longest_edge": 3}})


def test_small_frames_are_padded_by_the_crop():
    out = Preprocessor(PreprocessConfig(shortest_edge=None, crop_size=(6, 6)), input_order="RGB")(
        np.full((4, 4, 3), 255, np.uint8))
    assert out.shape == (3, 6, 6)
    assert out[:, 1:5, 1:5].allclose(torch.full((3, 4, 4), (1 - 0.45) / 0.225))


def test_load_model_reads_preprocessor_config(tmp_path, hf):
    folder = hf.save(hf.make(), tmp_path)
    (folder / "preprocessor_config.json").write_text(json.dumps(EXACT_SIZE))
    assert load_model(folder).preprocess == PreprocessConfig.from_hf_dict(EXACT_SIZE)

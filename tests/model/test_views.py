"""Symmetric views (model/views.py): the group a checkpoint's label_symmetries declare, and the
averaged model's exact equivariance: mirroring the clip mirrors the label."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from model import load_model, save_pretrained
from model.config import TimesformerConfig
from model.errors import CheckpointError, ConfigError
from model.loaded import LoadedModel
from model.preprocess import PreprocessConfig
from model.timesformer import TimeSformer
from model.views import SymmetricViews, symmetry_group, with_views

LABELS = ("left", "right", "up", "down", "cw", "ccw", "still")
H = {"left": "right", "right": "left", "cw": "ccw", "ccw": "cw"}
V = {"up": "down", "down": "up", "cw": "ccw", "ccw": "cw"}
T = {"left": "up", "up": "left", "right": "down", "down": "right", "cw": "ccw", "ccw": "cw"}
SYMMETRIES = (("hflip", tuple(H.items())), ("vflip", tuple(V.items())), ("transpose", tuple(T.items())))


def net(symmetries=SYMMETRIES) -> TimeSformer:
    torch.manual_seed(0)
    config = TimesformerConfig(image_size=32, patch_size=8, num_frames=4, hidden_size=32, num_hidden_layers=2,
                               num_attention_heads=4, intermediate_size=64, labels=LABELS,
                               label_symmetries=symmetries)
    return TimeSformer(config).eval()


def test_mirrors_and_transpose_generate_the_eight_symmetries_of_the_square():
    group = symmetry_group(dict((k, dict(v)) for k, v in SYMMETRIES), LABELS)
    assert len(group) == 8 and group[0] == ((), tuple(range(len(LABELS))))
    rot90 = [perm for ops, perm in group if ops in (("transpose", "hflip"), ("hflip", "transpose"))]
    # a quarter turn sends a move to a move a quarter turn on and keeps the rotation's sense
    assert rot90 and all(LABELS[p[LABELS.index("cw")]] == "cw" for p in rot90)
    assert len(symmetry_group({"hflip": H}, LABELS)) == 2


@pytest.mark.parametrize("size, transform, mapping", [
    ((32, 32), lambda x: x.flip(-1), H),
    ((32, 24), lambda x: x.transpose(-1, -2), T),  # a transposed 32x24 view is 24x32: run as its own batch
], ids=["square-hflip", "non-square-transpose"])
def test_averaged_views_are_exactly_equivariant(size, transform, mapping):
    """A random network is not; averaged over the group it is (up to float rounding)."""
    model = net()
    views = SymmetricViews(model, model.config.symmetries, LABELS)
    x = torch.randn(2, 4, 3, *size)
    perm = [LABELS.index(mapping.get(name, name)) for name in LABELS]
    with torch.no_grad():
        plain, plain_moved = model(x).log_softmax(-1), model(transform(x)).log_softmax(-1)
        avg, avg_moved = views(x), views(transform(x))
    assert not torch.allclose(plain_moved[:, perm], plain, atol=1e-3)
    torch.testing.assert_close(avg_moved[:, perm], avg, atol=1e-5, rtol=1e-5)
    assert avg.shape == (2, len(LABELS)) and bool((avg <= 0).all())


def loaded(network: TimeSformer) -> LoadedModel:
    return LoadedModel(network=network, config=network.config, preprocess=PreprocessConfig.for_image_size(32),
                       name="tiny", license="unknown", precision="fp32", input_dtype=torch.float32)


def test_views_replace_the_network_and_keep_the_rest():
    model = loaded(net())
    views = with_views(model, "auto")
    assert isinstance(views.network, SymmetricViews) and views.network.net is model.network
    assert views.views == 8 and views.info()["views"] == 8 and model.views == 1
    assert dataclasses.replace(views, network=model.network, views=1) == model  # nothing else changed
    assert with_views(model, "single") is model


def test_symmetric_views_need_declared_symmetries():
    plain = loaded(net(symmetries=()))
    assert with_views(plain, "auto") is plain
    with pytest.raises(ConfigError, match="tiny declares no label_symmetries"):
        with_views(plain, "symmetric")


def test_label_symmetries_round_trip_through_config_json(tmp_path):
    model = net()
    save_pretrained(model, tmp_path / "ckpt")
    written = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert written["label_symmetries"]["hflip"]["left"] == "right"
    loaded = load_model(tmp_path / "ckpt")
    assert loaded.config.label_symmetries == model.config.label_symmetries


@pytest.mark.parametrize("bad, message", [
    ({"rotate": {"left": "right"}}, "not one of hflip"),
    ({"hflip": {"left": "sideways"}}, "'sideways' is not one of the labels"),
    ({"hflip": ["left", "right"]}, "must map a transform"),
])
def test_bad_label_symmetries_are_refused_with_the_reason(bad, message):
    d = dataclasses.replace(net().config, label_symmetries=()).to_hf_dict()
    d["label_symmetries"] = bad
    with pytest.raises(ConfigError, match=message):
        TimesformerConfig.from_hf_dict(d)


def test_a_map_that_is_not_a_permutation_is_refused():
    with pytest.raises(CheckpointError, match="two labels map to the same label"):
        symmetry_group({"hflip": {"left": "right"}}, LABELS)  # right stays right: both become right


def test_inconsistent_symmetries_are_refused():
    """A flip's map that does not undo itself would give one view two label maps."""
    with pytest.raises(CheckpointError, match="inconsistent"):
        symmetry_group({"hflip": {"left": "right", "right": "up", "up": "left"}}, LABELS)

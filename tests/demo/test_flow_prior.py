"""The demo model's fixed motion front end (tools/flow_prior.py), before any training.

A bar drawn at the model's input size turns, moves, grows or stays; the cls token's front-end
channels after block 2 must read the right direction, flip under time reversal, survive int8, and
not depend on the weights that training is allowed to change.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools"))

import flow_prior  # noqa: E402
import train_demo  # noqa: E402
from bars import KINDS, bar_clip  # noqa: E402


def demo_model(seed: int = 0):
    torch.manual_seed(seed)
    args = train_demo.parse_args(["--hidden", "96", "--mlp", "384", "--layers", "4", "--heads", "4"])
    model = train_demo.build_model(args)
    flow_prior.flow_prior_init(model)
    return model.eval()


def features(model) -> dict[str, dict[str, float]]:
    return {kind: {k: float(v) for k, v in flow_prior.front_end_features(model, bar_clip(kind)).items()}
            for kind in KINDS}


def assert_reads_the_motion(f: dict[str, dict[str, float]]) -> None:
    assert f["cw"]["turn"] > 0.3 and f["ccw"]["turn"] < -0.3, (f["cw"], f["ccw"])
    assert f["cw"]["curl"] > 0.3 and f["ccw"]["curl"] < -0.3, (f["cw"], f["ccw"])
    for kind in ("right", "down", "grow", "still"):  # no turn without rotation
        assert abs(f[kind]["turn"]) < 0.5 * f["cw"]["turn"], (kind, f[kind])
    assert f["right"]["flow_x"] > 1.0 and abs(f["right"]["flow_y"]) < 0.5 * f["right"]["flow_x"], f["right"]
    assert f["down"]["flow_y"] > 1.0, f["down"]
    assert f["grow"]["div"] > 3 * abs(f["grow"]["curl"]) - 0.5 and f["grow"]["div"] > 0.5, f["grow"]
    assert f["still"]["energy"] == pytest.approx(0.0, abs=1e-3) and f["cw"]["energy"] > 0.1


def test_front_end_reads_turn_flow_and_growth_with_the_right_signs():
    assert_reads_the_motion(features(demo_model()))


def test_time_reversal_flips_every_direction():
    model = demo_model()
    for kind in ("cw", "right", "down", "grow"):
        clip = bar_clip(kind)
        fwd = flow_prior.front_end_features(model, clip)
        back = flow_prior.front_end_features(model, clip.flip(1))
        key = {"cw": "turn", "right": "flow_x", "down": "flow_y", "grow": "div"}[kind]
        assert float(fwd[key]) * float(back[key]) < 0, (kind, float(fwd[key]), float(back[key]))


def test_front_end_survives_int8():
    from model.quantize import quantize

    model = copy.deepcopy(demo_model())
    assert quantize(model, "int8-bnb") > 0  # LLM.int8(), as the demo docs measured
    assert_reads_the_motion(features(model))


def test_training_cannot_move_the_front_end():
    """Two models with different random trainable weights but the same fixed front end read the same
    motion: what flow_prior_masks keeps fixed is all the front end needs."""
    a, b = demo_model(0), demo_model(1)
    masks = flow_prior.flow_prior_masks(a)
    fixed_a = {n: p[masks[n] == 0] for n, p in a.named_parameters()}
    fixed_b = {n: p[masks[n] == 0] for n, p in b.named_parameters()}
    assert all(torch.equal(fixed_a[n], fixed_b[n]) for n in fixed_a)  # the front end itself is not random
    trainable = sum(int(m.sum()) for m in masks.values())
    assert trainable > 0.5 * sum(p.numel() for p in a.parameters())
    fa, fb = features(a), features(b)
    assert_reads_the_motion(fb)
    for kind, key in (("cw", "turn"), ("ccw", "turn"), ("right", "flow_x"), ("down", "flow_y"), ("grow", "div")):
        assert fa[kind][key] == pytest.approx(fb[kind][key], rel=0.25), (kind, key)


def test_prior_refuses_a_geometry_it_does_not_fit():
    args = train_demo.parse_args(["--hidden", "48", "--mlp", "192", "--layers", "4", "--heads", "4"])
    with pytest.raises(ValueError, match="flow prior"):
        flow_prior.flow_prior_init(train_demo.build_model(args))

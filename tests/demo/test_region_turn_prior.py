"""The 8-pixel-region turn detector (``--prior motion-demo-regions`` on ``scratch:small-wide``), before any
training.

One orientation per 8-pixel quadrant of each patch, from grey gradients at 36 points a patch, so a
shape that fits in one 16-pixel patch keeps its turn (model/demo/turn_prior.py, REGIONS). Shapes drawn
at the model's input size, large and small, turn both ways: the cls token's mean turn after block 2
must have the rotation's sign, flip under time reversal and survive int8; everything the priors set
must be kept fixed by the masks; the prior must refuse the 128-wide network.
"""

from __future__ import annotations

import copy

import pytest
import torch

from bars import KINDS, bar_clip
from model.config import Sampling
from model.demo import turn_prior
from model.demo.circuits import corner_windows
from model.demo.motion_prior import motion_prior_units
from model.demo.render import CLASSES
from model.errors import ConfigError
from model.finetune import bases
from model.finetune.settings import Freeze

#: shapes at the 64-px input: the tests' bar and a triangle, and small ones inside one or two 16-px patches
SHAPES = {
    "bar 30x12": {},
    "triangle 26x16": dict(box=(26.0, 16.0), triangle=True),
    "bar 11x5 in one patch": dict(box=(11.0, 5.0), centre=(24.0, 24.0)),
    "bar 12x5": dict(box=(12.0, 5.0), centre=(40.0, 41.0)),
    "triangle 12x8": dict(box=(12.0, 8.0), centre=(24.0, 40.0), triangle=True),
}
LARGE = ("bar 30x12", "triangle 26x16")


def start(seed: int = 0, prior: str | None = "motion-demo-regions", base: str = "scratch:small-wide"):
    """A new network as ``python -m model.finetune --base scratch:small-wide --prior motion-demo-regions``
    builds it: seeded, then the fixed front end; with the turn channel's layout and the masks."""
    torch.manual_seed(seed)
    begin = bases.start(base, CLASSES, Sampling(8, span_s=1.28), Freeze(), prior, "synthetic-shapes")
    model = begin.model.eval()
    return model, turn_prior.layout_of(model, motion_prior_units(model), turn_prior.REGIONS), begin.masks


@pytest.fixture(scope="module")
def regions():
    return start()


def turns(model, layout, shape: dict) -> dict[str, float]:
    return {kind: float(turn_prior.front_end_turn(model, layout, bar_clip(kind, **shape))[0]) for kind in KINDS}


def assert_signs(t: dict[str, float], name: str) -> None:
    assert t["cw"] > 0.02 and t["ccw"] < -0.02, (name, t)
    assert abs(t["still"]) < 0.1 * min(t["cw"], -t["ccw"]), (name, t)  # int8's rounding, 0 in fp32


def assert_moves_small(t: dict[str, float], name: str) -> None:
    """Moves and scaling of a large shape turn few edges (measured: at most 0.28 of the rotation's turn).
    Small shapes are not held to this: a shape within two or three 8-px regions that moves 2.5 px a frame
    shifts edges between regions, and each region's sum turns as they enter (measured up to 1.2x the
    rotation's turn for the 11x5 bar); telling a move from a rotation is the trained layers' job."""
    for kind in ("right", "down", "grow"):
        assert abs(t[kind]) < 0.35 * min(t["cw"], -t["ccw"]), (name, kind, t)


def test_region_windows_tile_the_region_filter():
    one = corner_windows(8, 0.12, 4)
    four = corner_windows(16, 0.12, 4, regions=2)
    for whole, region in zip(four, one):
        assert whole.shape == (36, 16, 16)
        for i in range(2):
            for j in range(2):
                block = whole[(2 * i + j) * 9:(2 * i + j + 1) * 9]
                torch.testing.assert_close(block[:, 8 * i:8 * i + 8, 8 * j:8 * j + 8], region, rtol=0, atol=0)
                assert float(block.abs().sum()) == pytest.approx(float(region.abs().sum()))  # nothing outside


def test_turn_has_the_rotation_sign_on_large_and_small_shapes(regions):
    model, layout, _ = regions
    for name, shape in SHAPES.items():
        t = turns(model, layout, shape)
        assert_signs(t, name)
        if name in LARGE:
            assert_moves_small(t, name)


def test_time_reversal_flips_the_turn(regions):
    model, layout, _ = regions
    for name in ("bar 30x12", "triangle 12x8"):
        for kind in ("cw", "ccw"):
            clip = bar_clip(kind, **SHAPES[name])
            forward = float(turn_prior.front_end_turn(model, layout, clip)[0])
            backward = float(turn_prior.front_end_turn(model, layout, clip.flip(1))[0])
            assert forward * backward < 0 and abs(backward) == pytest.approx(abs(forward), rel=0.3), \
                (name, kind, forward, backward)


def test_turn_survives_int8(regions):
    from model.quantize import quantize

    model, layout, _ = regions
    model = copy.deepcopy(model)
    assert quantize(model, "int8-bnb") > 0  # every layer but the head, GELU pairs included
    for name, shape in SHAPES.items():
        assert_signs(turns(model, layout, shape), name)


def test_everything_the_priors_set_is_kept_fixed():
    """Built with and without the prior from one seed: every weight the front end changed has mask 0, but
    for block 1's last spatial head, which the motion prior sets to hand the cls token the mean motion
    energy and leaves trainable (a start, as in --prior motion-demo)."""
    model, _, masks = start(0)
    fresh, _, _ = start(0, prior=None)
    dim = model.config.hidden_size
    energy = torch.arange(dim - dim // model.config.num_attention_heads, dim)  # the last head width
    readout = {"blocks.1.attn.qkv.weight": 2 * dim + energy, "blocks.1.attn.proj.weight": energy}  # rows
    fixed = 0
    for (name, p), q in zip(model.named_parameters(), fresh.parameters()):
        loose = (p != q) & (masks[name] != 0)
        if name in readout:
            loose[readout[name]] = False
        assert not loose.any(), f"{name}: {int(loose.sum())} weights set by the prior are trainable"
        fixed += int((masks[name] == 0).sum())
    assert fixed > 600_000
    trainable = sum(int(m.sum()) for m in masks.values())
    assert trainable > 0.5 * sum(p.numel() for p in model.parameters())


def test_trainable_weights_do_not_carry_the_turn(regions):
    """Other random trainable weights, and trained-size changes to them, leave the turn's sign."""
    a, layout, masks = regions
    b, _, _ = start(1)
    with torch.no_grad():
        for name, p in b.named_parameters():
            p.add_(0.02 * torch.randn_like(p) * masks[name])
    for name in LARGE:
        ta, tb = turns(a, layout, SHAPES[name]), turns(b, layout, SHAPES[name])
        assert_signs(tb, name)
        for kind in ("cw", "ccw"):
            assert tb[kind] == pytest.approx(ta[kind], rel=0.35), (name, kind, ta, tb)


@torch.no_grad()
def motion_energy(model, clip: torch.Tensor) -> float:
    """Mean |current minus previous frame| the motion prior writes into the patches' last head width in block 0."""
    b, t = clip.shape[:2]
    x, h, w = model.patch_embed(clip.flatten(0, 1))
    n, d = h * w, x.shape[-1]
    patches = (x + model.pos_embed[:, 1:]).view(b, t, n, d) + model.time_embed[:, :t].unsqueeze(2)
    cls = (model.cls_token + model.pos_embed[:, :1]).expand(b, 1, d)
    _, patches = model.blocks[0].forward_divided(cls, patches)
    return float(patches[..., -(d // model.config.num_attention_heads):].abs().mean())


def test_motion_prior_works_at_hidden_192(regions):
    """The motion prior's frame difference energy (block 0): clearly above zero for every motion, zero
    for a still clip, in the 192-wide token (measured 0.03-0.05) as in the 128-wide one (0.01-0.03)."""
    model, _, _ = regions
    energy = {kind: motion_energy(model, bar_clip(kind)) for kind in KINDS}
    for kind in ("cw", "ccw", "right", "down", "grow"):
        assert energy[kind] > 0.01 and energy[kind] > 20 * energy["still"], (kind, energy)


def test_prior_fits_small_wide_and_refuses_small():
    model, layout, _ = start()
    assert model.config.hidden_size == 192 and len(layout.grads) == 72 and len(layout.orient) == 8
    assert int(layout.protected[-1]) < 192 - 2 * 16  # clear of the motion prior's last two head widths
    with pytest.raises(ConfigError, match="--prior motion-demo-regions does not fit") as caught:
        start(base="scratch:small")
    assert "\n" not in str(caught.value) and "scratch:small-wide" in str(caught.value)

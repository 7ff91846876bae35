"""A fixed "which way do the edges turn" detector added to the motion prior: weights only.

The motion prior (:mod:`model.demo.motion_prior`) gives the network frame differences and "is a
feature appearing or fading", enough for moves, grow/shrink and still. Rotation direction is
not a local appearing/fading pattern: it is a turn of edge orientation, a product of a product
(orientation is quadratic in the gradients, its turn a cross product of two orientations), which the
network does not find by itself on CPU in minutes. :func:`turn_prior_init` adds, on top of the
motion prior and in channels of their own:

* the patch embedding samples, per colour channel, x and y gradients (derivative of a Gaussian
  window, sigma ~3 px at 64 px input) at the 3x3 inner corners of a 4x4 grid on each patch;
* block 0's MLP turns them into the patch's edge orientation in double-angle form
  ``(|gx| - |gy|, ~sign(gx gy))`` summed over points and colours (``orient``), so edges of either
  polarity and any colour add up;
* block 1's temporal attention copies the previous frame's orientation (``orient_prev``) and
  block 1's MLP takes the cross product ``orient_prev x orient`` (``turn``: > 0 when the edges turn
  clockwise on screen, about 0 for a move or a scaling);
* block 2's last spatial head adds every frame's mean turn to its tokens, the cls token included.

Measured before any training (docs/DEMO_MODEL.md): the mean turn's sign is the rotation's direction
on nearly every documented rotation clip, in fp32 and int8. Everything else is trained.

A :class:`Design` says where orientation is summed: :data:`PATCH` (the shipped detector, above) or
:data:`REGIONS`, one orientation per 8-pixel quadrant of each patch from grey gradients at 3x3 points
a quadrant (36 a patch), whose turns block 1's MLP adds: small shapes that fit in one patch, whose
edges cancel in a patch's sum, keep their turn (docs/DEMO_MODEL.md, "What the detector misses").
Its 72 gradient channels need a 192-wide token (``scratch:small-wide``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from model.demo.circuits import (Units, add_turn_stage, cls_after, corner_windows, fix_last_head_masks,
                                 protect_channels, protect_masks, uniform_head)
from model.timesformer import TimeSformer

COLOURS = 3
K_ORIENT = 10.0  # orientation GELU pairs: |z|-like range (int8-safe)
K_TURN = 0.5  # turn GELU pairs: z^2-like range, so the octagon of squares is exactly the cross product
TURN_GAIN, MEAN_GAIN = 4.0, 4.0


@dataclass(frozen=True)
class Design:
    """Where the detector sums orientation and how it samples gradients.

    Each patch is cut into ``regions`` x ``regions`` square regions; gradients are sampled at the
    ``grid-1`` x ``grid-1`` inner corners of a ``grid`` x ``grid`` cut of each region (Gaussian window of
    ``sigma`` region widths, cut by the region), per colour channel or, with ``grey``, of the sum of the
    colour channels (one filter applied to all three); block 0's MLP forms one orientation per region,
    block 1's MLP adds the regions' turns into one channel.
    """

    name: str
    regions: int = 1
    grid: int = 4
    sigma: float = 0.12
    grey: bool = False
    grad_gain: float = 4.0  # gradient channels: intensity change per grid spacing, times this
    orient_gain: float = 0.25
    anchor: float = 12.0

    points = property(lambda self: self.regions**2 * (self.grid - 1) ** 2)  # per patch
    per_region = property(lambda self: (self.grid - 1) ** 2)
    colours = property(lambda self: 1 if self.grey else COLOURS)
    grads = property(lambda self: 2 * self.points * self.colours)  # gradient channels
    orients = property(lambda self: 2 * self.regions**2)  # orientation channels (double angle, per region)
    units_0 = property(lambda self: 8 * self.points * self.colours)  # block 0's MLP: orientation
    units_1 = property(lambda self: 16 * self.regions**2)  # block 1's MLP: turn


#: the shipped model's: per colour, 3x3 points, one orientation per 16-px patch
PATCH = Design("patch")
#: 8-px regions (4 a patch), grey gradients at 3x3 points each: 72 gradient channels, for a 192-wide token.
#: Gradients at a quarter of the shipped gain: a token's LayerNorm scale then stays set by the anchors
#: rather than by its own edges, so the regions' turns add up in proportion (at the shipped gain the
#: sign was right on 0.87 of studio's rotation windows, 0.92 of sdf's and 0.95 of the training look's;
#: at 1.0 on 0.92, 0.96, 1.00; 0.25-0.75 within two windows of that; docs/DEMO_MODEL.md)
REGIONS = Design("regions", regions=2, grey=True, grad_gain=1.0)


@dataclass(frozen=True)
class Layout:
    """The turn prior's channels, after the motion prior's time code and zero-level channel."""

    frames: int
    dim: int
    head_dim: int
    design: Design = PATCH

    def _at(self, i: int, n: int = 1) -> torch.Tensor:
        return torch.arange(self.frames + 1 + i, self.frames + 1 + i + n)

    ref = property(lambda self: self.frames)  # the motion prior's always-zero channel
    # (colour, point, x|y), x before y; points region by region
    grads = property(lambda self: self._at(0, self.design.grads))
    orient = property(lambda self: tuple(self._at(self.design.grads, self.design.orients).tolist()))
    orient_prev = property(lambda self: tuple(self._at(self.design.grads + self.design.orients,
                                                       self.design.orients).tolist()))
    turn = property(lambda self: int(self._at(self.design.grads + 2 * self.design.orients)))
    # orient, orient_prev, turn
    features = property(lambda self: self._at(self.design.grads, 2 * self.design.orients + 1))
    anchor = property(lambda self: tuple(self._at(self.design.grads + 2 * self.design.orients + 1, 2).tolist()))
    reserved = property(lambda self: self._at(0, self.design.grads + 2 * self.design.orients + 3))
    # kept clean through block 2: the time code and the zero level too (the fixed heads key on them)
    protected = property(lambda self: torch.arange(0, self.frames + 1 + len(self.reserved)))

    def grad(self, colour: int, point: int, axis: int) -> int:
        return int(self.grads[(colour * self.design.points + point) * 2 + axis])


def layout_of(model: TimeSformer, motion_units: int, design: Design = PATCH) -> Layout:
    cfg = model.config
    lay = Layout(cfg.num_frames, cfg.hidden_size, cfg.hidden_size // cfg.num_attention_heads, design)
    free = lay.dim - 2 * lay.head_dim  # the motion prior keeps the last two head widths
    if cfg.attention_type != "divided_space_time" or cfg.num_hidden_layers < 3 or cfg.num_attention_heads < 2:
        raise ValueError("the turn prior needs divided attention, >= 3 layers and >= 2 heads")
    if int(lay.reserved[-1]) + 16 >= free:
        raise ValueError(f"the turn prior does not fit: {len(lay.reserved)} channels after the time code, "
                         f"{free - lay.frames - 1} free in a token of {lay.dim} (use a wider model)")
    if design.orients > lay.head_dim or cfg.num_frames > lay.head_dim:
        raise ValueError(f"the turn prior's previous-frame head copies {design.orients} channels and keys on "
                         f"{cfg.num_frames} frames: a head of width {lay.head_dim} is too narrow")
    need = max(motion_units + design.units_0, design.units_1) + 32
    if cfg.intermediate_size < need:
        raise ValueError(f"the turn prior needs an MLP of > {need} units")
    if model.config.patch_size % design.regions:
        raise ValueError(f"a {model.config.patch_size}-pixel patch does not split into {design.regions} regions")
    return lay


def _filters(p: int, design: Design) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel weights ``(points, p, p)``: d/dx and d/dy of a Gaussian-weighted mean at each point."""
    _, dx, dy = corner_windows(p, design.sigma, design.grid, design.regions)
    step = p / design.regions / design.grid
    return (dx * step * design.grad_gain).float(), (dy * step * design.grad_gain).float()


@torch.no_grad()
def turn_prior_init(model: TimeSformer, motion_units: int, design: Design = PATCH) -> Layout:
    """Add the turn detector to a model whose motion prior is already set (its MLP units ``[0, motion_units)``)."""
    lay = layout_of(model, motion_units, design)
    dim, hd, t, p = lay.dim, lay.head_dim, lay.frames, model.config.patch_size
    heads = model.config.num_attention_heads
    ref, res = lay.ref, lay.reserved
    emb = model.patch_embed.proj
    emb.weight[res] = 0.0
    emb.bias[res] = 0.0
    gx, gy = _filters(p, design)
    for c in range(design.colours):
        for k in range(design.points):
            reads = list(range(COLOURS)) if design.grey else [c]  # grey: the same filter on every colour
            emb.weight[lay.grad(c, k, 0), reads] = gx[k]
            emb.weight[lay.grad(c, k, 1), reads] = gy[k]
    model.pos_embed[..., res] = 0.0
    model.cls_token[..., res] = 0.0
    if design.anchor:  # every token's LayerNorm std held near one value, so tokens' features add up alike
        emb.bias[lay.anchor[0]], emb.bias[lay.anchor[1]] = design.anchor, -design.anchor
        model.cls_token[0, 0, lay.anchor[0]], model.cls_token[0, 0, lay.anchor[1]] = design.anchor, -design.anchor
    # nothing trained writes the protected channels in blocks 0-2; their LayerNorm gains stay 1
    protect_channels(model, lay.protected)
    # block 0's MLP: orientation per region, after the motion prior's units
    b0 = model.blocks[0]
    units = Units(b0.mlp.fc1, b0.mlp.fc2, ref)
    units.next = motion_units
    for c in range(design.colours):
        for k in range(design.points):
            a, b = lay.orient[2 * (k // design.per_region):][:2]
            gxk, gyk = {lay.grad(c, k, 0): 1.0}, {lay.grad(c, k, 1): 1.0}
            units.even(gxk, K_ORIENT, {a: design.orient_gain})
            units.even(gyk, K_ORIENT, {a: -design.orient_gain})
            units.product(gxk, gyk, K_ORIENT, {b: design.orient_gain})
    if units.next != motion_units + design.units_0:
        raise RuntimeError("turn prior: orientation units miscounted")
    # block 1: the previous frame's orientations (last temporal head), then the turn (MLP)
    if add_turn_stage(model.blocks[1], heads, t, ref, lay.orient, lay.orient_prev, lay.turn, K_TURN,
                      TURN_GAIN) != design.units_1:
        raise RuntimeError("turn prior: turn units miscounted")
    # block 2's last spatial head: every token (the cls too) gets its frame's mean turn
    uniform_head(model.blocks[2].attn, heads, dim, hd, torch.tensor([lay.turn]), ref, MEAN_GAIN)
    return lay


def turn_prior_masks(model: TimeSformer, motion_units: int, masks: dict[str, torch.Tensor],
                     design: Design = PATCH) -> dict[str, torch.Tensor]:
    """Zero (= keep fixed) what :func:`turn_prior_init` set, in ``masks`` (1 = trainable); returns them."""
    lay = layout_of(model, motion_units, design)
    res = lay.reserved
    for name in ("patch_embed.proj.weight", "patch_embed.proj.bias"):
        masks[name][res] = 0.0
    masks["pos_embed"][..., res] = 0.0
    masks["cls_token"][..., res] = 0.0
    protect_masks(masks, lay.protected)
    for block, rows in ((0, slice(motion_units, motion_units + design.units_0)), (1, slice(0, design.units_1))):
        masks[f"blocks.{block}.mlp.fc1.weight"][rows] = 0.0
        masks[f"blocks.{block}.mlp.fc1.bias"][rows] = 0.0
        masks[f"blocks.{block}.mlp.fc2.weight"][:, rows] = 0.0
    for prefix in ("blocks.1.temporal_attn", "blocks.2.attn"):  # the fixed last heads
        fix_last_head_masks(masks, prefix, model.config.num_attention_heads - 1, lay.head_dim, lay.dim)
    return masks


@torch.no_grad()
def front_end_turn(model: TimeSformer, lay: Layout, pixel_values: torch.Tensor) -> torch.Tensor:
    """The cls token's mean turn after block 2, per clip ``(B,)``: > 0 clockwise on screen."""
    return cls_after(model, pixel_values)[:, lay.turn]

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
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from model.demo.circuits import (Units, add_turn_stage, cls_after, corner_windows, fix_last_head_masks,
                                 protect_channels, protect_masks, uniform_head)
from model.timesformer import TimeSformer

GRID = 4  # gradients at the GRID-1 x GRID-1 inner corners of a GRID x GRID cut of each patch
POINTS = (GRID - 1) ** 2
COLOURS = 3
SIGMA = 0.12  # Gaussian window, in patch widths (1.9 px at patch 16)
GRAD_GAIN = 4.0  # gradient channels: intensity change per grid spacing, times this
K_ORIENT = 10.0  # orientation GELU pairs: |z|-like range (int8-safe)
K_TURN = 0.5  # turn GELU pairs: z^2-like range, so the octagon of squares is exactly the cross product
ORIENT_GAIN, TURN_GAIN, MEAN_GAIN = 0.25, 4.0, 4.0
ANCHOR = 12.0
UNITS_0 = 8 * POINTS * COLOURS  # orientation units in block 0's MLP (after the motion prior's)
UNITS_1 = 16  # turn units in block 1's MLP


@dataclass(frozen=True)
class Layout:
    """The turn prior's channels, after the motion prior's time code and zero-level channel."""

    frames: int
    dim: int
    head_dim: int

    def _at(self, i: int, n: int = 1) -> torch.Tensor:
        return torch.arange(self.frames + 1 + i, self.frames + 1 + i + n)

    ref = property(lambda self: self.frames)  # the motion prior's always-zero channel
    grads = property(lambda self: self._at(0, 2 * POINTS * COLOURS))  # (colour, point, x|y), x before y
    orient = property(lambda self: tuple(self._at(2 * POINTS * COLOURS, 2).tolist()))
    orient_prev = property(lambda self: tuple(self._at(2 * POINTS * COLOURS + 2, 2).tolist()))
    turn = property(lambda self: int(self._at(2 * POINTS * COLOURS + 4)))
    features = property(lambda self: self._at(2 * POINTS * COLOURS, 5))  # orient, orient_prev, turn
    anchor = property(lambda self: tuple(self._at(2 * POINTS * COLOURS + 5, 2).tolist()))  # +-ANCHOR
    reserved = property(lambda self: self._at(0, 2 * POINTS * COLOURS + 7))
    # kept clean through block 2: the time code and the zero level too (the fixed heads key on them)
    protected = property(lambda self: torch.arange(0, self.frames + 1 + 2 * POINTS * COLOURS + 7))

    def grad(self, colour: int, point: int, axis: int) -> int:
        return int(self.grads[(colour * POINTS + point) * 2 + axis])


def layout_of(model: TimeSformer, motion_units: int) -> Layout:
    cfg = model.config
    lay = Layout(cfg.num_frames, cfg.hidden_size, cfg.hidden_size // cfg.num_attention_heads)
    free = lay.dim - 2 * lay.head_dim  # the motion prior keeps the last two head widths
    if cfg.attention_type != "divided_space_time" or cfg.num_hidden_layers < 3 or cfg.num_attention_heads < 2:
        raise ValueError("the turn prior needs divided attention, >= 3 layers and >= 2 heads")
    if int(lay.reserved[-1]) + 16 >= free:
        raise ValueError(f"the turn prior does not fit: {len(lay.reserved)} channels after the time code, "
                         f"{free - lay.frames - 1} free in a token of {lay.dim} (use a wider model)")
    if cfg.intermediate_size < motion_units + UNITS_0 + 32:
        raise ValueError(f"the turn prior needs an MLP of > {motion_units + UNITS_0 + 32} units")
    return lay


def _filters(p: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel weights ``(POINTS, p, p)``: d/dx and d/dy of a Gaussian-weighted mean at each point."""
    _, dx, dy = corner_windows(p, SIGMA, GRID)
    step = p / GRID
    return (dx * step * GRAD_GAIN).float(), (dy * step * GRAD_GAIN).float()


@torch.no_grad()
def turn_prior_init(model: TimeSformer, motion_units: int) -> Layout:
    """Add the turn detector to a model whose motion prior is already set (its MLP units ``[0, motion_units)``)."""
    lay = layout_of(model, motion_units)
    dim, hd, t, p = lay.dim, lay.head_dim, lay.frames, model.config.patch_size
    heads = model.config.num_attention_heads
    ref, res = lay.ref, lay.reserved
    emb = model.patch_embed.proj
    emb.weight[res] = 0.0
    emb.bias[res] = 0.0
    gx, gy = _filters(p)
    for c in range(COLOURS):
        for k in range(POINTS):
            emb.weight[lay.grad(c, k, 0), c] = gx[k]
            emb.weight[lay.grad(c, k, 1), c] = gy[k]
    model.pos_embed[..., res] = 0.0
    model.cls_token[..., res] = 0.0
    if ANCHOR:  # every token's LayerNorm std held near one value, so tokens' features add up alike
        emb.bias[lay.anchor[0]], emb.bias[lay.anchor[1]] = ANCHOR, -ANCHOR
        model.cls_token[0, 0, lay.anchor[0]], model.cls_token[0, 0, lay.anchor[1]] = ANCHOR, -ANCHOR
    # nothing trained writes the protected channels in blocks 0-2; their LayerNorm gains stay 1
    protect_channels(model, lay.protected)
    # block 0's MLP: orientation, after the motion prior's units
    b0 = model.blocks[0]
    units = Units(b0.mlp.fc1, b0.mlp.fc2, ref)
    units.next = motion_units
    a, b = lay.orient
    for c in range(COLOURS):
        for k in range(POINTS):
            gxk, gyk = {lay.grad(c, k, 0): 1.0}, {lay.grad(c, k, 1): 1.0}
            units.even(gxk, K_ORIENT, {a: ORIENT_GAIN})
            units.even(gyk, K_ORIENT, {a: -ORIENT_GAIN})
            units.product(gxk, gyk, K_ORIENT, {b: ORIENT_GAIN})
    if units.next != motion_units + UNITS_0:
        raise RuntimeError("turn prior: orientation units miscounted")
    # block 1: the previous frame's orientation (last temporal head), then the turn (MLP)
    if add_turn_stage(model.blocks[1], heads, t, ref, lay.orient, lay.orient_prev, lay.turn, K_TURN,
                      TURN_GAIN) != UNITS_1:
        raise RuntimeError("turn prior: turn units miscounted")
    # block 2's last spatial head: every token (the cls too) gets its frame's mean turn
    uniform_head(model.blocks[2].attn, heads, dim, hd, torch.tensor([lay.turn]), ref, MEAN_GAIN)
    return lay


def turn_prior_masks(model: TimeSformer, motion_units: int, masks: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Zero (= keep fixed) what :func:`turn_prior_init` set, in ``masks`` (1 = trainable); returns them."""
    lay = layout_of(model, motion_units)
    res = lay.reserved
    for name in ("patch_embed.proj.weight", "patch_embed.proj.bias"):
        masks[name][res] = 0.0
    masks["pos_embed"][..., res] = 0.0
    masks["cls_token"][..., res] = 0.0
    protect_masks(masks, lay.protected)
    for block, rows in ((0, slice(motion_units, motion_units + UNITS_0)), (1, slice(0, UNITS_1))):
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

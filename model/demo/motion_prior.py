"""The demo model's motion prior: block 0's temporal attention starts as a two-frame motion detector.

Random weights make temporal attention average the frames, so nothing in a fresh network depends
on frame order, and every demo class differs only by frame order: training sits on a plateau.
:func:`motion_prior_init` (weights only; the architecture is unchanged) reserves channels of the token:

* ``[0, T)``: a one-hot time code (the time embedding, ``code`` high), nothing else writes there;
* ``T``: an always-zero channel: after LayerNorm it reads -mean/std, the zero level of the token;
* ``[D-2h, D-h)``: the previous frame's content, ``[D-h, D)``: this frame's minus the previous
  frame's content (a random projection of the content channels, ``h`` = head size);

head 0 of block 0's temporal attention attends from frame ``t`` to ``t-1`` by the time code,
head 1 attends to ``t`` itself, both read the same projection of the content, and ``proj`` +
``temporal_fc`` write "previous" and "difference" into the reserved channels. Optionally block 0's
MLP adds the motion energy ``|difference|`` (which averaging cannot cancel) and "is a feature
appearing or fading", and block 1's last spatial head hands the cls token the mean energy.
:func:`motion_prior_masks` says which weights training must leave as set.
"""

from __future__ import annotations

import torch

from model.timesformer import TimeSformer

# (sign of the difference, sign of the previous content, sign written): appearing (+) or fading (-)
_PRODUCT_SIGNS = ((1, 1, 1), (1, -1, -1), (-1, 1, -1), (-1, -1, 1))


def _head_dim(model: TimeSformer) -> int:
    return model.config.hidden_size // model.config.num_attention_heads


def _reserved(model: TimeSformer) -> torch.Tensor:
    """The time code, the zero-level channel and the last two head widths."""
    cfg = model.config
    dim, t, hd = cfg.hidden_size, cfg.num_frames, _head_dim(model)
    return torch.cat([torch.arange(t + 1), torch.arange(dim - 2 * hd, dim)])


@torch.no_grad()
def motion_prior_init(model: TimeSformer, code: float = 4.0, sharpness: float = 1.0, content_gain: float = 1.0,
                      diff_gain: float = 1.0, energy_gain: float = 0.0, product_gain: float = 0.0) -> None:
    """Set the motion detector described in the module docstring (``energy_gain`` > 0: the energy units
    too, and with ``product_gain`` > 0 the appearing/fading units). Draws one random projection."""
    cfg = model.config
    dim, heads, t = cfg.hidden_size, cfg.num_attention_heads, cfg.num_frames
    hd = dim // heads
    if heads < 2 or dim - 2 * hd - t < hd:
        raise ValueError(f"motion_prior_init needs >= 2 heads and room for {t} + 3 x {hd} channels in {dim}")
    content = torch.arange(t + 1, dim - 2 * hd)
    reserved = _reserved(model)
    model.patch_embed.proj.weight.mul_(content_gain)
    model.patch_embed.proj.weight[reserved] = 0.0
    model.patch_embed.proj.bias[reserved] = 0.0
    model.pos_embed[..., reserved] = 0.0
    model.cls_token[..., reserved] = 0.0
    model.time_embed.zero_()
    model.time_embed[0, torch.arange(t), torch.arange(t)] = code
    _difference_heads(model, content, sharpness, diff_gain)
    if energy_gain > 0:
        _energy_units(model, energy_gain)
        if product_gain > 0:
            _product_units(model, product_gain)
        if len(model.blocks) > 1:
            _energy_readout(model)


def _difference_heads(model: TimeSformer, content: torch.Tensor, sharpness: float, diff_gain: float) -> None:
    """Block 0's temporal heads 0 (frame t-1) and 1 (frame t) read one random projection of the content;
    ``proj`` writes "previous" and "this minus previous" into the last two head widths."""
    dim, t, hd = model.config.hidden_size, model.config.num_frames, _head_dim(model)
    prev_ch, diff_ch = slice(dim - 2 * hd, dim - hd), slice(dim - hd, dim)
    block = model.blocks[0]
    attn = block.temporal_attn
    w = attn.qkv.weight  # (3D, D): rows [0, D) -> q, [D, 2D) -> k, [2D, 3D) -> v; head h = rows h*hd..
    w[: 2 * hd] = 0.0  # q of heads 0, 1
    w[dim: dim + 2 * hd] = 0.0  # k of heads 0, 1
    w[2 * dim: 2 * dim + 2 * hd] = 0.0  # v of heads 0, 1
    if attn.qkv.bias is not None:
        attn.qkv.bias[: 2 * hd] = 0.0
        attn.qkv.bias[dim: dim + 2 * hd] = 0.0
        attn.qkv.bias[2 * dim: 2 * dim + 2 * hd] = 0.0
    frames = torch.arange(t)
    w[frames[:-1], frames[1:]] = sharpness  # head 0 query j <- code j+1: frame t looks for code t-1
    w[dim + frames, frames] = 1.0  # head 0 keys: the code itself
    w[hd + frames, frames] = sharpness  # head 1 query: own code
    w[dim + hd + frames, frames] = 1.0  # head 1 keys
    proj = torch.linalg.qr(torch.randn(len(content), hd))[0].T  # (hd, C) orthonormal rows
    w[2 * dim: 2 * dim + hd, content] = proj  # head 0 value: projected content (of frame t-1)
    w[2 * dim + hd: 2 * dim + 2 * hd, content] = proj  # head 1 value: the same (of frame t)
    eye = torch.eye(hd)
    attn.proj.weight.zero_()
    attn.proj.bias.zero_()
    attn.proj.weight[prev_ch, 0:hd] = eye  # previous frame
    attn.proj.weight[diff_ch, hd:2 * hd] = diff_gain * eye  # this frame ...
    attn.proj.weight[diff_ch, 0:hd] = -diff_gain * eye  # ... minus the previous one
    block.temporal_fc.weight.copy_(torch.eye(dim))
    block.temporal_fc.bias.zero_()


def _energy_units(model: TimeSformer, energy_gain: float) -> None:
    """Block 0's MLP adds |difference| (motion energy) to the difference channels, 2 x hd units."""
    dim, t, hd = model.config.hidden_size, model.config.num_frames, _head_dim(model)
    ref = t  # the zero-level channel
    block = model.blocks[0]
    fc1, fc2 = block.mlp.fc1, block.mlp.fc2
    units = torch.arange(hd)
    diff_idx = torch.arange(dim - hd, dim)
    fc1.weight[: 2 * hd] = 0.0
    fc1.bias[: 2 * hd] = 0.0
    fc1.weight[units, diff_idx] = 3.0  # 3 * (difference - zero level) and its negative
    fc1.weight[units, ref] = -3.0
    fc1.weight[hd + units, diff_idx] = -3.0
    fc1.weight[hd + units, ref] = 3.0
    fc2.weight[:, : 2 * hd] = 0.0
    fc2.weight[diff_idx] = 0.0  # nothing else writes into the difference channels yet
    fc2.bias[diff_idx] = 0.0
    block.attn.proj.weight[diff_idx] = 0.0
    block.attn.proj.bias[diff_idx] = 0.0
    block.attn.proj.weight[ref] = 0.0  # keep the zero-level channel at zero
    block.attn.proj.bias[ref] = 0.0
    fc2.weight[diff_idx, units] = energy_gain
    fc2.weight[diff_idx, hd + units] = energy_gain


def _product_units(model: TimeSformer, product_gain: float) -> None:
    """sign(diff) * sign(prev) * min(|diff|, |prev|) into the previous-content channels, 4 x hd units:
    is a feature appearing or fading."""
    dim, t, hd = model.config.hidden_size, model.config.num_frames, _head_dim(model)
    ref = t
    block = model.blocks[0]
    fc1, fc2 = block.mlp.fc1, block.mlp.fc2
    units = torch.arange(hd)
    diff_idx = torch.arange(dim - hd, dim)
    prev_idx = torch.arange(dim - 2 * hd, dim - hd)
    block.attn.proj.weight[prev_idx] = 0.0
    block.attn.proj.bias[prev_idx] = 0.0
    fc2.weight[prev_idx] = 0.0
    fc2.bias[prev_idx] = 0.0
    for k, (sd, sp, out) in enumerate(_PRODUCT_SIGNS):
        rows = (2 + k) * hd + units
        fc1.weight[rows] = 0.0
        fc1.bias[rows] = 0.0
        fc1.weight[rows, diff_idx] = 3.0 * sd
        fc1.weight[rows, prev_idx] = 3.0 * sp
        fc1.weight[rows, ref] = -3.0 * (sd + sp)
        fc2.weight[:, rows] = 0.0
        fc2.weight[prev_idx, rows] = product_gain * out


def _energy_readout(model: TimeSformer) -> None:
    """Block 1's last spatial head: the cls token reads the patches' mean motion energy."""
    dim, hd = model.config.hidden_size, _head_dim(model)
    diff_idx = torch.arange(dim - hd, dim)
    nxt = model.blocks[1].attn
    v = nxt.qkv.weight
    v[2 * dim + diff_idx] = 0.0
    v[2 * dim + diff_idx, diff_idx] = 1.0
    if nxt.qkv.bias is not None:
        nxt.qkv.bias[2 * dim + diff_idx] = 0.0
    nxt.proj.weight[diff_idx] = 0.0
    nxt.proj.weight[diff_idx, diff_idx] = 1.0
    nxt.proj.bias[diff_idx] = 0.0


def motion_prior_units(model: TimeSformer, products: bool = True) -> int:
    """How many of block 0's MLP units the motion prior holds (energy, plus the appearing/fading products)."""
    return 6 * _head_dim(model) if products else 2 * _head_dim(model)


def motion_prior_masks(model: TimeSformer, products: bool = False) -> dict[str, torch.Tensor]:
    """Masks (1 = trainable) that keep :func:`motion_prior_init`'s front end fixed during training.

    The motion detector only works while its reserved channels stay clean (the zero-level channel at
    zero, the time code one-hot), so those weights are not trained; everything else is.
    """
    dim, t, hd = model.config.hidden_size, model.config.num_frames, _head_dim(model)
    reserved = _reserved(model)
    diff_ref = torch.cat([torch.tensor([t]), torch.arange(dim - hd, dim)])
    masks = {name: torch.ones_like(p) for name, p in model.named_parameters()}
    for name in ("pos_embed", "cls_token"):
        masks[name][..., reserved] = 0.0
    for name in ("patch_embed.proj.weight", "patch_embed.proj.bias"):
        masks[name][reserved] = 0.0
    masks["time_embed"].zero_()
    for name in list(masks):
        if name.startswith("blocks.0.temporal"):
            masks[name].zero_()
    masks["blocks.0.attn.proj.weight"][diff_ref] = 0.0
    masks["blocks.0.attn.proj.bias"][diff_ref] = 0.0
    units = motion_prior_units(model, products)
    if products:
        diff_ref = torch.cat([diff_ref, torch.arange(dim - 2 * hd, dim - hd)])
    masks["blocks.0.attn.proj.weight"][diff_ref] = 0.0
    masks["blocks.0.attn.proj.bias"][diff_ref] = 0.0
    masks["blocks.0.mlp.fc1.weight"][:units] = 0.0
    masks["blocks.0.mlp.fc1.bias"][:units] = 0.0
    masks["blocks.0.mlp.fc2.weight"][diff_ref] = 0.0
    masks["blocks.0.mlp.fc2.weight"][:, :units] = 0.0
    masks["blocks.0.mlp.fc2.bias"][diff_ref] = 0.0
    return masks

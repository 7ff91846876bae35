"""Building blocks for fixed front ends written into a TimeSformer's weights (the architecture is unchanged).

The demo's turn prior (:mod:`model.demo.turn_prior`) is made of these: gradient filters sampled at
the inner corners of a patch, MLP units that form products and cross products from GELU pairs, an
attention head that reads the previous frame by the motion prior's one-hot time code, and helpers
that keep trained weights from writing into the reserved channels.

Products come from GELU pairs: ``GELU(k z) + GELU(-k z) = k z erf(k z / sqrt 2)`` is even and grows
with ``|z|``, so ``f(a + b) - f(a - b)`` has the sign of ``a * b``; gains keep the units in the
``|z|``-like range, which int8 quantization leaves intact.
"""

from __future__ import annotations

import torch

from model.timesformer import TimeSformer

SHARP = 6.0  # time-code attention sharpness of the previous-frame head
MEAN_GAIN = 4.0  # default gain of a uniform head's mean


def corner_windows(p: int, sigma: float, grid: int, regions: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pixel weights ``((regions*(grid-1))**2, p, p)`` each, float64, at the inner corners of a ``grid`` x
    ``grid`` cut of each of the ``regions`` x ``regions`` square regions of a ``p``-pixel patch (region by
    region, then row by row): the Gaussian-weighted mean (``sigma`` in region widths, window cut by the
    region) and its d/dx and d/dy per pixel. ``regions=1``: the patch is the region."""
    r = p // regions
    if r * regions != p:
        raise ValueError(f"a {p}-pixel patch does not split into {regions} x {regions} regions")
    coords = torch.arange(r, dtype=torch.float64) + 0.5
    sigma = sigma * r
    between = (torch.arange(1, grid, dtype=torch.float64)) * (r / grid)

    def window(c: float) -> torch.Tensor:
        return torch.exp(-0.5 * ((coords - c) / sigma) ** 2)

    smooth, dx, dy = [], [], []
    for cy in between:
        for cx in between:
            w = window(cy)[:, None] * window(cx)[None, :]
            w = w / w.sum()
            smooth.append(w)
            dx.append(w * (coords[None, :] - cx) / sigma**2)
            dy.append(w * (coords[:, None] - cy) / sigma**2)
    one = [torch.stack(k) for k in (smooth, dx, dy)]  # (points, r, r): one region's
    if regions == 1:
        return one[0], one[1], one[2]
    out = []
    for k in one:
        tiled = torch.zeros(regions, regions, len(k), p, p, dtype=torch.float64)
        for i in range(regions):
            for j in range(regions):
                tiled[i, j, :, i * r:(i + 1) * r, j * r:(j + 1) * r] = k
        out.append(tiled.flatten(0, 2))
    return out[0], out[1], out[2]


class Units:
    """Hands out consecutive MLP units of one block; each reads a linear form of channels (minus the
    zero level) and writes to some channels."""

    def __init__(self, fc1: torch.nn.Linear, fc2: torch.nn.Linear, ref: int) -> None:
        self.fc1, self.fc2, self.ref, self.next = fc1, fc2, ref, 0

    def even(self, weights: dict[int, float], gain: float, out: dict[int, float]) -> None:
        """Two units adding ``sum(out) * f(z) / gain``, ``z = sum_c weights[c] * x_c``, f even (GELU pair)."""
        for sign in (1.0, -1.0):
            row = self.next
            self.next += 1
            self.fc1.weight[row] = 0.0
            self.fc1.bias[row] = 0.0
            for channel, w in weights.items():
                self.fc1.weight[row, channel] += sign * gain * w
                self.fc1.weight[row, self.ref] -= sign * gain * w  # x_c - ref: the channel's own value
            self.fc2.weight[:, row] = 0.0
            for channel, w in out.items():
                self.fc2.weight[channel, row] = w / gain

    def product(self, a: dict[int, float], b: dict[int, float], gain: float, out: dict[int, float]) -> None:
        """Four units adding ``out * (f(a + b) - f(a - b))``: the sign of ``a * b``."""
        self.even(_lin(a, 1.0, b, 1.0), gain, out)
        self.even(_lin(a, 1.0, b, -1.0), gain, {c: -w for c, w in out.items()})

    def cross(self, u: tuple[dict, dict], v: tuple[dict, dict], gain: float, out: dict[int, float]) -> None:
        """16 units adding ``out * (N(u' + v) - N(u' - v))``, ``u' = u`` turned 90 degrees, ``N`` an
        octagonal norm (the sum of ``|w . e|`` over four directions ``e``): the sign of ``u x v``, since
        ``|u' + v|^2 - |u' - v|^2 = 4 u x v``."""
        turned = (_lin(u[1], -1.0), _lin(u[0], 1.0))
        for sign in (1.0, -1.0):
            w = (_lin(turned[0], 1.0, v[0], sign), _lin(turned[1], 1.0, v[1], sign))
            for cx, cy in ((1.0, 0.0), (0.0, 1.0), (_R, _R), (_R, -_R)):
                self.even(_lin(w[0], cx, w[1], cy), gain, {c: sign * x for c, x in out.items()})


_R = 0.5**0.5


def _lin(a: dict[int, float], wa: float, b: dict[int, float] | None = None, wb: float = 0.0) -> dict[int, float]:
    """``wa * a + wb * b`` for linear forms written as ``{channel: weight}``."""
    out = {c: wa * w for c, w in a.items()}
    for c, w in (b or {}).items():
        out[c] = out.get(c, 0.0) + wb * w
    return out


def _zero_rows(linear: torch.nn.Linear, rows: torch.Tensor) -> None:
    linear.weight[rows] = 0.0
    if linear.bias is not None:
        linear.bias[rows] = 0.0


def previous_frame_head(attn, head: int, dim: int, hd: int, frames: int) -> None:
    """Head ``head`` attends from frame t to frame t-1 (frame 0 to itself), by the time code."""
    w = attn.qkv.weight
    for base in (0, dim, 2 * dim):
        _zero_rows(attn.qkv, torch.arange(base + head * hd, base + (head + 1) * hd))
    q0, k0 = head * hd, dim + head * hd
    f = torch.arange(frames)
    w[q0 + f[:-1], f[1:]] = SHARP  # query dim j is high for frame j+1 ...
    w[q0, 0] = SHARP  # ... and for frame 0 itself
    w[k0 + f, f] = 1.0  # keys: the code


def protect_channels(model: TimeSformer, channels: torch.Tensor, blocks: int = 3) -> None:
    """No learned writer of blocks ``[0, blocks)`` touches ``channels`` (block 0's temporal sub-layer
    belongs to the motion front end) and their LayerNorm gains stay 1, biases 0."""
    for i in range(blocks):
        block = model.blocks[i]
        for linear in (block.attn.proj, block.mlp.fc2) + ((block.temporal_attn.proj, block.temporal_fc) if i else ()):
            _zero_rows(linear, channels)
        for norm in (block.temporal_norm1, block.norm1, block.norm2):
            norm.weight[channels] = 1.0
            norm.bias[channels] = 0.0


def protect_masks(masks: dict[str, torch.Tensor], channels: torch.Tensor, blocks: int = 3) -> None:
    """Keep fixed (mask 0) what :func:`protect_channels` set."""
    for i in range(blocks):
        writers = ["attn.proj", "mlp.fc2"] + (["temporal_attn.proj", "temporal_fc"] if i else [])
        for name in [f"{w}.{kind}" for w in writers for kind in ("weight", "bias")] + \
                [f"{n}.{kind}" for n in ("temporal_norm1", "norm1", "norm2") for kind in ("weight", "bias")]:
            if f"blocks.{i}.{name}" in masks:
                masks[f"blocks.{i}.{name}"][channels] = 0.0


def fix_last_head_masks(masks: dict[str, torch.Tensor], prefix: str, head: int, head_dim: int, dim: int) -> None:
    """Keep fixed the q, k, v rows and the output columns of head ``head`` of the attention ``prefix``."""
    rows = torch.arange(head * head_dim, (head + 1) * head_dim)
    for base in (0, dim, 2 * dim):
        for kind in ("weight", "bias"):
            if f"{prefix}.qkv.{kind}" in masks:
                masks[f"{prefix}.qkv.{kind}"][base + rows] = 0.0
    masks[f"{prefix}.proj.weight"][:, rows] = 0.0


def add_turn_stage(block, heads: int, frames: int, ref: int, orient: tuple[int, ...], orient_prev: tuple[int, ...],
                   turn: int, gain: float, out_gain: float) -> int:
    """In ``block``: the last temporal head copies the previous frame's ``orient`` into ``orient_prev``
    and the first MLP units add ``out_gain * (orient_prev x orient)`` to ``turn``, one cross product
    (16 units) for each consecutive pair of channels (an orientation in double-angle form, one per
    region). Returns the units used."""
    attn = block.temporal_attn
    dim = attn.proj.weight.shape[0]
    hd = dim // heads
    last = heads - 1
    n = len(orient)
    if n % 2 or len(orient_prev) != n or n > hd:
        raise ValueError(f"the turn stage copies {n} orientation channels into {len(orient_prev)} with a head "
                         f"of width {hd}: they must pair up and fit the head")
    previous_frame_head(attn, last, dim, hd, frames)
    v0 = 2 * dim + last * hd
    attn.qkv.weight[v0 + torch.arange(n), torch.tensor(orient)] = 1.0
    attn.qkv.weight[v0 + torch.arange(n), ref] = -1.0
    attn.proj.weight[:, last * hd:] = 0.0
    attn.proj.weight[torch.tensor(orient_prev), last * hd + torch.arange(n)] = 1.0
    block.temporal_fc.weight[torch.tensor(orient_prev), torch.tensor(orient_prev)] = 1.0
    units = Units(block.mlp.fc1, block.mlp.fc2, ref)
    for i in range(0, n, 2):
        (pa, pb), (ca, cb) = orient_prev[i:i + 2], orient[i:i + 2]
        units.cross(({pa: 1.0}, {pb: 1.0}), ({ca: 1.0}, {cb: 1.0}), gain, {turn: out_gain})
    return units.next


def uniform_head(attn, heads: int, dim: int, hd: int, channels: torch.Tensor, ref: int,
                 gain: float = MEAN_GAIN) -> None:
    """The last head attends uniformly (q = k = 0) and adds the mean of ``channels`` to themselves."""
    h0 = (heads - 1) * hd
    for base in (0, dim, 2 * dim):
        _zero_rows(attn.qkv, torch.arange(base + h0, base + h0 + hd))
    n = len(channels)
    attn.qkv.weight[2 * dim + h0 + torch.arange(n), channels] = gain
    attn.qkv.weight[2 * dim + h0 + torch.arange(n), ref] = -gain
    attn.proj.weight[:, h0:h0 + hd] = 0.0
    attn.proj.weight[channels, h0 + torch.arange(n)] = 1.0


@torch.no_grad()
def cls_after(model: TimeSformer, pixel_values: torch.Tensor, blocks: int = 3) -> torch.Tensor:
    """The cls token ``(B, D)`` after the first ``blocks`` blocks: what a front end hands the trained layers."""
    b, t = pixel_values.shape[:2]
    x, h, w = model.patch_embed(pixel_values.flatten(0, 1))
    n, d = h * w, x.shape[-1]
    patches = (x + model.pos_embed[:, 1:]).view(b, t, n, d) + model.time_embed[:, :t].unsqueeze(2)
    cls = (model.cls_token + model.pos_embed[:, :1]).expand(b, 1, d)
    for block in model.blocks[:blocks]:
        cls, patches = block.forward_divided(cls, patches)
    return cls[:, 0]

"""A fixed motion front end for the demo TimeSformer: weights only, the architecture is the standard one.

Every demo class differs from the others only in how frames change. A freshly initialized
TimeSformer averages frames in its temporal attention, so it starts blind to frame order, and on
CPU in minutes it never learns which way a shape turns. :func:`flow_prior_init` sets (and
:func:`flow_prior_masks` keeps fixed during training) a few reserved channels and units so that,
before any training, the tokens carry measured motion:

* the patch embedding samples, at the 3x3 inner corners of a 4x4 grid on each patch, the smoothed
  intensity and its x and y gradients (Gaussian and derivative-of-Gaussian windows), and writes a
  constant ``anchor`` so that LayerNorm scales every token alike and differences stay differences;
* block 0's temporal attention, keyed by a one-hot time code, writes "intensity minus the previous
  frame's" into ``diff`` (frame 0 sees itself: no motion);
* block 0's MLP forms, per patch, a brightness-constancy (Lucas-Kanade style) ``flow`` from
  gradient x time-difference products, the motion energy ``|diff|``, and the edge orientation in
  double-angle form (``orient``);
* block 1's temporal attention copies the previous frame's orientation and block 1's MLP takes the
  cross product of the two: ``turn``, the way the edges in a patch turned, the same everywhere on a
  rotating shape and zero for a translation or a scaling;
* block 1's last spatial head gives the cls token the mean motion energy; block 2's spatial heads
  weight the patches by ``exp(+-x)``, ``exp(+-y)``, so the cls gets the mean flow and turn and the
  flow's moments about the frame centre: ``curl`` (rotation) and ``div`` (growth).

Everything after that is trained. Products come from GELU pairs: ``GELU(k z) + GELU(-k z) =
k z erf(k z / sqrt 2)`` is even and grows with ``|z|``, so ``f(a + b) - f(a - b)`` has the sign of
``a * b``; gains keep the units in the ``|z|``-like range, which int8 quantization leaves intact.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from model.timesformer import TimeSformer

GRID = 4  # the patch cut in GRID x GRID; intensity and gradient are sampled at the CELLS inner corners
CELLS = (GRID - 1) ** 2


@dataclass(frozen=True)
class Layout:
    """Where the reserved channels sit in a token of width ``dim``; ``clean`` ones only the front end writes."""

    frames: int
    dim: int
    head_dim: int

    def _at(self, i: int, n: int = 1) -> torch.Tensor:
        return torch.arange(self.frames + 3 + i, self.frames + 3 + i + n)

    code = property(lambda self: torch.arange(self.frames))  # one-hot time code
    ref = property(lambda self: self.frames)  # always 0: after LayerNorm it reads the token's zero level
    anchor = property(lambda self: (self.frames + 1, self.frames + 2))  # +-ANCHOR: LayerNorm's std held steady
    intensity = property(lambda self: self._at(0, CELLS))  # smoothed intensity samples
    grad_x = property(lambda self: self._at(CELLS, CELLS))
    grad_y = property(lambda self: self._at(2 * CELLS, CELLS))
    diff = property(lambda self: self._at(3 * CELLS, CELLS))  # intensity minus the previous frame's
    flow = property(lambda self: tuple(self._at(4 * CELLS, 2).tolist()))
    orient = property(lambda self: tuple(self._at(4 * CELLS + 2, 2).tolist()))  # (a, b) this frame
    orient_prev = property(lambda self: tuple(self._at(4 * CELLS + 4, 2).tolist()))
    turn = property(lambda self: int(self._at(4 * CELLS + 6)))
    position = property(lambda self: tuple(self._at(4 * CELLS + 7, 2).tolist()))  # x, y of the patch
    one = property(lambda self: int(self._at(4 * CELLS + 9)))  # 1 in the cls token, else 0
    curl = property(lambda self: int(self._at(4 * CELLS + 10)))  # cls: position x flow
    div = property(lambda self: int(self._at(4 * CELLS + 11)))  # cls: position . flow
    clean = property(lambda self: torch.arange(0, self.div + 1))


def layout_of(model: TimeSformer) -> Layout:
    cfg = model.config
    layout = Layout(cfg.num_frames, cfg.hidden_size, cfg.hidden_size // cfg.num_attention_heads)
    if cfg.attention_type != "divided_space_time" or cfg.num_hidden_layers < 3 or cfg.num_attention_heads < 2:
        raise ValueError("the flow prior needs divided attention, >= 3 layers and >= 2 heads")
    if layout.head_dim < CELLS or layout.dim - len(layout.clean) < layout.dim // 4:
        raise ValueError(f"the flow prior does not fit: head size {layout.head_dim} (>= {CELLS}), "
                         f"{len(layout.clean)} reserved channels of {layout.dim}")
    if cfg.intermediate_size < UNITS_0:
        raise ValueError(f"the flow prior needs an MLP of >= {UNITS_0} units")
    return layout


# Gains, measured so the GELU pairs work in their |z|-like range on the demo's clips (int8-safe).
ANCHOR = 12.0  # LayerNorm's std then moves < 1 % between frames
SIGMA = 0.09  # smoothing of the intensity and gradient samples, in patch widths (1.4 px at patch 16)
GRAD_GAIN = 4.0  # gradients per GRID spacing
CODE = 4.0  # time code height
SHARP = 6.0  # time-code attention sharpness
K_FLOW, K_ORIENT, K_TURN, K_ENERGY = 10.0, 10.0, 20.0, 30.0  # GELU pair input gains
BETA = 4.0  # block 2's position-weighted heads: attention ~ exp(+-BETA x), exp(+-BETA y) (x, y in patches)
# output gains: the features land at order 1 on the patches that move, well above int8's activation step
ENERGY_GAIN, FLOW_GAIN, TURN_GAIN, MEAN_GAIN = 30.0, 10.0, 10.0, 4.0
UNITS_0 = 2 * CELLS + 8 * CELLS + 8 * CELLS  # energy, flow, orientation units in block 0's MLP
UNITS_1 = 16  # turn units in block 1's MLP


def corner_windows(p: int, sigma: float, grid: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pixel weights ``((grid-1)**2, p, p)`` each, float64, at the inner corners of a ``grid`` x ``grid``
    cut of a ``p``-pixel patch (row by row): the Gaussian-weighted mean (``sigma`` in patch widths, window
    cut by the patch) and its d/dx and d/dy per pixel."""
    coords = torch.arange(p, dtype=torch.float64) + 0.5
    sigma = sigma * p
    between = (torch.arange(1, grid, dtype=torch.float64)) * (p / grid)

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
    return torch.stack(smooth), torch.stack(dx), torch.stack(dy)


def _filters(p: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Smoothed intensity, d/dx and d/dy at the patch's inner grid corners, scaled to gradients per GRID spacing."""
    smooth, dx, dy = corner_windows(p, SIGMA, GRID)
    step = p / GRID
    return smooth.float(), (dx * step * GRAD_GAIN / GRID).float(), (dy * step * GRAD_GAIN / GRID).float()


class _Units:
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


def _previous_frame_head(attn, head: int, dim: int, hd: int, frames: int) -> None:
    """Head ``head`` attends from frame t to frame t-1 (frame 0 to itself), by the time code."""
    w = attn.qkv.weight
    for base in (0, dim, 2 * dim):
        _zero_rows(attn.qkv, torch.arange(base + head * hd, base + (head + 1) * hd))
    q0, k0 = head * hd, dim + head * hd
    f = torch.arange(frames)
    w[q0 + f[:-1], f[1:]] = SHARP  # query dim j is high for frame j+1 ...
    w[q0, 0] = SHARP  # ... and for frame 0 itself
    w[k0 + f, f] = 1.0  # keys: the code


def _own_frame_head(attn, head: int, dim: int, hd: int, frames: int) -> None:
    w = attn.qkv.weight
    for base in (0, dim, 2 * dim):
        _zero_rows(attn.qkv, torch.arange(base + head * hd, base + (head + 1) * hd))
    f = torch.arange(frames)
    w[head * hd + f, f] = SHARP
    w[dim + head * hd + f, f] = 1.0


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


def add_turn_stage(block, heads: int, frames: int, ref: int, orient: tuple[int, int], orient_prev: tuple[int, int],
                   turn: int, gain: float, out_gain: float) -> int:
    """In ``block``: the last temporal head copies the previous frame's ``orient`` into ``orient_prev``
    and the first MLP units add ``out_gain * (orient_prev x orient)`` to ``turn``. Returns the units used."""
    attn = block.temporal_attn
    dim = attn.proj.weight.shape[0]
    hd = dim // heads
    last = heads - 1
    _previous_frame_head(attn, last, dim, hd, frames)
    v0 = 2 * dim + last * hd
    attn.qkv.weight[v0 + torch.arange(2), torch.tensor(orient)] = 1.0
    attn.qkv.weight[v0 + torch.arange(2), ref] = -1.0
    attn.proj.weight[:, last * hd:] = 0.0
    attn.proj.weight[torch.tensor(orient_prev), last * hd + torch.arange(2)] = 1.0
    block.temporal_fc.weight[torch.tensor(orient_prev), torch.tensor(orient_prev)] = 1.0
    units = _Units(block.mlp.fc1, block.mlp.fc2, ref)
    (pa, pb), (ca, cb) = orient_prev, orient
    units.cross(({pa: 1.0}, {pb: 1.0}), ({ca: 1.0}, {cb: 1.0}), gain, {turn: out_gain})
    return units.next


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


@torch.no_grad()
def flow_prior_init(model: TimeSformer) -> Layout:
    """Set the fixed front end described in the module docstring; returns the channel layout."""
    lay = layout_of(model)
    dim, hd, t, p = lay.dim, lay.head_dim, lay.frames, model.config.patch_size
    heads = model.config.num_attention_heads
    clean, ref = lay.clean, lay.ref
    # patch embedding: smoothed intensity, gradients and the anchor; nothing else in the reserved channels
    emb = model.patch_embed.proj
    emb.weight[clean] = 0.0
    emb.bias[clean] = 0.0
    smooth, gx, gy = _filters(p)
    for rows, filters in ((lay.intensity, smooth), (lay.grad_x, gx), (lay.grad_y, gy)):
        emb.weight[rows] = (filters / 3.0)[:, None].expand(-1, 3, -1, -1)  # mean of the three channels
    emb.bias[lay.anchor[0]], emb.bias[lay.anchor[1]] = ANCHOR, -ANCHOR
    model.pos_embed[..., clean] = 0.0
    model.cls_token[..., clean] = 0.0
    g = model.config.grid_size
    centred = torch.arange(g, dtype=torch.float32) - (g - 1) / 2
    model.cls_token[0, 0, lay.one] = 1.0
    model.pos_embed[0, 1:, lay.position[0]] = centred.repeat(g)  # x of each patch, frame centre = 0
    model.pos_embed[0, 1:, lay.position[1]] = centred.repeat_interleave(g)
    model.time_embed.zero_()
    model.time_embed[0, lay.code, lay.code] = CODE

    # block 0 temporal attention: diff = intensity - previous frame's intensity (head 1 minus head 0)
    b0 = model.blocks[0]
    attn = b0.temporal_attn
    attn.qkv.weight.zero_()
    if attn.qkv.bias is not None:
        attn.qkv.bias.zero_()
    _previous_frame_head(attn, 0, dim, hd, t)
    _own_frame_head(attn, 1, dim, hd, t)
    n = CELLS
    for head in (0, 1):
        v0 = 2 * dim + head * hd
        attn.qkv.weight[v0 + torch.arange(n), lay.intensity] = 1.0
        attn.qkv.weight[v0 + torch.arange(n), ref] = -1.0
    attn.proj.weight.zero_()
    attn.proj.bias.zero_()
    attn.proj.weight[lay.diff, hd + torch.arange(n)] = 1.0
    attn.proj.weight[lay.diff, torch.arange(n)] = -1.0
    b0.temporal_fc.weight.copy_(torch.eye(dim))
    b0.temporal_fc.bias.zero_()

    # blocks 0-2: no learned writer touches the clean channels
    protect_channels(model, clean)

    # block 0 MLP: motion energy |diff|, flow, orientation
    units = _Units(b0.mlp.fc1, b0.mlp.fc2, ref)
    for c in lay.diff.tolist():  # |diff| added to diff: averaging over patches cannot cancel it
        units.even({c: 1.0}, K_ENERGY, {c: ENERGY_GAIN})
    diff = lay.diff.tolist()
    ap, bp = lay.orient
    for i in range(GRID - 1):
        for j in range(GRID - 1):
            k = i * (GRID - 1) + j
            gxk, gyk = {int(lay.grad_x[k]): 1.0}, {int(lay.grad_y[k]): 1.0}
            dt = {diff[k]: 1.0}
            units.product(gxk, dt, K_FLOW, {lay.flow[0]: -FLOW_GAIN})  # brightness constancy: v ~ -grad * dt
            units.product(gyk, dt, K_FLOW, {lay.flow[1]: -FLOW_GAIN})
            units.even(gxk, K_ORIENT, {ap: 1.0})  # a = |gx| - |gy|, b ~ sign(gx gy): a double-angle
            units.even(gyk, K_ORIENT, {ap: -1.0})  # orientation that turns with the edges
            units.product(gxk, gyk, K_ORIENT, {bp: 1.0})
    assert units.next == UNITS_0

    # block 1: orient_prev (last temporal head), then turn = orient_prev x orient (MLP)
    b1 = model.blocks[1]
    if add_turn_stage(b1, heads, t, ref, lay.orient, lay.orient_prev, lay.turn, K_TURN, TURN_GAIN) != UNITS_1:
        raise RuntimeError("flow prior: turn units miscounted")
    # spatial attention, last head: cls reads the mean motion energy (block 1) and mean flow and turn (block 2)
    _uniform_head(b1.attn, heads, dim, hd, lay.diff, ref)
    _moment_heads(model.blocks[2].attn, lay, hd)
    return lay


def _moment_heads(attn, lay: Layout, hd: int) -> None:
    """Block 2's spatial attention, all heads fixed: the cls token attends to the patches with weights
    ~ exp(+BETA x), exp(-BETA x), exp(+BETA y), exp(-BETA y) and reads their flow and turn. Differences
    of opposite heads are position-weighted sums (moments about the frame centre), so the cls gets
    the mean flow and turn, curl = x * fy - y * fx (> 0 clockwise) and div = x * fx + y * fy (> 0 growing).
    Patch tokens (``one`` = 0) attend uniformly and get the means only."""
    dim, ref = lay.dim, lay.ref
    attn.qkv.weight.zero_()
    attn.proj.weight.zero_()
    if attn.qkv.bias is not None:
        attn.qkv.bias.zero_()
    attn.proj.bias.zero_()
    (px, py), (fx, fy) = lay.position, lay.flow
    reads = (fx, fy, lay.turn)
    for head, (axis, sign) in enumerate(((px, 1.0), (px, -1.0), (py, 1.0), (py, -1.0))):
        q0, k0, v0 = head * hd, dim + head * hd, 2 * dim + head * hd
        attn.qkv.weight[q0, lay.one], attn.qkv.weight[q0, ref] = BETA, -BETA
        attn.qkv.weight[k0, axis], attn.qkv.weight[k0, ref] = sign, -sign
        for i, channel in enumerate(reads):
            attn.qkv.weight[v0 + i, channel], attn.qkv.weight[v0 + i, ref] = MEAN_GAIN, -MEAN_GAIN
    out = attn.proj.weight

    def col(head: int, channel: int) -> int:
        return head * hd + reads.index(channel)

    for channel in reads:  # means: the average of the +x and -x heads
        out[channel, col(0, channel)] = out[channel, col(1, channel)] = 0.5
    out[lay.curl, col(0, fy)], out[lay.curl, col(1, fy)] = 1.0, -1.0
    out[lay.curl, col(2, fx)], out[lay.curl, col(3, fx)] = -1.0, 1.0
    out[lay.div, col(0, fx)], out[lay.div, col(1, fx)] = 1.0, -1.0
    out[lay.div, col(2, fy)], out[lay.div, col(3, fy)] = 1.0, -1.0


def _uniform_head(attn, heads: int, dim: int, hd: int, channels: torch.Tensor, ref: int,
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


def flow_prior_masks(model: TimeSformer) -> dict[str, torch.Tensor]:
    """1 = trainable, 0 = kept as :func:`flow_prior_init` set it."""
    lay = layout_of(model)
    dim, hd = lay.dim, lay.head_dim
    masks = {name: torch.ones_like(p) for name, p in model.named_parameters()}

    def fix(name: str, index=None) -> None:
        if name not in masks:
            return
        if index is None:
            masks[name].zero_()
        else:
            masks[name][index] = 0.0

    clean = lay.clean
    for name in ("patch_embed.proj.weight", "patch_embed.proj.bias"):
        fix(name, clean)
    masks["pos_embed"][..., clean] = 0.0
    masks["cls_token"][..., clean] = 0.0
    fix("time_embed")
    for name in list(masks):
        if name.startswith("blocks.0.temporal"):
            fix(name)
    protect_masks(masks, clean)
    for block, count in ((0, UNITS_0), (1, UNITS_1)):
        fix(f"blocks.{block}.mlp.fc1.weight", slice(0, count))
        fix(f"blocks.{block}.mlp.fc1.bias", slice(0, count))
        masks[f"blocks.{block}.mlp.fc2.weight"][:, :count] = 0.0
    for name in ("blocks.2.attn.qkv.weight", "blocks.2.attn.qkv.bias", "blocks.2.attn.proj.weight",
                 "blocks.2.attn.proj.bias"):
        fix(name)
    for name in ("temporal_attn", "attn"):  # block 1's fixed last heads
        fix_last_head_masks(masks, f"blocks.1.{name}", model.config.num_attention_heads - 1, hd, dim)
    return masks


@torch.no_grad()
def front_end_features(model: TimeSformer, pixel_values: torch.Tensor) -> dict[str, torch.Tensor]:
    """The cls token's front-end channels after block 2, per clip: what the trained layers read.

    ``pixel_values`` is ``(B, T, 3, H, W)``, normalized. Returns ``flow_x``, ``flow_y`` (mean flow,
    image coordinates), ``turn`` (> 0 clockwise on screen), ``curl`` (> 0 clockwise), ``div``
    (> 0 growing) and ``energy``, each ``(B,)``.
    """
    lay = layout_of(model)
    c = cls_after(model, pixel_values)
    return {"flow_x": c[:, lay.flow[0]], "flow_y": c[:, lay.flow[1]], "turn": c[:, lay.turn],
            "curl": c[:, lay.curl], "div": c[:, lay.div], "energy": c[:, lay.diff].mean(-1)}

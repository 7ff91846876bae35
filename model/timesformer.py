"""TimeSformer (Bertasius et al., 2021) in plain PyTorch: PatchEmbed -> Attention -> Block -> TimeSformer.

Three attention types, as in the original repository:

* ``divided_space_time``: per block, temporal attention over the frames of each patch position
  (cls token excluded) with a ``temporal_fc`` residual, then spatial attention per frame over
  ``[cls, patches]``; the cls token's residual is the mean of its per-frame outputs.
* ``space_only``: every frame is its own sequence ``[cls, patches]``; the frames' tokens are
  averaged before the final norm (the original repository's "Space" baseline).
* ``joint_space_time``: one sequence ``[cls, all patches of all frames]``.

Patch tokens are kept frame-major, ``(B, T, N, D)``, and the cls token apart, ``(B, 1, D)``. Any
frame count and image size work: position and time embeddings are resized from the input's shape
(nearest, as the original repository does).

Two exact inference shortcuts: :meth:`TimeSformer.fold` (called once by ``load_model``, before any
quantization) replaces each block's ``temporal_attn.proj`` and ``temporal_fc`` by one linear holding
their product, and the last block computes only the cls token the classifier reads. ``forward`` has
no caches and no data-dependent branches, so ``torch.compile`` traces it without graph breaks and
``torch.export`` exports it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model.config import TimesformerConfig

_ACT = {
    "gelu": nn.GELU,
    "gelu_new": lambda: nn.GELU(approximate="tanh"),
    "gelu_pytorch_tanh": lambda: nn.GELU(approximate="tanh"),
    "relu": nn.ReLU,
    "silu": nn.SiLU,
}


def resize_time_embed(time_embed: torch.Tensor, num_frames: int) -> torch.Tensor:
    """(1, T0, D) -> (1, num_frames, D), nearest neighbour along time."""
    if time_embed.shape[1] == num_frames:
        return time_embed
    resized = F.interpolate(time_embed.transpose(1, 2), size=num_frames, mode="nearest")  # (1, D, T)
    return resized.transpose(1, 2)  # (1, T, D)


def resize_pos_embed(pos_embed: torch.Tensor, grid: int, height: int, width: int) -> torch.Tensor:
    """(1, 1+grid*grid, D) -> (1, 1+height*width, D); the cls slot is kept, the patch grid resized nearest."""
    if grid == height == width:
        return pos_embed
    dim = pos_embed.shape[-1]
    patches = pos_embed[:, 1:].transpose(1, 2).reshape(1, dim, grid, grid)  # (1, D, g, g)
    patches = F.interpolate(patches, size=(height, width), mode="nearest")  # (1, D, h, w)
    patches = patches.flatten(2).transpose(1, 2)  # (1, h*w, D)
    return torch.cat((pos_embed[:, :1], patches), dim=1)


class PatchEmbed(nn.Module):
    """Each frame cut into non-overlapping patches by a Conv2d with kernel = stride = patch size."""

    def __init__(self, config: TimesformerConfig) -> None:
        super().__init__()
        p = config.patch_size
        self.proj = nn.Conv2d(config.num_channels, config.hidden_size, kernel_size=p, stride=p)

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        x = self.proj(frames)  # (B*T, D, h, w)
        h, w = x.shape[-2:]
        return x.flatten(2).transpose(1, 2), h, w  # (B*T, h*w, D)


class Attention(nn.Module):
    """Multi-head self-attention over the last-but-one axis of ``(S, L, D)``.

    ``fused=True`` uses ``F.scaled_dot_product_attention``; ``fused=False`` is the plain reference
    (scores, softmax, weighted sum) that the tests compare against.
    """

    def __init__(self, config: TimesformerConfig) -> None:
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size, bias=config.qkv_bias)
        self.proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.fused = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.attend(x))

    def attend(self, x: torch.Tensor) -> torch.Tensor:
        """The heads' weighted values, concatenated, before the output projection: (S, L, D)."""
        s, length, dim = x.shape
        qkv = self.qkv(x).view(s, length, 3, self.num_heads, self.head_dim)  # (S, L, 3, H, hd)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 x (S, H, L, hd)
        if self.fused:
            out = F.scaled_dot_product_attention(q, k, v)  # (S, H, L, hd)
        else:
            scores = (q @ k.transpose(-2, -1)) * self.scale  # (S, H, L, L)
            out = scores.softmax(dim=-1) @ v  # (S, H, L, hd)
        return out.transpose(1, 2).reshape(s, length, dim)  # (S, L, D)


class Mlp(nn.Module):
    def __init__(self, config: TimesformerConfig) -> None:
        super().__init__()
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = _ACT[config.hidden_act]()
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def _identity_temporal_fc(block: "Block", state: dict, prefix: str, local_metadata) -> None:
    """State-dict hook of a folded block: ``temporal_fc`` saves as the identity, the fold lives in
    ``temporal_attn.proj``, so the saved checkpoint has the architecture's keys and the same function."""
    weight = getattr(block.temporal_attn.proj, "weight", None)  # an int8 layer packs its weight away
    dim = block.temporal_attn.proj.out_features
    if isinstance(weight, torch.Tensor) and weight.is_floating_point():
        dtype, device = weight.dtype, weight.device
    else:  # a quantized layer: the identity is written in fp32 on the CPU
        dtype, device = torch.float32, torch.device("cpu")
    state[prefix + "temporal_fc.weight"] = torch.eye(dim, dtype=dtype, device=device)
    state[prefix + "temporal_fc.bias"] = torch.zeros(dim, dtype=dtype, device=device)


class Block(nn.Module):
    """Pre-norm transformer block; ``divided`` adds the temporal attention sub-layer."""

    def __init__(self, config: TimesformerConfig, divided: bool) -> None:
        super().__init__()
        dim, eps = config.hidden_size, config.layer_norm_eps
        self.divided = divided
        if divided:
            self.temporal_norm1 = nn.LayerNorm(dim, eps=eps)
            self.temporal_attn = Attention(config)
            self.temporal_fc = nn.Linear(dim, dim)
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(config)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(config)
        self.folded = False  # set by fold_temporal()

    @torch.no_grad()
    def fold_temporal(self) -> bool:
        """Fold ``temporal_attn.proj`` and ``temporal_fc``, two linear maps in a row, into one, in place.

        ``fc(proj(o)) == o @ (W_fc W_proj)^T + (W_fc b_proj + b_fc)``: one GEMM instead of two (1/17 of a
        block's matmul work), exact up to rounding (the product is formed in float64). ``temporal_attn.proj``
        becomes a plain ``nn.Linear`` holding the product and ``temporal_fc`` an ``nn.Identity``, so
        ``forward`` has no branch and no cache (``torch.compile`` and ``torch.export`` see plain layers), and
        a quantizer sees the folded layer like any other. The state dict still has the architecture's keys:
        ``temporal_fc`` saves as the identity (weight I, bias 0), so ``save_pretrained`` writes a checkpoint
        that computes the same function. Returns False when there is nothing to fold (already folded)."""
        if not self.divided or self.folded:
            return False
        proj, fc = self.temporal_attn.proj, self.temporal_fc
        if type(proj) is not nn.Linear or type(fc) is not nn.Linear:
            raise TypeError(f"fold_temporal needs plain nn.Linear layers, got {type(proj).__name__} and "
                            f"{type(fc).__name__}: fold before quantizing")
        w1, b1, w2, b2 = (t.detach().double() for t in (proj.weight, proj.bias, fc.weight, fc.bias))
        folded = nn.Linear(proj.in_features, fc.out_features, device=proj.weight.device, dtype=proj.weight.dtype)
        folded.weight.copy_(w2 @ w1)  # (D, D)
        folded.bias.copy_(w2 @ b1 + b2)  # (D,)
        folded.requires_grad_(proj.weight.requires_grad)
        self.temporal_attn.proj = folded
        self.temporal_fc = nn.Identity()
        self.folded = True
        self.register_state_dict_post_hook(_identity_temporal_fc)
        return True

    def forward(self, x: torch.Tensor, cls_only: bool = False) -> torch.Tensor:
        """Plain block on ``(S, L, D)`` (space_only and joint_space_time). ``cls_only`` (the last block,
        whose patch outputs nobody reads) returns only position 0, ``(S, 1, D)``, skipping the rest's
        output projection and MLP."""
        if cls_only:
            x = x[:, :1] + self.attn.proj(self.attn.attend(self.norm1(x))[:, :1])  # (S, 1, D)
        else:
            x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))

    def forward_divided(self, cls: torch.Tensor, patches: torch.Tensor,
                        cls_only: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """cls ``(B, 1, D)``, patches ``(B, T, N, D)`` -> the same shapes. With ``cls_only`` (last block)
        the returned patches are stale: their output projection and MLP are skipped."""
        b, t, n, d = patches.shape
        # temporal attention: one sequence of T frames per patch position, cls excluded
        xt = patches.transpose(1, 2).reshape(b * n, t, d)  # (B*N, T, D)
        xt = xt + self.temporal_fc(self.temporal_attn(self.temporal_norm1(xt)))  # (B*N, T, D)
        xp = xt.view(b, n, t, d).transpose(1, 2).reshape(b * t, n, d)  # (B*T, N, D)
        # spatial attention: one sequence [cls, patches] per frame
        xs = torch.cat((cls.expand(b, t, d).reshape(b * t, 1, d), xp), dim=1)  # (B*T, 1+N, D)
        if cls_only:
            r0 = self.attn.proj(self.attn.attend(self.norm1(xs))[:, 0])  # (B*T, D)
            cls = cls + r0.view(b, t, d).mean(dim=1, keepdim=True)  # (B, 1, D)
            return cls + self.mlp(self.norm2(cls)), patches
        rs = self.attn(self.norm1(xs))  # (B*T, 1+N, D)
        cls = cls + rs[:, 0].view(b, t, d).mean(dim=1, keepdim=True)  # (B, 1, D)
        xp = xp + rs[:, 1:]  # (B*T, N, D)
        # MLP on every token
        cls = cls + self.mlp(self.norm2(cls))
        xp = xp + self.mlp(self.norm2(xp))
        return cls, xp.view(b, t, n, d)


class TimeSformer(nn.Module):
    """``forward(pixel_values (B, T, C, H, W) float) -> logits (B, num_labels)``."""

    def __init__(self, config: TimesformerConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.hidden_size
        self.patch_embed = PatchEmbed(config)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + config.grid_size**2, dim))
        if config.attention_type != "space_only":
            self.time_embed = nn.Parameter(torch.zeros(1, config.num_frames, dim))
        divided = config.attention_type == "divided_space_time"
        self.blocks = nn.ModuleList(Block(config, divided) for _ in range(config.num_hidden_layers))
        self.norm = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.head = nn.Linear(dim, config.num_labels)
        self._init_weights()

    def _init_weights(self) -> None:
        """Initialization for training from scratch (loaded checkpoints overwrite all of it).

        Weights are scaled by fan-in (std = fan_in ** -0.5) rather than ViT-B's fixed 0.02, and the
        cls/position/time embeddings start at half the scale of the patch tokens. With the fixed 0.02
        a small model (hidden 64-128) sits at chance for hundreds of steps: its attention starts
        uniform and the position/time signals are too faint to break the symmetry. Measured on a
        4-way motion-direction task (hidden 64, 2 layers, AdamW 1e-3, batch 32): loss still 1.38
        (= chance) after 120 steps with 0.02, 0.007 with this scheme.
        """
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                fan_in = module.weight[0].numel()
                nn.init.trunc_normal_(module.weight, std=fan_in**-0.5, a=-2 * fan_in**-0.5, b=2 * fan_in**-0.5)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        embeddings = [self.cls_token, self.pos_embed] + ([self.time_embed] if hasattr(self, "time_embed") else [])
        for embedding in embeddings:
            nn.init.trunc_normal_(embedding, std=0.5, a=-1.0, b=1.0)

    @property
    def id2label(self) -> dict[int, str]:
        return self.config.id2label

    def fold(self) -> int:
        """Fold every divided block's temporal projections into one linear (:meth:`Block.fold_temporal`),
        in place; returns how many blocks were folded (0 when already folded or not divided)."""
        return sum(block.fold_temporal() for block in self.blocks)

    @property
    def folded(self) -> bool:
        return any(block.folded for block in self.blocks)

    def set_fused_attention(self, fused: bool) -> None:
        """Switch every Attention between SDPA (True) and the plain reference path (False)."""
        for module in self.modules():
            if isinstance(module, Attention):
                module.fused = fused

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if pixel_values.dim() != 5:
            raise ValueError(f"pixel_values must be (B, T, C, H, W), got shape {tuple(pixel_values.shape)}")
        b, t, c, height, width = pixel_values.shape
        dtype = self.patch_embed.proj.weight.dtype
        x = pixel_values.to(dtype).reshape(b * t, c, height, width)  # (B*T, C, H, W)
        x, h, w = self.patch_embed(x)  # (B*T, N, D)
        n, d = h * w, x.shape[-1]
        pos = resize_pos_embed(self.pos_embed, self.config.grid_size, h, w)  # (1, 1+N, D)
        cls = self.cls_token + pos[:, :1]  # (1, 1, D)
        x = x + pos[:, 1:]  # (B*T, N, D)
        kind = self.config.attention_type
        last = len(self.blocks) - 1  # only the cls token of the last block is read

        if kind == "space_only":
            x = torch.cat((cls.expand(b * t, 1, d), x), dim=1)  # (B*T, 1+N, D)
            for i, block in enumerate(self.blocks):
                x = block(x, cls_only=i == last)
            cls_out = x[:, 0].view(b, t, d).mean(dim=1)  # (B, D): average over frames
            return self.head(self.norm(cls_out))

        time = resize_time_embed(self.time_embed, t)  # (1, T, D)
        patches = x.view(b, t, n, d) + time.unsqueeze(2)  # (B, T, N, D)
        cls = cls.expand(b, 1, d)  # (B, 1, D)

        if kind == "joint_space_time":
            x = torch.cat((cls, patches.reshape(b, t * n, d)), dim=1)  # (B, 1+T*N, D)
            for i, block in enumerate(self.blocks):
                x = block(x, cls_only=i == last)
            return self.head(self.norm(x[:, 0]))

        for i, block in enumerate(self.blocks):
            cls, patches = block.forward_divided(cls, patches, cls_only=i == last)
        return self.head(self.norm(cls[:, 0]))

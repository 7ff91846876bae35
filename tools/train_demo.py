"""Train the embedded ``motion-demo`` TimeSformer on synthetic action clips, on CPU.

    python tools/train_demo.py --out model/weights/motion-demo

Clips come from ``streamer.sources.synthetic.clips`` (far wider variety than the documented videos) in one
worker process; each clip is used twice per batch, once as rendered and once time-reversed (with
the reversed label), each under a random flip/transpose that relabels directions. A held-out
validation split (its own seeds) is scored during training, both on the wide variety and on the
documented look. The result is saved with ``model.save_pretrained`` (Hugging Face layout).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.config import TimesformerConfig  # noqa: E402
from model.preprocess import TIMESFORMER_MEAN, TIMESFORMER_STD, PreprocessConfig  # noqa: E402
from model.timesformer import TimeSformer  # noqa: E402
from streamer.sources.synthetic.actions import CLASSES, DOCUMENTED, REVERSED, WIDE  # noqa: E402
from streamer.sources.synthetic.clips import sample_clip  # noqa: E402

log = logging.getLogger("train_demo")

INDEX = {name: i for i, name in enumerate(CLASSES)}
STEP_S = 0.16  # seconds between the window's frames (configs/default.yaml: span_s = 8 x 0.16 = 1.28)
# class index permutations under the image symmetries and time reversal
_HFLIP = {"move_left": "move_right", "move_right": "move_left", "rotate_cw": "rotate_ccw", "rotate_ccw": "rotate_cw"}
_VFLIP = {"move_up": "move_down", "move_down": "move_up", "rotate_cw": "rotate_ccw", "rotate_ccw": "rotate_cw"}
_TRANSPOSE = {"move_left": "move_up", "move_up": "move_left", "move_right": "move_down", "move_down": "move_right",
              "rotate_cw": "rotate_ccw", "rotate_ccw": "rotate_cw"}


SYMMETRIES = tuple((name, tuple(m.items())) for name, m in
                   (("hflip", _HFLIP), ("vflip", _VFLIP), ("transpose", _TRANSPOSE)))


def _perm(mapping: dict[str, str]) -> torch.Tensor:
    return torch.tensor([INDEX[mapping.get(name, name)] for name in CLASSES])


PERM_H, PERM_V, PERM_T, PERM_R = _perm(_HFLIP), _perm(_VFLIP), _perm(_TRANSPOSE), _perm(REVERSED)


def to_model_frames(frames: np.ndarray, size: int) -> torch.Tensor:
    """uint8 BGR ``(T, H, W, 3)`` -> uint8 RGB ``(T, 3, size, size)``, resized as model.Preprocessor does."""
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).flip(1)  # (T, 3, H, W) RGB uint8
    x = F.interpolate(x.contiguous(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x  # (T, 3, size, size) uint8


class ClipStream(torch.utils.data.IterableDataset):
    """Endless clips from a seed; each worker draws from its own seed stream."""

    def __init__(self, seed: int, size: int, frames: int, documented_share: float = 0.0,
                 later_share: float = 0.0, later_segments: int = 4) -> None:
        self.seed, self.size, self.frames, self.documented_share = seed, size, frames, documented_share
        self.later_share, self.later_segments = later_share, later_segments

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        torch.set_num_threads(1)
        cv2.setNumThreads(1)
        rng = np.random.default_rng([self.seed, info.id if info else 0])
        while True:
            # a later segment (shapes where earlier actions left them); no draw at all when the share is 0,
            # so the clip stream of runs without --later-share is what it was
            later = self.later_share > 0 and rng.uniform() < self.later_share
            index = int(rng.integers(1, self.later_segments + 1)) if later else 0
            if rng.uniform() < self.documented_share:  # the documented look, still degraded
                clip, label = sample_clip(rng, self.frames, DOCUMENTED, short=(96, 480), segment_index=index)
            else:
                clip, label = sample_clip(rng, self.frames, segment_index=index)
            yield to_model_frames(clip, self.size), INDEX[label]


def make_split(seed: int, count: int, size: int, frames: int, documented: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed validation set; ``documented`` uses the documented ranges and look, else the wide one."""
    rng = np.random.default_rng([seed, 7])
    xs, ys = [], []
    for _ in range(count):
        if documented:
            clip, label = sample_clip(rng, frames, DOCUMENTED, step_s=(STEP_S, STEP_S), short=(96, 480), augment=False)
        else:
            clip, label = sample_clip(rng, frames, WIDE)
        xs.append(to_model_frames(clip, size))
        ys.append(INDEX[label])
    return torch.stack(xs), torch.tensor(ys)


def normalize(x: torch.Tensor) -> torch.Tensor:
    """uint8 ``(B, T, 3, H, W)`` -> float, ``(x / 255 - mean) / std`` as model.Preprocessor does."""
    mean = torch.tensor(TIMESFORMER_MEAN).view(1, 1, 3, 1, 1)
    std = torch.tensor(TIMESFORMER_STD).view(1, 1, 3, 1, 1)
    return (x.float() / 255.0 - mean) / std


def symmetries(x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Each clip twice: a random flip/transpose, then as is and time-reversed. ``(B, T, 3, H, W)`` -> 2B."""
    out_x, out_y = [], []
    for clip, label in zip(x, y):  # clip (T, 3, H, W)
        flips = torch.randint(0, 2, (3,), generator=gen).tolist()
        if flips[0]:
            clip, label = clip.flip(-1), PERM_H[label]
        if flips[1]:
            clip, label = clip.flip(-2), PERM_V[label]
        if flips[2]:
            clip, label = clip.transpose(-1, -2), PERM_T[label]
        out_x += [clip, clip.flip(0)]  # flip(0): time reversed
        out_y += [label, PERM_R[label]]
    return torch.stack(out_x), torch.stack([torch.as_tensor(v) for v in out_y])


@torch.no_grad()
def evaluate(model: TimeSformer, x: torch.Tensor, y: torch.Tensor, batch: int = 64) -> tuple[float, np.ndarray]:
    """Accuracy and confusion matrix (rows: truth, columns: prediction)."""
    model.eval()
    preds = torch.cat([model(normalize(x[i:i + batch])).argmax(-1) for i in range(0, len(x), batch)])
    model.train()
    confusion = np.zeros((len(CLASSES), len(CLASSES)), dtype=np.int64)
    np.add.at(confusion, (y.numpy(), preds.numpy()), 1)
    return float((preds == y).float().mean()), confusion


def lr_at(step: int, total: int, peak: float, warmup: int, time_done: float = 0.0) -> float:
    """Linear warm-up, then cosine to 0 by ``total`` steps or by the time budget, whichever comes first."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = max((step - warmup) / max(total - warmup, 1), time_done)
    return peak * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


@torch.no_grad()
def motion_prior_init(model: TimeSformer, code: float = 4.0, sharpness: float = 1.0, content_gain: float = 1.0,
                      diff_gain: float = 1.0, energy_gain: float = 0.0, product_gain: float = 0.0) -> None:
    """Start block 0's temporal attention as a two-frame motion detector instead of a uniform average.

    Random weights make temporal attention average the frames, so nothing in a fresh network depends
    on frame order, and every class here differs only by frame order: training sits on a plateau.
    This init (weights only; the architecture is unchanged) reserves channels of the token:

    * ``[0, T)``: a one-hot time code (the time embedding, ``code`` high), nothing else writes there;
    * ``[D-2h, D-h)``: the previous frame's content, ``[D-h, D)``: this frame's minus the previous
      frame's content (a random projection of the content channels, ``h`` = head size);

    head 0 of block 0's temporal attention attends from frame ``t`` to ``t-1`` by the time code,
    head 1 attends to ``t`` itself, both read the same projection of the content, and ``proj`` +
    ``temporal_fc`` write "previous" and "difference" into the reserved channels.
    """
    cfg = model.config
    dim, heads, t = cfg.hidden_size, cfg.num_attention_heads, cfg.num_frames
    hd = dim // heads
    if heads < 2 or dim - 2 * hd - t < hd:
        raise ValueError(f"motion_prior_init needs >= 2 heads and room for {t} + 3 x {hd} channels in {dim}")
    prev_ch, diff_ch = slice(dim - 2 * hd, dim - hd), slice(dim - hd, dim)
    ref = t  # an always-zero channel: after LayerNorm it reads -mean/std, the zero level of the token
    content = torch.arange(t + 1, dim - 2 * hd)
    reserved = torch.cat([torch.arange(t + 1), torch.arange(dim - 2 * hd, dim)])
    model.patch_embed.proj.weight.mul_(content_gain)
    model.patch_embed.proj.weight[reserved] = 0.0
    model.patch_embed.proj.bias[reserved] = 0.0
    model.pos_embed[..., reserved] = 0.0
    model.cls_token[..., reserved] = 0.0
    model.time_embed.zero_()
    model.time_embed[0, torch.arange(t), torch.arange(t)] = code
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
    if energy_gain > 0:  # block 0's MLP adds |difference| (motion energy), which averaging cannot cancel
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
        if product_gain > 0:  # sign(diff) * sign(prev) * min(|diff|, |prev|): is a feature appearing or fading
            prev_idx = torch.arange(dim - 2 * hd, dim - hd)
            block.attn.proj.weight[prev_idx] = 0.0
            block.attn.proj.bias[prev_idx] = 0.0
            fc2.weight[prev_idx] = 0.0
            fc2.bias[prev_idx] = 0.0
            for k, (sd, sp, out) in enumerate(((1, 1, 1), (1, -1, -1), (-1, 1, -1), (-1, -1, 1))):
                rows = (2 + k) * hd + units
                fc1.weight[rows] = 0.0
                fc1.bias[rows] = 0.0
                fc1.weight[rows, diff_idx] = 3.0 * sd
                fc1.weight[rows, prev_idx] = 3.0 * sp
                fc1.weight[rows, ref] = -3.0 * (sd + sp)
                fc2.weight[:, rows] = 0.0
                fc2.weight[prev_idx, rows] = product_gain * out
        if len(model.blocks) > 1:  # block 1's last spatial head: cls reads the patches' mean motion energy
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
    hd = model.config.hidden_size // model.config.num_attention_heads
    return 6 * hd if products else 2 * hd


def prior_grad_masks(model: TimeSformer, products: bool = False) -> dict[str, torch.Tensor]:
    """Masks (1 = trainable) that keep :func:`motion_prior_init`'s front end fixed during training.

    The motion detector only works while its reserved channels stay clean (the zero-level channel at
    zero, the time code one-hot), so those weights are not trained; everything else is.
    """
    cfg = model.config
    dim, t = cfg.hidden_size, cfg.num_frames
    hd = dim // cfg.num_attention_heads
    reserved = torch.cat([torch.arange(t + 1), torch.arange(dim - 2 * hd, dim)])
    diff_ref = torch.cat([torch.tensor([t]), torch.arange(dim - hd, dim)])
    params = dict(model.named_parameters())
    masks = {name: torch.ones_like(p) for name, p in params.items()}
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


def build_model(args) -> TimeSformer:
    config = TimesformerConfig(
        image_size=args.image_size, patch_size=args.patch_size, num_frames=args.frames,
        hidden_size=args.hidden, num_hidden_layers=args.layers, num_attention_heads=args.heads,
        intermediate_size=args.mlp, attention_type="divided_space_time", labels=CLASSES,
        label_symmetries=SYMMETRIES,  # the pipeline averages over these views (model/views.py)
    )
    model = TimeSformer(config)
    # exact resize (no crop): shapes near the frame's edges stay in view
    model.preprocess_config = PreprocessConfig(shortest_edge=None, size=(args.image_size, args.image_size),
                                               crop_size=None)
    model.license = "Apache-2.0"
    return model


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("model/weights/motion-demo"), help="checkpoint folder")
    p.add_argument("--steps", type=int, default=3000, help="optimizer steps")
    p.add_argument("--clips", type=int, default=16, help="rendered clips per step (batch = 2x: time-reversed too)")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (AdamW, cosine)")
    p.add_argument("--warmup", type=int, default=150, help="linear warm-up steps")
    p.add_argument("--weight-decay", type=float, default=0.05, help="AdamW weight decay")
    p.add_argument("--image-size", type=int, default=64, help="model input side (exact resize)")
    p.add_argument("--patch-size", type=int, default=16, help="patch side in pixels")
    p.add_argument("--hidden", type=int, default=128, help="hidden size")
    p.add_argument("--layers", type=int, default=4, help="transformer blocks")
    p.add_argument("--heads", type=int, default=4, help="attention heads")
    p.add_argument("--mlp", type=int, default=512, help="MLP inner size")
    p.add_argument("--frames", type=int, default=8, help="frames per clip")
    p.add_argument("--resume", type=Path, help="start from this checkpoint folder (same geometry)")
    p.add_argument("--documented-share", type=float, default=0.0,
                   help="share of training clips drawn from the documented ranges (still degraded)")
    p.add_argument("--later-share", type=float, default=0.0,
                   help="share of training clips drawn from a later segment of their scene (1..--later-segments)")
    p.add_argument("--later-segments", type=int, default=4, help="latest segment --later-share draws from")
    p.add_argument("--init", choices=("default", "motion-prior", "turn-prior", "flow-prior"), default="default",
                   help="default: the network's own init; motion-prior: fixed two-frame motion front end; "
                        "turn-prior: the motion prior plus a fixed edge-turn detector (tools/turn_prior.py); "
                        "flow-prior: fixed flow/turn/energy front end (tools/flow_prior.py, an experiment: "
                        "docs/DEMO_MODEL.md)")
    p.add_argument("--seed", type=int, default=0, help="training seed (validation uses seed + 1000)")
    p.add_argument("--val-clips", type=int, default=900, help="clips per validation split (wide and documented)")
    p.add_argument("--eval-every", type=int, default=500, help="validate every N steps")
    p.add_argument("--threads", type=int, default=1, help="torch threads in the training process")
    p.add_argument("--workers", type=int, default=1, help="clip-rendering worker processes")
    p.add_argument("--max-minutes", type=float, default=25.0,
                   help="time budget: the learning rate anneals to 0 by then, and training stops there")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from tqdm import tqdm

    start = time.monotonic()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(1)
    model = build_model(args)
    masks = {name: torch.ones_like(p) for name, p in model.named_parameters()}
    if args.init in ("motion-prior", "turn-prior"):
        motion_prior_init(model, energy_gain=1.0, product_gain=1.0)
        masks = prior_grad_masks(model, products=True)
    if args.init == "turn-prior":
        from turn_prior import turn_prior_init, turn_prior_masks  # tools/, beside this script

        motion_units = motion_prior_units(model)
        turn_prior_init(model, motion_units)
        masks = turn_prior_masks(model, motion_units, masks)
    elif args.init == "flow-prior":
        from flow_prior import flow_prior_init, flow_prior_masks  # tools/, beside this script

        flow_prior_init(model)
        masks = flow_prior_masks(model)
    if args.resume is not None:  # continue from a saved checkpoint of the same geometry (prior kept fixed)
        from model import load_model

        model.load_state_dict(load_model(args.resume).state_dict())
        log.info("resumed from %s", args.resume)
    fixed = {name: p.detach().clone() for name, p in model.named_parameters()}
    log.info("model: %d parameters (%d fixed by the front end), %s", sum(p.numel() for p in model.parameters()),
             int(sum((m == 0).sum() for m in masks.values())), model.config)
    val = {name: make_split(args.seed + 1000, args.val_clips, args.image_size, args.frames, name == "documented")
           for name in ("wide", "documented")}
    log.info("validation splits ready after %.0f s", time.monotonic() - start)
    loader = torch.utils.data.DataLoader(ClipStream(args.seed, args.image_size, args.frames, args.documented_share,
                                                    args.later_share, args.later_segments),
                                         batch_size=args.clips, num_workers=args.workers,
                                         persistent_workers=args.workers > 0, prefetch_factor=4 if args.workers else None)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay, betas=(0.9, 0.98))
    gen = torch.Generator().manual_seed(args.seed)
    history, stopped_early = [], False
    bar = tqdm(total=args.steps, desc="train", unit="step", dynamic_ncols=True, mininterval=5.0)
    loss_avg = acc_avg = None
    batches = iter(loader)
    for step in range(args.steps):
        x, y = next(batches)
        x, y = symmetries(x, y, gen)  # (2B, T, 3, H, W), (2B,)
        for group in opt.param_groups:
            group["lr"] = lr_at(step, args.steps, args.lr, args.warmup, (time.monotonic() - start) / (60.0 * args.max_minutes))
        logits = model(normalize(x))
        loss = F.cross_entropy(logits, y, label_smoothing=0.05)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():  # the motion prior's front end stays as initialized
            for name, p in model.named_parameters():
                p.copy_(torch.where(masks[name] == 0, fixed[name], p))
        acc = float((logits.argmax(-1) == y).float().mean())
        loss_avg = float(loss.detach()) if loss_avg is None else 0.98 * loss_avg + 0.02 * float(loss.detach())
        acc_avg = acc if acc_avg is None else 0.98 * acc_avg + 0.02 * acc
        bar.set_postfix(loss=f"{loss_avg:.3f}", acc=f"{acc_avg:.3f}", lr=f"{opt.param_groups[0]['lr']:.1e}")
        bar.update(1)
        minutes = (time.monotonic() - start) / 60.0
        last = step + 1 == args.steps or minutes >= args.max_minutes
        if (step + 1) % args.eval_every == 0 or last:
            scores = {name: evaluate(model, *split)[0] for name, split in val.items()}
            history.append({"step": step + 1, "minutes": round(minutes, 2), "train_loss": round(loss_avg, 4),
                            **{f"val_{k}": round(v, 4) for k, v in scores.items()}})
            log.info("step %d (%.1f min): loss %.3f, val wide %.3f, val documented %.3f", step + 1, minutes,
                     loss_avg, scores["wide"], scores["documented"])
            torch.save(model.state_dict(), args.out.parent / f".{args.out.name}-partial.pt")
        if minutes >= args.max_minutes and step + 1 < args.steps:
            log.warning("stopping early at step %d: %.1f minutes is past --max-minutes", step + 1, minutes)
            stopped_early = True
            break
    bar.close()
    from model import save_pretrained

    model.eval()
    save_pretrained(model, args.out)
    _, confusion = evaluate(model, *val["documented"])
    report = {"command": "python tools/train_demo.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "minutes": round((time.monotonic() - start) / 60.0, 2), "stopped_early": stopped_early,
              "history": history, "classes": list(CLASSES), "confusion_documented": confusion.tolist()}
    (args.out / "training.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.out.parent / f".{args.out.name}-partial.pt").unlink(missing_ok=True)
    log.info("saved %s after %.1f minutes", args.out, report["minutes"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

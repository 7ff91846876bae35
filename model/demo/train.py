"""Train the embedded ``motion-demo`` TimeSformer on synthetic action clips, on CPU.

    python -m model.demo.train --out model/weights/motion-demo --init turn-prior ...

(the exact command of the shipped weights: docs/DEMO_MODEL.md). Clips come from the renderer
(:mod:`model.demo.data`) in one worker process; each clip is used twice per batch, once as rendered
and once time-reversed (with the reversed label), each under a random flip/transpose that relabels
directions. A held-out validation split (its own seeds) is scored during training, both on the wide
variety and on the documented look. The result is saved with ``model.save_pretrained`` (Hugging Face
layout) with the sampling it was trained with and its domain in ``config.json``.
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

from model.config import TimesformerConfig
from model.demo.data import SYMMETRIES, ClipStream, flip_and_reverse, make_split, normalize, sampling
from model.demo.motion_prior import motion_prior_init, motion_prior_masks, motion_prior_units
from model.demo.render.actions import CLASSES, DOMAIN
from model.preprocess import PreprocessConfig
from model.timesformer import TimeSformer

log = logging.getLogger(__name__)

LICENSE = "Apache-2.0"
COMMAND = "python -m model.demo.train"


def preprocess_config(image_size: int) -> PreprocessConfig:
    """Exact resize to the model input, no crop: shapes near the frame's edges stay in view."""
    return PreprocessConfig(shortest_edge=None, size=(image_size, image_size), crop_size=None)


def build_model(args) -> TimeSformer:
    config = TimesformerConfig(
        image_size=args.image_size, patch_size=args.patch_size, num_frames=args.frames,
        hidden_size=args.hidden, num_hidden_layers=args.layers, num_attention_heads=args.heads,
        intermediate_size=args.mlp, attention_type="divided_space_time", labels=CLASSES,
        label_symmetries=SYMMETRIES, sampling=sampling(args.frames), domain=DOMAIN,
    )
    return TimeSformer(config)


def init_front_end(model: TimeSformer, init: str) -> dict[str, torch.Tensor]:
    """Set the fixed front end ``init`` names; returns the masks (1 = trainable) that keep it fixed."""
    masks = {name: torch.ones_like(p) for name, p in model.named_parameters()}
    if init in ("motion-prior", "turn-prior"):
        motion_prior_init(model, energy_gain=1.0, product_gain=1.0)
        masks = motion_prior_masks(model, products=True)
    if init == "turn-prior":
        from model.demo.turn_prior import turn_prior_init, turn_prior_masks

        motion_units = motion_prior_units(model)
        turn_prior_init(model, motion_units)
        masks = turn_prior_masks(model, motion_units, masks)
    return masks


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


def parse_args(argv):
    p = argparse.ArgumentParser(prog=COMMAND, description=__doc__.splitlines()[0])
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
    p.add_argument("--init", choices=("default", "motion-prior", "turn-prior"), default="default",
                   help="default: the network's own init; motion-prior: fixed two-frame motion front end "
                        "(model/demo/motion_prior.py); turn-prior: the motion prior plus a fixed edge-turn "
                        "detector (model/demo/turn_prior.py)")
    p.add_argument("--seed", type=int, default=0, help="training seed (validation uses seed + 1000)")
    p.add_argument("--val-clips", type=int, default=900, help="clips per validation split (wide and documented)")
    p.add_argument("--eval-every", type=int, default=500, help="validate every N steps")
    p.add_argument("--threads", type=int, default=1, help="torch threads in the training process")
    p.add_argument("--workers", type=int, default=1, help="clip-rendering worker processes")
    p.add_argument("--max-minutes", type=float, default=25.0,
                   help="time budget: the learning rate anneals to 0 by then, and training stops there")
    return p.parse_args(argv)


def train(model: TimeSformer, masks: dict[str, torch.Tensor], val: dict, args, start: float) -> tuple[list, bool]:
    """The training loop; returns the validation history and whether the time budget stopped it."""
    from tqdm import tqdm

    fixed = {name: p.detach().clone() for name, p in model.named_parameters()}
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
        x, y = flip_and_reverse(x, y, gen)  # (2B, T, 3, H, W), (2B,)
        for group in opt.param_groups:
            group["lr"] = lr_at(step, args.steps, args.lr, args.warmup, (time.monotonic() - start) / (60.0 * args.max_minutes))
        logits = model(normalize(x))
        loss = F.cross_entropy(logits, y, label_smoothing=0.05)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():  # the prior's front end stays as initialized
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
    return history, stopped_early


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    start = time.monotonic()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(1)
    model = build_model(args)
    masks = init_front_end(model, args.init)
    if args.resume is not None:  # continue from a saved checkpoint of the same geometry (prior kept fixed)
        from model import load_model

        model.load_state_dict(load_model(args.resume).network.state_dict())
        log.info("resumed from %s", args.resume)
    log.info("model: %d parameters (%d fixed by the front end), %s", sum(p.numel() for p in model.parameters()),
             int(sum((m == 0).sum() for m in masks.values())), model.config)
    val = {name: make_split(args.seed + 1000, args.val_clips, args.image_size, args.frames, name == "documented")
           for name in ("wide", "documented")}
    log.info("validation splits ready after %.0f s", time.monotonic() - start)
    history, stopped_early = train(model, masks, val, args, start)
    from model import save_pretrained

    model.eval()
    save_pretrained(model, args.out, preprocess=preprocess_config(args.image_size), license=LICENSE)
    _, confusion = evaluate(model, *val["documented"])
    report = {"command": COMMAND + " " + " ".join(sys.argv[1:] if argv is None else argv),
              "minutes": round((time.monotonic() - start) / 60.0, 2), "stopped_early": stopped_early,
              "history": history, "classes": list(CLASSES), "confusion_documented": confusion.tolist()}
    (args.out / "training.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.out.parent / f".{args.out.name}-partial.pt").unlink(missing_ok=True)
    log.info("saved %s after %.1f minutes", args.out, report["minutes"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The training loop: epochs over the cached windows, a step-counted schedule, resumable at every epoch.

Everything random is drawn from generators seeded by ``(seed, epoch)``: the order of the windows,
which clips are flipped or reversed. The learning rate depends only on the step (linear warm-up,
then cosine to zero at the last step of the last epoch), never on the clock, so a run is the same
on a slower machine, and a resumed run is the same as one that was never stopped. A time budget
only decides whether to start another epoch.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from model.errors import ConfigError
from model.finetune.augment import Symmetries
from model.finetune.cache import WindowSet
from model.finetune.settings import FinetuneSettings
from model.timesformer import TimeSformer

log = logging.getLogger(__name__)

RESUME_DIR = ".resume"  # under --out: the state after the last finished epoch
EVAL_BATCH = 64


@dataclass
class History:
    epochs: list[dict] = field(default_factory=list)
    stopped_early: str | None = None  # why training stopped before the last epoch, if it did
    confusion: list[list[int]] | None = None  # on val, after the last epoch run


def lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine from ``peak`` to 0 at step ``total``."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(total - warmup, 1)
    return peak * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


@torch.inference_mode()
def evaluate(model: TimeSformer, windows: WindowSet, normalize: Callable, device: torch.device,
             num_labels: int) -> tuple[float, float, np.ndarray]:
    """Accuracy, mean loss and the confusion matrix (rows: truth, columns: prediction) over ``windows``."""
    model.eval()
    confusion = np.zeros((num_labels, num_labels), np.int64)
    loss_sum = 0.0
    for i in range(0, len(windows), EVAL_BATCH):
        x = normalize(torch.from_numpy(np.array(windows.frames[i:i + EVAL_BATCH])).to(device))
        y = torch.from_numpy(windows.labels[i:i + EVAL_BATCH]).to(device)
        logits = model(x).float()
        loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
        np.add.at(confusion, (y.cpu().numpy(), logits.argmax(-1).cpu().numpy()), 1)
    model.train()
    total = max(int(confusion.sum()), 1)
    return float(np.trace(confusion)) / total, loss_sum / total, confusion


class Trainer:
    """One run: ``run()`` trains the remaining epochs and returns the history."""

    def __init__(self, model: TimeSformer, masks: dict[str, torch.Tensor], normalize: Callable,
                 train: WindowSet, val: WindowSet, symmetries: Symmetries, settings: FinetuneSettings,
                 lr: float) -> None:
        self.model, self.masks, self.normalize = model, masks, normalize
        self.train_set, self.val_set, self.symmetries, self.s = train, val, symmetries, settings
        self.device = torch.device(settings.device)
        self.model.to(self.device)
        self.lr = lr
        self.per_step = settings.batch // 2 if settings.reverse_pairs else settings.batch  # windows drawn a step
        self.steps_per_epoch = math.ceil(len(train) / self.per_step)
        self.total = self.steps_per_epoch * settings.epochs
        self.warmup = int(round(settings.warmup * self.total))
        params = [p for p in model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(params, lr=lr, weight_decay=settings.weight_decay, betas=(0.9, 0.98))
        # partly fixed tensors: their fixed part is restored after every step (weight decay included)
        self.fixed = {name: (p.detach().clone(), masks[name].to(self.device) == 0)
                      for name, p in model.named_parameters() if p.requires_grad and not bool(masks[name].all())}
        self.history = History()
        self.first_epoch = 0
        self.state_path = settings.out / RESUME_DIR / "state.pt"

    # ----- resume -----------------------------------------------------------------------------
    def restore(self) -> None:
        """Continue from the state the last finished epoch saved under --out (``--resume``)."""
        if not self.state_path.is_file():
            raise ConfigError(f"--resume: {self.state_path} not found; nothing to resume, run without --resume")
        state = torch.load(self.state_path, map_location=self.device, weights_only=True)
        theirs, ours = state["settings"], self.s.fingerprint()
        changed = sorted(k for k in ours if theirs.get(k) != ours[k])
        if changed:
            raise ConfigError(f"--resume: the saved run used other settings ({', '.join(changed)}); "
                              "resume with the same flags, or start again without --resume")
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.history.epochs = list(state["epochs"])
        self.first_epoch = len(self.history.epochs)
        log.info("resuming after epoch %d of %d", self.first_epoch, self.s.epochs)

    def _save_state(self) -> None:
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp")
        torch.save({"model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
                    "epochs": self.history.epochs, "settings": self.s.fingerprint()}, tmp)
        os.replace(tmp, self.state_path)

    # ----- training ---------------------------------------------------------------------------
    def run(self, started: float) -> History:
        num_labels = self.model.config.num_labels
        for epoch in range(self.first_epoch, self.s.epochs):
            if self._out_of_time(epoch, started):
                break
            tick = time.monotonic()
            train_loss, train_acc, lr = self._epoch(epoch)
            val_acc, val_loss, confusion = evaluate(self.model, self.val_set, self.normalize, self.device, num_labels)
            row = {"epoch": epoch + 1, "train_loss": round(train_loss, 4), "train_acc": round(train_acc, 4),
                   "val_loss": round(val_loss, 4), "val_acc": round(val_acc, 4), "lr": float(f"{lr:.3g}"),
                   "seconds": round(time.monotonic() - tick, 1)}
            self.history.epochs.append(row)
            self.history.confusion = confusion.tolist()
            log.info("epoch %d/%d: train loss %.3f acc %.3f | val loss %.3f acc %.3f | lr %.2g | %.0f s",
                     epoch + 1, self.s.epochs, train_loss, train_acc, val_loss, val_acc, lr, row["seconds"])
            self._save_state()
        if self.history.confusion is None:  # resumed after the last epoch, or a budget below one epoch
            _, _, confusion = evaluate(self.model, self.val_set, self.normalize, self.device, num_labels)
            self.history.confusion = confusion.tolist()
        return self.history

    def _out_of_time(self, epoch: int, started: float) -> bool:
        budget = self.s.time_budget_min
        if budget is None or epoch == self.first_epoch:
            return False
        done = self.history.epochs[self.first_epoch:]
        per_epoch = sum(r["seconds"] for r in done) / max(len(done), 1)
        elapsed = time.monotonic() - started
        if elapsed + per_epoch <= 60.0 * budget:
            return False
        self.history.stopped_early = (f"time budget: stopped after epoch {epoch} of {self.s.epochs}; another epoch "
                                      f"(~{per_epoch / 60:.1f} min) would end past --time-budget {budget:g} min "
                                      f"({elapsed / 60:.1f} min used); --resume continues")
        log.warning("%s", self.history.stopped_early)
        return True

    def _epoch(self, epoch: int) -> tuple[float, float, float]:
        """One pass over the training windows; returns mean loss, accuracy and the last learning rate."""
        from tqdm import tqdm

        rng = np.random.default_rng([self.s.seed, epoch])
        order = rng.permutation(len(self.train_set))
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.s.precision == "bf16")
        loss_sum = right = seen = 0
        lr = self.lr
        bar = tqdm(range(self.steps_per_epoch), desc=f"epoch {epoch + 1}/{self.s.epochs}", unit="step",
                   mininterval=2.0, leave=False)
        augment = self.symmetries.with_reversed if self.s.reverse_pairs else self.symmetries.apply
        for i in bar:
            idx = np.sort(order[i * self.per_step:(i + 1) * self.per_step])  # sorted: sequential memmap reads
            clips = torch.from_numpy(self.train_set.frames[idx])  # (B, T, 3, h, w) uint8
            clips, labels = augment(clips, self.train_set.labels[idx], rng)
            x = self.normalize(clips.to(self.device))
            y = torch.from_numpy(labels).to(self.device)
            lr = lr_at(epoch * self.steps_per_epoch + i, self.total, self.lr, self.warmup)
            for group in self.opt.param_groups:
                group["lr"] = lr
            with autocast:
                logits = self.model(x)
            loss = F.cross_entropy(logits.float(), y, label_smoothing=self.s.label_smoothing)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
            self.opt.step()
            self._restore_fixed()
            loss_sum += float(loss.detach()) * len(y)
            right += int((logits.argmax(-1) == y).sum())
            seen += len(y)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{right / seen:.3f}", lr=f"{lr:.1e}", refresh=False)
        bar.close()
        return loss_sum / seen, right / seen, lr

    @torch.no_grad()
    def _restore_fixed(self) -> None:
        params = dict(self.model.named_parameters())
        for name, (value, keep) in self.fixed.items():
            params[name].copy_(torch.where(keep, value, params[name]))


def remove_state(out: Path) -> None:
    """Drop the resume state once every epoch is done (the checkpoint is complete)."""
    state = out / RESUME_DIR
    for path in sorted(state.glob("*")):
        path.unlink()
    if state.is_dir():
        state.rmdir()

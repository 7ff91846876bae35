"""What one fine-tuning run does, as one frozen, validated value (built from the CLI's flags at the edge)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model.config import Sampling
from model.errors import ConfigError

PRECISIONS = ("fp32", "bf16")  # bf16: autocast on CPU and CUDA, weights and optimizer state stay fp32


@dataclass(frozen=True)
class Freeze:
    """Which pretrained weights stay as they are: ``backbone`` (all but the head), ``last:K`` (all but the
    last K blocks, the final norm and the head), or nothing (``kind`` None)."""

    kind: str | None = None
    last: int = 0

    @classmethod
    def parse(cls, text: str | None) -> Freeze:
        if text is None or text == "none":
            return cls()
        if text == "backbone":
            return cls("backbone")
        head, _, count = text.partition(":")
        if head == "last" and count.isdigit() and int(count) > 0:
            return cls("last", int(count))
        raise ConfigError(f"--freeze {text!r}: use backbone, last:K (train only the last K blocks and the head), "
                          "or none")

    def describe(self) -> str:
        return {None: "none", "backbone": "backbone"}.get(self.kind, f"last:{self.last}")


@dataclass(frozen=True)
class FinetuneSettings:
    """One run of ``python -m model.finetune``; every field is a flag (``--help`` says what each does)."""

    data: Path
    base: str
    out: Path
    epochs: int = 10
    batch: int = 16
    lr: float | None = None  # None: 1e-3 from scratch, 1e-4 from a trained checkpoint
    weight_decay: float = 0.05
    warmup: float = 0.05  # share of all steps
    label_smoothing: float = 0.05
    seed: int = 0
    device: str = "cpu"
    precision: str = "fp32"
    threads: int = 0
    freeze: Freeze = Freeze()
    prior: str | None = None
    sampling: Sampling | None = None  # None: the base's declared sampling, else DEFAULT_SPAN_S
    windows_per_video: int = 4
    reverse_pairs: bool = False  # each step: batch / 2 windows and the same played backwards
    val: Path | None = None  # a CSV's validation CSV; None: a share of the CSV, chosen by path hash
    val_share: float = 0.1
    symmetries: Path | None = None  # None: DATA/symmetries.json when it exists
    domain: str | None = None
    license: str | None = None
    cache: Path | None = None
    workers: int = 1
    resume: bool = False
    time_budget_min: float | None = None

    def __post_init__(self) -> None:
        for name in ("epochs", "batch", "windows_per_video", "workers"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.lr is not None and not self.lr > 0:
            raise ConfigError(f"--lr must be positive, got {self.lr}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"--precision {self.precision!r}: use one of {', '.join(PRECISIONS)}")
        if not 0.0 <= self.warmup < 1.0 or not 0.0 <= self.label_smoothing < 1.0 or not 0.0 < self.val_share < 1.0:
            raise ConfigError("--warmup and --label-smoothing must lie in [0, 1), --val-share in (0, 1)")
        if self.time_budget_min is not None and not self.time_budget_min > 0:
            raise ConfigError(f"--time-budget must be a positive number of minutes, got {self.time_budget_min}")
        if self.reverse_pairs and (self.batch < 2 or self.batch % 2):
            raise ConfigError(f"--reverse-pairs: --batch counts both halves of each pair, so it must be even, got {self.batch}")
        if self.threads < 0:
            raise ConfigError(f"--threads must be 0 (torch's default) or more, got {self.threads}")

    def fingerprint(self) -> dict[str, Any]:
        """The settings that decide the result: a resumed run must match them (budget and resume aside)."""
        out = {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}
        for name in ("resume", "time_budget_min", "cache", "workers"):
            out.pop(name)
        return out


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Freeze):
        return value.describe()
    if isinstance(value, Sampling):
        return value.to_hf_dict()
    return value

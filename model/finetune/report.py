"""``training.json`` beside the weights: how to run it again and what it reached."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from model.finetune.loop import History

PACKAGES = ("torch", "numpy", "opencv-python", "safetensors", "timesformer-stream")


def versions() -> dict[str, str]:
    """Python, the packages that decide the numbers, and the source tree's git commit when it has one."""
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    out["git_commit"] = _git("rev-parse", "HEAD") or "unknown"
    changed = _git("status", "--porcelain", "--", "model")
    # the commit alone does not say what ran when the model package had uncommitted changes
    out["git_model_changes"] = "unknown" if changed is None else (changed.splitlines() or "none")
    return out


def _git(*args: str) -> str | None:
    """What ``git ARGS`` prints in the package's source tree; None outside a git checkout."""
    here = Path(__file__).resolve().parents[1]
    try:
        done = subprocess.run(["git", *args], cwd=here, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def machine() -> dict[str, Any]:
    import torch

    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads()}


def write(out: Path, *, argv: list[str], settings: dict, data: dict, history: History, labels: tuple[str, ...],
          minutes: float, base: str) -> Path:
    """Write ``out/training.json``; returns its path."""
    report = {
        "command": " ".join(["python -m model.finetune", *map(_quote, argv)]),
        "seed": settings["seed"],
        "base": base,
        "settings": settings,
        "versions": versions(),
        "machine": machine(),
        "data": data,
        "labels": list(labels),
        "minutes": round(minutes, 2),
        "epochs_run": len(history.epochs),
        "stopped_early": history.stopped_early,
        "history": history.epochs,
        "confusion_val": history.confusion,
        "executable": sys.executable,
    }
    path = out / "training.json"
    path.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return path


def _quote(word: str) -> str:
    import shlex

    return shlex.quote(word)

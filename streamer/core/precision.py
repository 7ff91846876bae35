"""``precision: auto``: the precision measured fastest on this device, model and batch size, else a fixed rule.

``python run_stream.py --bench`` measures each precision and stores the rows and its recommendation
in a small JSON cache (``$TIMESFORMER_STREAM_CACHE``, else ``$XDG_CACHE_HOME/timesformer-stream``,
else ``~/.cache/timesformer-stream``; file ``precision.json``), keyed by device name, model source
and batch size. ``auto`` reads the entry for the configured ``max_batch`` (or the nearest measured
batch of the same device and model). With no entry the fallback rule holds: int8 on CUDA (the
memory-saving choice the design names), fp32 on CPU (logged at DEBUG, with how to measure).

Recommendation rule (:func:`recommend`): among the measured precisions whose top-1 agreement with
the reference (fp16 on CUDA, fp32 on CPU) is at least ``MIN_AGREEMENT``, the lowest latency per clip
at that batch; the reference itself always qualifies.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CACHE_ENV = "TIMESFORMER_STREAM_CACHE"
CACHE_FILE = "precision.json"
MIN_AGREEMENT = 0.99  #: top-1 agreement with the reference a precision needs to be recommended
CUDA_PRECISIONS = ("fp16", "bf16", "int8")
CPU_PRECISIONS = ("fp32", "bf16", "int8")


def reference_precision(device: str) -> str:
    return "fp16" if device.startswith("cuda") else "fp32"


def fallback_precision(device: str) -> str:
    return "int8" if device.startswith("cuda") else "fp32"


def cache_path() -> Path:
    root = os.environ.get(CACHE_ENV)
    if root:
        return Path(root) / CACHE_FILE
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "timesformer-stream" / CACHE_FILE


def device_name(device: str) -> str:
    """A name for the physical device: the GPU's model, or the CPU's model and core count."""
    if device.startswith("cuda"):
        import torch

        index = torch.device(device).index or 0
        return torch.cuda.get_device_name(index)
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"cpu {cpu} x{os.cpu_count()}"


def cache_key(device_label: str, model_source: str) -> str:
    return f"{device_label} | {model_source}"


def read_cache(path: Path | None = None) -> dict[str, Any]:
    path = path or cache_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("precision cache %s is unreadable (%s); ignoring it (rerun --bench to rewrite it)", path, exc)
        return {}
    return data if isinstance(data, dict) else {}


def write_entry(device_label: str, model_source: str, batch: int, entry: dict[str, Any],
                path: Path | None = None) -> Path:
    """Store one (device, model, batch) measurement; written to a temporary file and renamed (atomic)."""
    path = path or cache_path()
    data = read_cache(path)
    data.setdefault(cache_key(device_label, model_source), {})[str(batch)] = entry
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".precision-", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, sort_keys=True)
    os.replace(tmp, path)
    return path


def recommend(rows: list[dict[str, Any]], reference: str, min_agreement: float = MIN_AGREEMENT) -> str | None:
    """The precision to use at one batch size, from rows ``{precision, ms_per_clip, agreement}``."""
    ok = [r for r in rows if r.get("ms_per_clip") is not None
          and (r["precision"] == reference or (r.get("agreement") or 0.0) >= min_agreement)]
    if not ok:
        return None
    return min(ok, key=lambda r: r["ms_per_clip"])["precision"]


def lookup(device_label: str, model_source: str, batch: int, path: Path | None = None) -> tuple[str, int] | None:
    """(recommended precision, measured batch) for this device and model: the batch itself, else the nearest."""
    entries = read_cache(path).get(cache_key(device_label, model_source))
    if not isinstance(entries, dict):
        return None
    measured = sorted((abs(int(b) - batch), int(b)) for b, e in entries.items()
                      if b.isdigit() and isinstance(e, dict) and e.get("recommended"))
    if not measured:
        return None
    best = measured[0][1]
    return str(entries[str(best)]["recommended"]), best


def choose(device: str, model_source: str, batch: int, path: Path | None = None) -> str:
    """What ``precision: auto`` runs: the cached measurement, else the fallback rule (logged either way)."""
    label = device_name(device)
    found = lookup(label, model_source, batch, path)
    if found is not None:
        precision, measured = found
        log.info("precision auto: %s (measured by --bench on %s for %s at batch %d)", precision, label,
                 model_source, measured)
        return precision
    precision = fallback_precision(device)
    log.debug("precision auto: %s (no measurement for %s on %s; run `python run_stream.py --bench` to choose "
             "by measurement)", precision, model_source, label)
    return precision


__all__ = ["choose", "recommend", "lookup", "write_entry", "read_cache", "cache_path", "device_name",
           "reference_precision", "fallback_precision", "MIN_AGREEMENT", "CUDA_PRECISIONS", "CPU_PRECISIONS"]

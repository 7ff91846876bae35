"""``precision: auto``: the precision measured fastest on this device, model and batch size, else a fixed rule.

``python run_stream.py --bench`` measures each precision and stores the rows and its recommendation
in a small JSON cache (``$TIMESFORMER_STREAM_CACHE``, else ``$XDG_CACHE_HOME/timesformer-stream``,
else ``~/.cache/timesformer-stream``; file ``precision.json``), keyed by device name, model source
and batch size. ``auto`` reads the entry for the configured ``max_batch`` (or the nearest measured
batch of the same device and model). With no entry the rule (:func:`fallback_precision`) holds:

* CPU: ``int8`` (int8-x86) where the CPU has VNNI (AVX512-VNNI, AVX-VNNI or AMX) and PyTorch has its
  FBGEMM engine, else ``bf16`` where it has AVX512_BF16 or AMX, else ``fp32`` (a CPU without either runs
  int8 with 7-bit weights and bf16 emulated; ``--bench`` measures whether int8 still wins there);
* CUDA: ``int8`` (the fast 8-bit path, int8-ao) where torchao is installed, else ``fp16``.

Either way the choice and its reason are logged at start. ``int8`` on CUDA is the fastest 8-bit
path that ``--bench`` measured to agree (``int8-ao`` or ``fp8``); ``int8-bnb`` is asked for by name.

Recommendation rule (:func:`recommend`): among the measured precisions whose top-1 agreement with
the reference (fp16 on CUDA, fp32 on CPU) is at least ``MIN_AGREEMENT``, the lowest latency per clip
at that batch; the reference itself always qualifies. Agreement counts only on real clips (see
streamer/core/bench.py); where it is meaningless (random weights) nothing is cached.
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
CUDA_PRECISIONS = ("fp16", "bf16", "int8-bnb", "int8-ao", "fp8")
CPU_PRECISIONS = ("fp32", "bf16", "int8-x86", "int8-bnb")
FAST_8BIT = ("int8-x86", "int8-ao", "fp8")  #: what ``int8`` may stand for (int8-bnb saves memory, not time)


def reference_precision(device: str) -> str:
    return "fp16" if device.startswith("cuda") else "fp32"


def cpu_features() -> dict[str, bool]:
    """The CPU features the rule reads: VNNI (int8 without saturation), native bf16, the int8 engine."""
    import torch

    caps = torch._C._cpu._get_cpu_capability()
    return {"vnni": any(caps.get(f) for f in ("avx512_vnni", "avx_vnni", "amx_int8")),
            "bf16": any(caps.get(f) for f in ("avx512_bf16", "amx_bf16")),
            "int8": "fbgemm" in torch.backends.quantized.supported_engines and bool(caps.get("avx2"))}


def fallback_rule(device: str) -> tuple[str, str]:
    """(precision, why) when nothing was measured."""
    if device.startswith("cuda"):
        import importlib.util

        if importlib.util.find_spec("torchao") is not None:
            return "int8", "CUDA with torchao installed: int8 dynamic quantization (int8-ao)"
        return "fp16", "CUDA without torchao (pip install 'timesformer-stream[cuda8]' for 8-bit)"
    cpu = cpu_features()
    if cpu["vnni"] and cpu["int8"]:
        return "int8", "the CPU has VNNI: int8 GEMMs (int8-x86)"
    if cpu["bf16"]:
        return "bf16", "the CPU has native bf16 (AVX512_BF16 or AMX) but no VNNI"
    return "fp32", "the CPU has neither VNNI nor native bf16"


def fallback_precision(device: str) -> str:
    return fallback_rule(device)[0]


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
    """What ``precision: auto`` runs: the cached measurement, else the fallback rule (see :func:`why`)."""
    precision, reason = _choice(device, model_source, batch, path)
    log.debug("precision auto: %s (%s)", precision, reason)
    return precision


def why(device: str, model_source: str, batch: int, path: Path | None = None) -> str:
    """The reason ``precision: auto`` chose what it chose, in words (logged at start, once the model loaded)."""
    return _choice(device, model_source, batch, path)[1]


def _choice(device: str, model_source: str, batch: int, path: Path | None) -> tuple[str, str]:
    label = device_name(device)
    found = lookup(label, model_source, batch, path)
    if found is not None:
        precision, measured = found
        return precision, (f"the fastest precision agreeing with the reference, measured by --bench on {label} "
                           f"for {model_source} at batch {measured}")
    precision, reason = fallback_rule(device)
    return precision, (f"{reason}; nothing measured for {model_source} on {label}: `python run_stream.py --bench` "
                       "chooses by measurement")


def fast_8bit(device: str, model_source: str | None, batch: int, path: Path | None = None) -> str:
    """What ``int8`` runs: on CUDA the fastest 8-bit path ``--bench`` measured to agree, else ``int8`` (the
    loader's default for the device: int8-x86 on CPU, int8-ao on CUDA)."""
    if model_source is None:
        return "int8"
    entries = read_cache(path).get(cache_key(device_name(device), model_source))
    if not isinstance(entries, dict):
        return "int8"
    near = sorted((abs(int(b) - batch), b) for b in entries if b.isdigit() and isinstance(entries[b], dict))
    if not near:
        return "int8"
    rows = [r for r in entries[near[0][1]].get("rows", []) if r.get("precision") in FAST_8BIT]
    best = recommend(rows, reference="", min_agreement=MIN_AGREEMENT)
    if best is not None:
        log.info("precision int8: %s (the fastest 8-bit path --bench measured to agree at batch %s)", best,
                 near[0][1])
    return best or "int8"


__all__ = ["choose", "why", "fast_8bit", "fallback_rule", "cpu_features", "FAST_8BIT", "recommend", "lookup", "write_entry", "read_cache", "cache_path", "device_name",
           "reference_precision", "fallback_precision", "MIN_AGREEMENT", "CUDA_PRECISIONS", "CPU_PRECISIONS"]

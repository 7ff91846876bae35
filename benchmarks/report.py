"""Writing one benchmark's section of BENCHMARKS.md (shared by every script in benchmarks/).

Each script owns the block between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` and replaces only
that block, so the scripts can run in any order without touching each other's numbers.
"""

from __future__ import annotations

from pathlib import Path

BENCHMARKS_MD = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"


def write_section(name: str, body: str, path: Path = BENCHMARKS_MD) -> None:
    """Replace (or append) the section ``name`` of ``path`` with ``body``."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{body.rstrip()}\n{end}"
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    if start in text and end in text:
        text = text[:text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text, encoding="utf-8")


def emit(name: str, body: str, write: bool = True) -> None:
    """Print a benchmark's section and, when ``write``, put it into BENCHMARKS.md (:func:`write_section`)."""
    print(body)
    if write:
        write_section(name, body)


def cpu_model() -> str:
    """The processor's model name from ``lscpu`` (e.g. "AMD EPYC 7B13"), for the machine line of a section."""
    import platform
    import re
    import subprocess

    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    found = re.search(r"^Model name:\s*(.+)$", out, re.M)
    return found.group(1).strip() if found else (platform.processor() or "unknown CPU")


def machine(device: str = "cpu") -> str:
    """The machine line of a section: CPU model and cores, the GPU when ``device`` is CUDA, Python and
    torch versions, today's date."""
    import datetime
    import os
    import platform

    import torch

    gpu = f", {torch.cuda.get_device_name(torch.device(device))}" if device.startswith("cuda") else ""
    return (f"{cpu_model()}, {os.cpu_count()} cores{gpu}; Python {platform.python_version()}, "
            f"torch {torch.__version__}; date {datetime.date.today().isoformat()}")


def simd() -> str:
    """The widest x86 vector extension the CPU reports, for the machine line of a section."""
    try:
        flags = set(next(line for line in Path("/proc/cpuinfo").read_text().splitlines()
                         if line.startswith("flags")).split(":", 1)[1].split())
    except (OSError, StopIteration):
        return "SIMD unknown"
    return "AVX-512" if "avx512f" in flags else "AVX2 (no AVX-512)" if "avx2" in flags else "no AVX2"


def load_average() -> str:
    """The 1, 5 and 15 minute load averages ("5.1, 5.8, 5.8"): how busy the shared machine was."""
    import os

    return ", ".join(f"{v:.1f}" for v in os.getloadavg())

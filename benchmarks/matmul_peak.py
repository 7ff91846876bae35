"""The device's measured dense matmul peak (TFLOP/s): the yardstick for a model's achieved throughput.

A vendor's datasheet peak is rarely reached by any kernel; what a square ``size x size`` matmul in
the model's dtype achieves on this device, now, is the fair denominator for "fraction of peak".

    from benchmarks.matmul_peak import matmul_peak_tflops
    peak = matmul_peak_tflops("cuda")            # bf16, 8192^3: ~0.5 s on an H100
    peak = matmul_peak_tflops("cpu", torch.float32)   # 1024^3 by default on CPU: a few seconds

    python -m benchmarks.matmul_peak --device cpu --dtype fp32   # one number, printed
"""

from __future__ import annotations

import argparse
import logging
import math
import statistics
import sys
import time

import torch

log = logging.getLogger("matmul_peak")

DEFAULT_SIZE = {"cuda": 8192, "cpu": 1024}  #: square matrix side when ``size`` is not given
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
_WARMUP_S = {"cuda": 0.5, "cpu": 0.0}  #: minimum warm-up time (GPU clocks ramp up, cuBLAS picks a kernel)
_REPEAT_S = 0.02  #: a timed repeat runs enough matmuls back to back to last about this long


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak_tflops(device: str | torch.device, dtype: torch.dtype = torch.bfloat16, size: int | None = None,
                       repeats: int = 20) -> float:
    """Dense ``(size x size) @ (size x size)`` throughput in TFLOP/s (2 FLOPs per multiply-add).

    ``size`` defaults to 8192 on CUDA and 1024 elsewhere (a CPU at 8192 would take minutes). After a
    warm-up (at least 3 matmuls, and at least half a second on CUDA), each of ``repeats`` timed runs
    does ``k`` matmuls back to back into a preallocated output (``k`` chosen so a run lasts ~20 ms),
    synchronizing the device before and after; the median run gives the rate.
    """
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    n = size if size is not None else DEFAULT_SIZE.get(device.type, DEFAULT_SIZE["cpu"])
    if n <= 0 or repeats <= 0:
        raise ValueError(f"size and repeats must be positive, got size={n}, repeats={repeats}")
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g).to(device=device, dtype=dtype)  # random data: realistic power draw
    b = torch.randn(n, n, generator=g).to(device=device, dtype=dtype)
    out = torch.empty(n, n, device=device, dtype=dtype)

    with torch.inference_mode():
        _sync(device)
        start, done = time.perf_counter(), 0
        while done < 3 or time.perf_counter() - start < _WARMUP_S.get(device.type, 0.0):
            torch.matmul(a, b, out=out)
            done += 1
            if done % 8 == 0:
                _sync(device)  # keep the host from queueing far ahead of the clock above
        _sync(device)
        one = _time_run(a, b, out, 1, device)
        k = max(1, min(1000, math.ceil(_REPEAT_S / max(one, 1e-9))))
        times = [_time_run(a, b, out, k, device) / k for _ in range(repeats)]
    seconds = statistics.median(times)
    tflops = 2.0 * n**3 / seconds / 1e12
    log.info("matmul peak on %s: %s %dx%d, %d x %d matmuls, median %.3f ms -> %.3g TFLOP/s",
             device, dtype, n, n, repeats, k, seconds * 1e3, tflops)
    return tflops


def _time_run(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor, k: int, device: torch.device) -> float:
    """Seconds for ``k`` matmuls in a row (CUDA events on the GPU, the host clock elsewhere)."""
    if device.type == "cuda":
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        for _ in range(k):
            torch.matmul(a, b, out=out)
        end.record()
        end.synchronize()
        return begin.elapsed_time(end) / 1e3
    start = time.perf_counter()
    for _ in range(k):
        torch.matmul(a, b, out=out)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="bf16", help="matrix element type")
    p.add_argument("--size", type=int, help="matrix side (default 8192 on CUDA, 1024 on CPU)")
    p.add_argument("--repeats", type=int, default=20, help="timed runs (median reported)")
    args = p.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        p.error(f"--device {args.device}: no CUDA device is present")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    tflops = matmul_peak_tflops(args.device, DTYPES[args.dtype], args.size, args.repeats)
    print(f"{args.device} {args.dtype} dense matmul: {tflops:.3g} TFLOP/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The device-facing benchmark code: the matmul peak probe, bench_model's utilization columns and
bench_pipeline's ``--device``. Each runs on CPU here; the ``gpu`` variants run the same calls on CUDA
where a GPU is present (skipped elsewhere, see tests/conftest.py). Nothing is written to BENCHMARKS.md.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
BENCHMARKS = REPO / "benchmarks"
for folder in (BENCHMARKS, REPO):  # bench_model imports its siblings by name; the others are benchmarks.*
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from matmul_peak import matmul_peak_tflops  # noqa: E402  (benchmarks/matmul_peak.py)

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]


@pytest.mark.parametrize("device", DEVICES)
def test_matmul_peak_is_a_positive_rate(device):
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    tflops = matmul_peak_tflops(device, dtype, size=128, repeats=3)
    assert math.isfinite(tflops) and tflops > 0


def test_matmul_peak_rejects_a_bad_size():
    with pytest.raises(ValueError, match="size"):
        matmul_peak_tflops("cpu", torch.float32, size=0)


@pytest.mark.parametrize("device", DEVICES)
def test_bench_model_row_reports_tflops_and_share_of_peak(tmp_path, device):
    import bench_model

    folder = bench_model.make_checkpoint(tmp_path / "m", bench_model.SMOKE)
    precision = "fp32" if device == "cpu" else "bf16"
    row = bench_model.measure(folder, bench_model.SMOKE, device, precision, batch=2, repeats=1, warmup=0,
                              cpu_memory=False, peak_tflops=1.0)
    flops = bench_model.model_flops(bench_model.geometry_config(bench_model.SMOKE))
    assert row["ours_tflops"] == pytest.approx(flops / (row["ours_ms"] / 1e3) / 1e12)
    assert row["pct_peak"] == pytest.approx(100 * row["ours_tflops"])  # against a peak of 1 TFLOP/s
    line = bench_model.table([row]).splitlines()[2]
    assert f"| {row['ours_tflops']:.3g} | {row['pct_peak']:.1f} |" in line


def test_bench_pipeline_device_option_parses():
    from benchmarks import bench_pipeline

    assert bench_pipeline.parse_args([]).device == "cpu"
    args = bench_pipeline.parse_args(["--device", "cpu", "--precision", "fp32", "--smoke"])
    assert (args.device, args.precision, args.streams, args.no_write) == ("cpu", "fp32", [1], True)
    with pytest.raises(SystemExit) as exit_:
        bench_pipeline.parse_args(["--device", "tpu"])
    assert exit_.value.code == 2
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit) as exit_:
            bench_pipeline.parse_args(["--device", "cuda"])
        assert exit_.value.code == 2


@pytest.mark.timeout(120)
@pytest.mark.parametrize("device", DEVICES)
def test_bench_pipeline_smoke_run_on_the_device(device, monkeypatch, capsys):
    """The whole pipeline, the model on ``device``: a live row with capture->publish p50/p99, nothing written."""
    from benchmarks import bench_pipeline

    def refuse(*_args, **_kwargs):
        raise AssertionError("--smoke must not write BENCHMARKS.md")

    monkeypatch.setattr(bench_pipeline, "write_section", refuse)
    switch = sys.getswitchinterval()  # main() tunes the interpreter as run_stream.py does: put it back
    try:
        assert bench_pipeline.main(["--smoke", "--device", device, "--seconds", "1.5"]) == 0
    finally:
        sys.setswitchinterval(switch)
    out = capsys.readouterr().out
    assert "capture→publish p50 ms" in out
    live = [line for line in out.splitlines() if line.startswith(f"| {device} | fp32 | 1 | live |")]
    assert live, out
    cells = [c.strip() for c in live[-1].strip("|").split("|")]
    p50, p99 = float(cells[8]), float(cells[9])  # capture->publish, measured in live mode
    assert 0 < p50 <= p99

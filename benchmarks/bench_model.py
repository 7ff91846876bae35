"""Model latency and peak memory: our TimeSformer against transformers' eager implementation.

Same run, same weights (a random base-geometry checkpoint written by transformers' save_pretrained and
loaded by both), same input. Latency is per clip (batch time / batch), the median of ``--repeats``
timed runs after ``--warmup`` untimed ones, ours and the reference interleaved so that load on a
shared machine hits both alike. Peak memory: on CUDA, ``max_memory_allocated`` above what was allocated
before the forward; on CPU, the peak RSS growth (VmHWM) of a fresh process that loads the model and runs
one forward, measured from after its imports. Utilization: ours' achieved TFLOP/s (the geometry's FLOPs,
``model_flops``, over ours' time per clip) and its share of the device's dense matmul peak measured in
the same run (``benchmarks/matmul_peak.py``: bf16 on CUDA, fp32 on CPU).

    python benchmarks/bench_model.py              # CPU fp32 base 8x224, and the CUDA matrix when present
    python benchmarks/bench_model.py --smoke      # tiny model, every code path, nothing written

Writes its own section of BENCHMARKS.md (between the bench_model markers) unless --no-write/--smoke.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from model import load_model  # noqa: E402
from model.config import TimesformerConfig as ModelConfig  # noqa: E402  (transformers has one too)
from matmul_peak import matmul_peak_tflops  # noqa: E402  (benchmarks/matmul_peak.py)
from report import machine, write_section  # noqa: E402  (benchmarks/report.py)

log = logging.getLogger("bench_model")
BASE = dict(image_size=224, patch_size=16, num_frames=8, hidden_size=768, num_hidden_layers=12,
            num_attention_heads=12, intermediate_size=3072)
SMOKE = dict(image_size=32, patch_size=8, num_frames=4, hidden_size=64, num_hidden_layers=2,
             num_attention_heads=4, intermediate_size=128)
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16, "int8": torch.float16}
SECTION = "bench_model"


def model_flops(config: ModelConfig, *, shortcuts: bool = False) -> int:
    """Matmul FLOPs of one clip's forward pass, counted from the geometry (2 FLOPs per multiply-add).

    Counted: the patch embedding (a conv: one ``C*p*p -> D`` matmul per patch), every linear (qkv,
    attention output projections, temporal_fc, MLP, classifier) and both attention products (QK^T and
    AV). Not counted: norms, softmax, activations, residual adds and embeddings (O(tokens x D), well
    under 1% at the base geometry). With T frames, N = (image/patch)^2 patches, D hidden, F MLP width:

    * ``divided_space_time``, per block: temporal attention, N sequences of T tokens (qkv 6*TN*D^2,
      QK^T and AV 4*N*T^2*D, proj and temporal_fc 2*TN*D^2 each); spatial attention, T sequences of
      [cls, N patches] (qkv 6*T(1+N)*D^2, QK^T and AV 4*T(1+N)^2*D, proj 2*T(1+N)*D^2); the MLP on the
      clip's cls token and every patch token, 4*(1+TN)*D*F.
    * ``space_only``: T sequences of 1+N tokens; ``joint_space_time``: one sequence of 1+TN tokens;
      attention and MLP on every token.
    * plus the patch embedding 2*TN*(C*p^2)*D and the classifier 2*D*labels.

    ``shortcuts=False`` is the architecture's count, the same for every implementation (what "model
    FLOPs" means in a utilization figure). ``shortcuts=True`` is what ours executes under
    ``torch.inference_mode``: temporal_attn.proj and temporal_fc folded into one linear, and the last
    block's output projection and MLP run for the cls token(s) only.
    """
    t, d, f = config.num_frames, config.hidden_size, config.intermediate_size
    n = config.grid_size**2

    def attention(seqs: int, length: int, out_tokens: int) -> int:
        """qkv on every token, QK^T and AV over whole sequences, the output projection on ``out_tokens``."""
        return 6 * seqs * length * d * d + 4 * seqs * length**2 * d + 2 * out_tokens * d * d

    def mlp(tokens: int) -> int:
        return 4 * tokens * d * f

    if config.attention_type == "divided_space_time":
        temporal = attention(n, t, t * n) + (0 if shortcuts else 2 * t * n * d * d)  # + temporal_fc unless folded
        block = temporal + attention(t, 1 + n, t * (1 + n)) + mlp(1 + t * n)
        last = temporal + attention(t, 1 + n, t) + mlp(1) if shortcuts else block
    else:
        seqs, length = (t, 1 + n) if config.attention_type == "space_only" else (1, 1 + t * n)
        block = attention(seqs, length, seqs * length) + mlp(seqs * length)
        last = attention(seqs, length, seqs) + mlp(seqs) if shortcuts else block
    embed = 2 * t * n * config.num_channels * config.patch_size**2 * d
    return embed + (config.num_hidden_layers - 1) * block + last + 2 * d * config.num_labels


def geometry_config(geometry: dict, num_labels: int = 400) -> ModelConfig:
    """Our config for a geometry dict (BASE, SMOKE), with as many labels as make_checkpoint writes."""
    return ModelConfig(labels=tuple(f"LABEL_{i}" for i in range(num_labels)), **geometry)


def make_checkpoint(folder: Path, geometry: dict, num_labels: int = 400) -> Path:
    from transformers import TimesformerConfig, TimesformerForVideoClassification

    torch.manual_seed(0)
    ref = TimesformerForVideoClassification(TimesformerConfig(num_labels=num_labels, **geometry))
    ref.save_pretrained(str(folder))
    return folder


def load_impl(impl: str, folder: Path, precision: str, device: str):
    """A callable ``pixel_values -> logits`` and the input dtype it takes."""
    if impl == "ours":
        loaded = load_model(folder, precision=precision, device=device)
        return loaded.network, loaded.input_dtype
    from transformers import TimesformerForVideoClassification

    if precision == "int8":
        from transformers import BitsAndBytesConfig

        quant = BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=["classifier"])
        ref = TimesformerForVideoClassification.from_pretrained(
            str(folder), quantization_config=quant, dtype=torch.float16 if device == "cuda" else torch.float32,
            device_map={"": device})
    else:
        ref = TimesformerForVideoClassification.from_pretrained(str(folder), dtype=DTYPES[precision]).to(device)
    ref.eval()
    dtype = next(p.dtype for p in ref.parameters() if p.is_floating_point())
    return (lambda x: ref(pixel_values=x).logits), dtype


def clip_input(batch: int, geometry: dict, device: str, dtype: torch.dtype) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, geometry["num_frames"], 3, geometry["image_size"], geometry["image_size"], generator=g)
    return x.to(device=device, dtype=dtype)


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_interleaved(fns: dict, inputs: dict, device: str, repeats: int, warmup: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in fns}
    with torch.inference_mode():
        for _ in range(warmup):
            for name, fn in fns.items():
                fn(inputs[name])
        sync(device)
        for i in range(repeats):  # alternate the order so neither side always runs second
            for name, fn in (list(fns.items()) if i % 2 == 0 else list(fns.items())[::-1]):
                sync(device)
                start = time.perf_counter()
                fn(inputs[name])
                sync(device)
                times[name].append(time.perf_counter() - start)
    return times


def cuda_peak_mb(fn, x) -> float:
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    with torch.inference_mode():
        fn(x)
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - before) / 2**20


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def cpu_peak_worker(impl: str, folder: str, precision: str, batch: int, geometry: dict) -> None:
    """Run in a fresh process: print the peak RSS growth (MB) of loading the model and one forward."""
    import transformers  # noqa: F401  (both impls pay the same imports before the baseline)

    before = _status_kb("VmRSS")
    fn, dtype = load_impl(impl, Path(folder), precision, "cpu")
    x = clip_input(batch, geometry, "cpu", dtype)
    with torch.inference_mode():
        fn(x)
    print(json.dumps({"peak_mb": (_status_kb("VmHWM") - before) / 1024}))


def cpu_peak_mb(impl: str, folder: Path, precision: str, batch: int, geometry: dict) -> float | None:
    cmd = [sys.executable, __file__, "--_peak-worker", json.dumps([impl, str(folder), precision, batch, geometry])]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)["peak_mb"]
    log.warning("peak-memory worker for %s failed: %s", impl, done.stderr.strip().splitlines()[-1:] or "?")
    return None


def measure(folder: Path, geometry: dict, device: str, precision: str, batch: int, repeats: int,
            warmup: int, cpu_memory: bool, peak_tflops: float | None = None) -> dict:
    """One table row. With ``peak_tflops`` (the device's measured matmul peak), also ours' achieved
    TFLOP/s (``model_flops`` of the geometry per clip over ours' time per clip) and its share of the peak."""
    row = {"device": device, "precision": precision, "batch": batch}
    fns, inputs, skipped = {}, {}, {}
    for impl in ("ours", "ref"):
        try:
            fn, dtype = load_impl(impl, folder, precision, device)
        except Exception as exc:  # a reference that cannot run this precision here is reported, not fatal
            skipped[impl] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:80]}"
            continue
        fns[impl], inputs[impl] = fn, clip_input(batch, geometry, device, dtype)
    times = time_interleaved(fns, inputs, device, repeats, warmup)
    for impl in ("ours", "ref"):
        if impl in skipped:
            row[f"{impl}_ms"], row[f"{impl}_mb"], row[f"{impl}_note"] = None, None, skipped[impl]
            continue
        row[f"{impl}_ms"] = statistics.median(times[impl]) / batch * 1e3
    row["ours_tflops"] = row["pct_peak"] = None
    if row["ours_ms"]:
        row["ours_tflops"] = model_flops(geometry_config(geometry)) / (row["ours_ms"] / 1e3) / 1e12
        if peak_tflops:
            row["pct_peak"] = 100.0 * row["ours_tflops"] / peak_tflops
    if "ours" in times and "ref" in times and times["ours"] and times["ref"]:
        # back-to-back pairs see the same machine load: the median of their ratios is the steadier number
        row["paired"] = statistics.median([o / r for o, r in zip(times["ours"], times["ref"])])
    for impl in ("ours", "ref"):
        if impl in skipped:
            continue
        if device == "cuda":
            row[f"{impl}_mb"] = cuda_peak_mb(fns[impl], inputs[impl])
        else:
            row[f"{impl}_mb"] = cpu_peak_mb(impl, folder, precision, batch, geometry) if cpu_memory else None
    del fns, inputs
    if device == "cuda":
        torch.cuda.empty_cache()
    return row


def fmt(value, spec=".1f") -> str:
    return "n/a" if value is None else format(value, spec)


def table(rows: list[dict]) -> str:
    lines = ["| device | precision | batch | ours ms/clip | transformers ms/clip | ours/ref (medians) | "
             "ours/ref (paired) | ours TFLOP/s | ours % of matmul peak | ours peak MB | transformers peak MB |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = r["ours_ms"] / r["ref_ms"] if r["ours_ms"] and r["ref_ms"] else None
        lines.append(f"| {r['device']} | {r['precision']} | {r['batch']} | {fmt(r['ours_ms'], '.2f')} | "
                     f"{fmt(r['ref_ms'], '.2f')} | {fmt(ratio, '.2f')} | {fmt(r.get('paired'), '.2f')} | "
                     f"{fmt(r.get('ours_tflops'), '.3g')} | {fmt(r.get('pct_peak'), '.1f')} | "
                     f"{fmt(r['ours_mb'], '.0f')} | "
                     f"{fmt(r['ref_mb'], '.0f')} |")
    notes = [f"- {impl} {r['precision']} batch {r['batch']}: not run ({r[impl + '_note']})"
             for r in rows for impl in ("ours", "ref") if r.get(impl + "_note")]
    return "\n".join(lines + ([""] + notes if notes else []))



def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per row (median reported), >= 5")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs per implementation before timing")
    parser.add_argument("--cpu-batch", type=int, default=1, help="batch for the CPU row")
    parser.add_argument("--cuda-batches", default="1,8,32", help="comma-separated batches for the CUDA rows")
    parser.add_argument("--precisions", default="fp32,fp16,bf16,int8", help="CUDA precisions")
    parser.add_argument("--no-cuda", action="store_true", help="skip the CUDA rows even when a GPU is present")
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md", help="file whose section is replaced")
    parser.add_argument("--smoke", action="store_true", help="tiny model, 2 repeats, nothing written")
    parser.add_argument("--_peak-worker", dest="peak_worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.peak_worker:
        cpu_peak_worker(*json.loads(args.peak_worker))
        return 0
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    geometry = SMOKE if args.smoke else BASE
    repeats = 2 if args.smoke else max(args.repeats, 5)
    cuda = torch.cuda.is_available() and not args.no_cuda
    # the yardsticks for "% of matmul peak": CUDA rows against bf16 (the issue's target), the CPU row
    # against fp32, the dtype it runs (a CPU without native bf16 runs bf16 matmuls far slower than fp32)
    peaks = {"cpu": ("fp32", 512 if args.smoke else 1024)}
    if cuda:
        peaks["cuda"] = ("bf16", 4096 if args.smoke else 8192)
    peak_repeats = 5 if args.smoke else 20
    peak_tflops: dict[str, float] = {}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_checkpoint(Path(tmp), geometry)
        peak_tflops["cpu"] = matmul_peak_tflops("cpu", DTYPES[peaks["cpu"][0]], peaks["cpu"][1], peak_repeats)
        print(f"CPU fp32 {peaks['cpu'][1]}^3 matmul peak: {peak_tflops['cpu']:.3g} TFLOP/s", flush=True)
        rows.append(measure(folder, geometry, "cpu", "fp32", args.cpu_batch, repeats, args.warmup, cpu_memory=True,
                            peak_tflops=peak_tflops["cpu"]))
        print(table(rows), flush=True)
        if cuda:
            peak_tflops["cuda"] = matmul_peak_tflops("cuda", DTYPES[peaks["cuda"][0]], peaks["cuda"][1], peak_repeats)
            print(f"CUDA bf16 {peaks['cuda'][1]}^3 matmul peak: {peak_tflops['cuda']:.3g} TFLOP/s", flush=True)
            for precision in args.precisions.split(","):
                for batch in (int(b) for b in args.cuda_batches.split(",")):
                    rows.append(measure(folder, geometry, "cuda", precision, batch, repeats, args.warmup, False,
                                        peak_tflops=peak_tflops["cuda"]))
                    print(table(rows[-1:]).splitlines()[-1], flush=True)
    nominal, executed = (model_flops(geometry_config(geometry), shortcuts=cut) / 1e9 for cut in (False, True))
    peak_text = "; ".join(f"{dev.upper() if dev == 'cuda' else 'CPU'} {dtype} {size}x{size}: "
                          f"{peak_tflops[dev]:.3g} TFLOP/s" for dev, (dtype, size) in peaks.items())
    shape = "smoke geometry" if args.smoke else "base (ViT-B/16, 12 layers, 8 frames x 224 px, 400 classes)"
    body = "\n".join([
        "## Model (`benchmarks/bench_model.py`)",
        "",
        f"Machine: {machine('cuda' if torch.cuda.is_available() else 'cpu')}; {torch.get_num_threads()} torch threads; "
        f"load average at the end {', '.join(f'{v:.1f}' for v in os.getloadavg())}.",
        f"TimeSformer {shape}, random weights saved by transformers and loaded by both; same input; latency per "
        f"clip = median of {repeats} runs / batch, after {args.warmup} warm-up, ours and transformers (eager) "
        "interleaved in alternating order; 'paired' is the median of the per-repeat ratios. Peak MB: CUDA max_memory_allocated growth during a forward; CPU peak RSS growth of a "
        "fresh process loading the model and running one forward. Ours runs under inference_mode, where "
        "temporal_attn.proj and temporal_fc are folded into one linear and the last block computes only the cls "
        "token (together 1/17 and ~5% of the matmul work); the rest of the gain is SDPA and fewer copies. On a "
        "shared machine absolute times move with the load; compare the ratio. "
        f"TFLOP/s = model FLOPs per clip / ours' time per clip, the FLOPs counted from the geometry "
        f"(`model_flops`: patch embedding, every linear, QK^T and AV; 2 per multiply-add): {nominal:.3g} GFLOP "
        f"per clip, the architecture's count (ours executes {executed:.3g} under inference_mode, "
        f"{100 * (1 - executed / nominal):.0f}% fewer, thanks to the shortcuts above). % of matmul peak = that over "
        f"the dense square matmul throughput measured on the same device in this run "
        f"(`benchmarks/matmul_peak.py`, median of {peak_repeats}): {peak_text}. Every CUDA row, whatever its "
        "precision (int8 included), is compared with the bf16 peak; target: batch-32 fp16/bf16 >= 40% on an "
        "H100. The CPU row is compared with the CPU's fp32 peak, the dtype it runs: a CPU without native bf16 "
        "runs bf16 matmuls far slower than fp32, which would make a bf16 peak a meaningless yardstick there. "
        + ("" if torch.cuda.is_available() else "No CUDA device on this machine: the CUDA rows (fp32/fp16/bf16/"
           "int8 at batch 1/8/32) were not measured; run this script on a GPU host to fill them in."),
        "",
        table(rows),
    ])
    print()
    print(body)
    if not (args.no_write or args.smoke):
        write_section(SECTION, body, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())

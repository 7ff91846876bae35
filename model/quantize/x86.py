"""``int8-x86``: int8 GEMMs with int8 activations on x86 CPUs, in eager mode.

PyTorch's dynamic quantized linear (``torch.ops.quantized.linear_dynamic``, its x86 quantization) with
weights prepacked for the FBGEMM engine. Per layer, once: the weight is quantized per output channel
(symmetric, one fp32 scale per row) and prepacked into FBGEMM's blocked layout; the fp32 weight is
dropped. Per call, inside one C++ op: the activation is quantized per tensor to uint8 (asymmetric: scale and zero point from its
min and max, no calibration), the u8 x s8 -> s32 GEMM runs with the rescale and the bias fused, and fp32
comes out. Everything around the GEMMs (LayerNorm, GELU, softmax, attention products, residuals) stays
fp32. Measured here against the alternatives (benchmarks/bench_int8_backends.py): quantizing the
activation with separate PyTorch ops before ``onednn::qlinear_pointwise`` cost twice the GEMM itself;
7-bit activations (``reduce_range``, PyTorch's default on CPUs without VNNI) lost agreement; weights
packed for the oneDNN engine ran about as fast but held 2.7x the int8 bytes (it keeps a second copy
for unpacking) against FBGEMM's 1.8x, which broke "steady memory <= half of fp32".

CPUs without VNNI (AVX2 only, AVX-512 without VNNI) multiply u8 x s8 pairs into int16 with saturation
(``vpmaddubsw``): two products of 255 x 127 overflow it. There the weights use 7 bits (|q| <= 63), so a
pair never exceeds 2 x 255 x 63 = 32130 < 32767; with VNNI (AVX512-VNNI, AVX-VNNI, AMX) they use the
full 8 bits. Per-tensor activation scales make a clip's result depend slightly on the other clips in
its batch (as bitsandbytes' outlier columns do); tests/model/test_quantize.py bounds it.
"""

from __future__ import annotations

import contextlib
import warnings

import torch
from torch import nn

from model.errors import QuantizationError

NAME = "int8-x86"
ENGINE = "fbgemm"  #: PyTorch quantized engine the weights are packed for (the packed weights keep it)


def has_vnni() -> bool:
    """Whether this CPU multiplies int8 without int16 saturation (AVX512-VNNI, AVX-VNNI or AMX int8)."""
    caps = torch._C._cpu._get_cpu_capability()
    return any(caps.get(flag) for flag in ("avx512_vnni", "avx_vnni", "amx_int8"))


def unavailable() -> str | None:
    """Why this backend cannot run here, or None when it can."""
    if ENGINE not in torch.backends.quantized.supported_engines:
        return f"int8-x86 needs a PyTorch build with the {ENGINE} quantized engine (the x86 wheels from pytorch.org)"
    caps = torch._C._cpu._get_cpu_capability()
    if caps.get("architecture") not in (None, "x86_64") or not caps.get("avx2"):
        return f"int8-x86 needs an x86-64 CPU with AVX2, this is {caps.get('cpu_name') or 'another CPU'}"
    return None


def weight_max() -> int:
    """Largest |int8 weight| used: 127 with VNNI, 63 without (see the module docstring)."""
    return 127 if has_vnni() else 63


class Int8Linear(nn.Module):
    """``nn.Linear`` as an int8 GEMM, ``y = x W^T + b``, with ``x`` quantized at run time.

    Built from an fp32 ``nn.Linear`` by :meth:`from_linear`; CPU only. Moving or casting it raises
    :class:`QuantizationError` (the prepacked weight lives in a CPU layout).
    """

    def __init__(self, packed, in_features: int, out_features: int, has_bias: bool) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.packed = packed  # LinearPackedParams: int8 weight, per-channel scales, fp32 bias
        # int8 weight, fp32 scale per row, fp32 bias: what the packed parameters hold
        self.packed_nbytes = in_features * out_features + 4 * out_features * (2 if has_bias else 1)

    @classmethod
    @torch.no_grad()
    def from_linear(cls, linear: nn.Linear, qmax: int | None = None) -> "Int8Linear":
        if linear.weight.device.type != "cpu":
            raise QuantizationError(f"{NAME} runs on CPU only; this layer is on {linear.weight.device}")
        qmax = qmax or weight_max()
        w = linear.weight.detach().float()  # (out, in)
        scale = w.abs().amax(dim=1).clamp(min=1e-12) / qmax  # (out,): |w / scale| <= qmax
        bias = linear.bias.detach().float() if linear.bias is not None else None
        with warnings.catch_warnings(), _engine(ENGINE):
            warnings.filterwarnings("ignore", message=".*quantized tensor.*deprecated", category=UserWarning)
            weight = torch.quantize_per_channel(w, scale.double(),
                                                torch.zeros(len(scale), dtype=torch.long), 0, torch.qint8)
            packed = torch.ops.quantized.linear_prepack(weight, bias)
        return cls(packed, linear.in_features, linear.out_features, bias is not None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.quantized.linear_dynamic(x.float(), self.packed, False)  # full 8-bit activations

    def _apply(self, fn, recurse=True):
        raise QuantizationError(f"an {NAME} model cannot be moved or cast (its int8 weights are packed for "
                                "this CPU); load it again with the device and precision you want")

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 {ENGINE}"


@contextlib.contextmanager
def _engine(name: str):
    """PyTorch's quantized engine set to ``name`` while weights are prepacked (the packed weights keep it)."""
    before = torch.backends.quantized.engine
    torch.backends.quantized.engine = name
    try:
        yield
    finally:
        torch.backends.quantized.engine = before


def convert(parent: nn.Module, attr: str, linear: nn.Linear) -> None:
    """Replace ``parent.attr`` (``linear``) by an :class:`Int8Linear`."""
    setattr(parent, attr, Int8Linear.from_linear(linear))

"""``int8-x86``: int8 GEMMs with int8 activations on x86 CPUs, through oneDNN (the kernels PyTorch's own
x86 quantization lowers to), in eager mode.

Per layer, once: the weight is quantized per output channel (symmetric, one fp32 scale per row) and
prepacked into oneDNN's blocked layout (``torch.ops.onednn.qlinear_prepack``); the fp32 weight is
dropped. Per call: the activation is quantized per tensor to uint8 (asymmetric: scale and zero point
from its min and max, computed on the fly, no calibration), the int8 x int8 -> int32 GEMM runs in
oneDNN with the bias, the rescale and, for an MLP's first layer, the GELU fused into it, and fp32
comes out. Everything around the GEMMs (LayerNorm, softmax, attention products, residuals) stays fp32.

CPUs without VNNI (AVX2 only, AVX-512 without VNNI) multiply u8 x s8 pairs into int16 with saturation
(``vpmaddubsw``): two products of 255 x 127 overflow it. There the weights use 7 bits (|q| <= 63), so a
pair never exceeds 2 x 255 x 63 = 32130 < 32767; with VNNI (AVX512-VNNI, AVX-VNNI, AMX) they use the
full 8 bits. Measured on the motion-demo and a base model in tests/model/test_quantize.py.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from model.errors import QuantizationError

log = logging.getLogger(__name__)

NAME = "int8-x86"
_GELU = {"none": "none", "tanh": "tanh"}  # nn.GELU's approximate -> oneDNN's gelu algorithm


def has_vnni() -> bool:
    """Whether this CPU multiplies int8 without int16 saturation (AVX512-VNNI, AVX-VNNI or AMX int8)."""
    caps = torch._C._cpu._get_cpu_capability()
    return any(caps.get(flag) for flag in ("avx512_vnni", "avx_vnni", "amx_int8"))


def unavailable() -> str | None:
    """Why this backend cannot run here, or None when it can."""
    if not torch.backends.mkldnn.is_available() or not hasattr(torch.ops.onednn, "qlinear_pointwise"):
        return "int8-x86 needs a PyTorch build with oneDNN (the x86 wheels from pytorch.org have it)"
    caps = torch._C._cpu._get_cpu_capability()
    if caps.get("architecture") not in (None, "x86_64") or not caps.get("avx2"):
        return f"int8-x86 needs an x86-64 CPU with AVX2, this is {caps.get('cpu_name') or 'another CPU'}"
    return None


def weight_max() -> int:
    """Largest |int8 weight| used: 127 with VNNI, 63 without (see the module docstring)."""
    return 127 if has_vnni() else 63


class Int8Linear(nn.Module):
    """``nn.Linear`` as an int8 oneDNN GEMM: ``y = post_op(x W^T + b)`` with ``x`` quantized at run time.

    Built from an fp32 ``nn.Linear`` by :meth:`from_linear`; CPU only. Moving or casting it raises
    :class:`QuantizationError` (the prepacked weight lives in oneDNN's CPU layout).
    """

    def __init__(self, packed: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None,
                 in_features: int, out_features: int, post_op: str = "none", algorithm: str = "") -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.post_op, self.algorithm = post_op, algorithm
        self.register_buffer("packed_weight", packed)  # (in, out) int8, oneDNN blocked layout
        self.register_buffer("weight_scale", scale)  # (out,) fp32, one per output channel
        self.register_buffer("weight_zero_point", torch.zeros(out_features, dtype=torch.long), persistent=False)
        self.register_buffer("bias", bias)  # (out,) fp32 or None

    @classmethod
    @torch.no_grad()
    def from_linear(cls, linear: nn.Linear, post_op: str = "none", algorithm: str = "",
                    qmax: int | None = None) -> "Int8Linear":
        if linear.weight.device.type != "cpu":
            raise QuantizationError(f"{NAME} runs on CPU only; this layer is on {linear.weight.device}")
        qmax = qmax or weight_max()
        w = linear.weight.detach().float()  # (out, in)
        scale = w.abs().amax(dim=1).clamp(min=1e-12) / qmax  # (out,)
        q = torch.round(w / scale[:, None]).clamp_(-qmax, qmax).to(torch.int8)
        packed = torch.ops.onednn.qlinear_prepack(q, None)
        bias = linear.bias.detach().float().clone() if linear.bias is not None else None
        return cls(packed, scale, bias, linear.in_features, linear.out_features, post_op, algorithm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        qx, scale, zero_point = quantize_activation(x.float())
        return torch.ops.onednn.qlinear_pointwise.tensor(
            qx, scale, zero_point, self.packed_weight, self.weight_scale, self.weight_zero_point, self.bias,
            1.0, 0, torch.float32, self.post_op, [], self.algorithm)

    def _apply(self, fn, recurse=True):
        raise QuantizationError(f"an {NAME} model cannot be moved or cast (its int8 weights are packed for "
                                "this CPU); load it again with the device and precision you want")

    def extra_repr(self) -> str:
        fused = f", fused {self.post_op}" if self.post_op != "none" else ""
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 oneDNN{fused}"


def quantize_activation(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """uint8 ``x`` with one scale and zero point for the whole tensor, from its min and max (0 included)."""
    lo, hi = torch.aminmax(x)
    lo, hi = lo.clamp(max=0.0), hi.clamp(min=0.0)
    scale = ((hi - lo) / 255.0).clamp(min=1e-12)
    zero_point = torch.round(-lo / scale)
    q = torch.addcdiv(zero_point + 0.5, x, scale).clamp_(0.0, 255.0).to(torch.uint8)  # round half up
    return q, scale, zero_point.to(torch.long)


def convert(parent: nn.Module, attr: str, linear: nn.Linear, following: nn.Module | None) -> bool:
    """Replace ``parent.attr`` (``linear``) by an :class:`Int8Linear`; when ``following`` (the module the
    layer feeds, e.g. an MLP's activation) is a GELU, fuse it and return True (the caller drops it)."""
    post, algorithm, fused = "none", "", False
    if isinstance(following, nn.GELU) and following.approximate in _GELU:
        post, algorithm, fused = "gelu", _GELU[following.approximate], True
    setattr(parent, attr, Int8Linear.from_linear(linear, post, algorithm))
    return fused

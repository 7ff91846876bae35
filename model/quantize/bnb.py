"""``int8-bnb``: bitsandbytes ``Linear8bitLt`` (LLM.int8()) in place of ``nn.Linear``; the memory-saving 8-bit.

``Linear8bitLt(has_fp16_weights=False)`` keeps int8 weights with one fp32 scale per output row and
quantizes activations per row at run time (LLM.int8()); activation columns with a value above
``threshold`` go through a 16-bit side path (``threshold=0`` turns that off). bitsandbytes >= 0.47
runs this on CPU as well as CUDA; the weights are quantized when the module is moved to its device.
It saves memory, not time: its kernels are made for training (3-5x slower than fp16 at batch 1-4 on
GPUs, bitsandbytes#347 and #490; slower than fp32 on CPU). The network itself knows nothing about it.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from model.errors import QuantizationError

log = logging.getLogger(__name__)

NAME = "int8-bnb"
_CAST_NOTICE = "MatMul8bitLt: inputs will be cast"


class _DropCastNotice(logging.Filter):
    """bitsandbytes logs a warning on every int8 matmul whose input is not fp16 (always, on CPU); the cast
    is expected here, so that one message is dropped and everything else it logs still goes through."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_CAST_NOTICE)


def _quiet_cast_notice() -> None:
    bnb_log = logging.getLogger("bitsandbytes.autograd._functions")
    if not any(isinstance(f, _DropCastNotice) for f in bnb_log.filters):
        bnb_log.addFilter(_DropCastNotice())


def _bnb():
    try:
        import bitsandbytes as bnb
    except ImportError:
        raise QuantizationError("int8-bnb needs bitsandbytes: pip install 'bitsandbytes>=0.47'") from None
    return bnb


def convert(parent: nn.Module, attr: str, linear: nn.Linear, threshold: float) -> None:
    """Replace ``parent.attr`` (``linear``) by ``Linear8bitLt`` on the same device."""
    if threshold < 0:
        raise QuantizationError(f"int8 outlier threshold must be >= 0, got {threshold}")
    _quiet_cast_notice()
    setattr(parent, attr, _to_int8(_bnb(), linear, threshold))


def _to_int8(bnb, linear: nn.Linear, threshold: float) -> nn.Module:
    device = linear.weight.device
    q = bnb.nn.Linear8bitLt(linear.in_features, linear.out_features, bias=linear.bias is not None,
                            has_fp16_weights=False, threshold=threshold, device="cpu")
    q.weight = bnb.nn.Int8Params(linear.weight.detach().to("cpu").clone(), requires_grad=False,
                                 has_fp16_weights=False)
    if linear.bias is not None:
        q.bias = nn.Parameter(linear.bias.detach().to("cpu").clone(), requires_grad=False)
    q = q.to(device)  # Int8Params quantize on the move: int8 weight + per-row fp32 scale (SCB)
    if q.weight.dtype != torch.int8:
        raise QuantizationError(f"int8: bitsandbytes did not quantize the weights on {device}")
    return q.eval()

"""int8 weights: one post-load transform that swaps ``nn.Linear`` for bitsandbytes ``Linear8bitLt``.

``Linear8bitLt(has_fp16_weights=False)`` keeps int8 weights with one fp32 scale per output row and
quantizes activations per row at run time (LLM.int8()); activation columns with a value above
``threshold`` go through a 16-bit side path (``threshold=0`` turns that off). bitsandbytes >= 0.47
runs this on CPU as well as CUDA; the weights are quantized when the module is moved to its device.
The network itself knows nothing about bitsandbytes.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from model.errors import QuantizationError

log = logging.getLogger(__name__)

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16, "int8": None}
SKIP = ("head",)  # the classifier stays in full precision
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


def to_precision(model: nn.Module, precision: str, device: torch.device, *, int8_threshold: float = 6.0) -> nn.Module:
    """The post-load transform: ``model`` on ``device`` in ``precision`` (a key of :data:`PRECISIONS`).

    int8: every ``nn.Linear`` but the classifier becomes bitsandbytes' ``Linear8bitLt``; on CUDA the
    layers kept out of int8 run in fp16 (bitsandbytes' int8 kernels take fp16 input), on CPU in fp32.
    """
    if precision == "int8":
        model = model.to(device, dtype=torch.float16 if device.type == "cuda" else torch.float32)
        quantize_int8(model, threshold=int8_threshold)
        return model
    return model.to(device=device, dtype=PRECISIONS[precision])


def quantize_int8(model: nn.Module, threshold: float = 6.0, skip: tuple[str, ...] = SKIP) -> int:
    """Replace, in place, every ``nn.Linear`` not named in ``skip`` by ``Linear8bitLt`` on the same device.

    Returns the number replaced (also logged); raises QuantizationError when bitsandbytes is missing
    or there is nothing to replace.
    """
    try:
        import bitsandbytes as bnb
    except ImportError:
        raise QuantizationError("int8 needs bitsandbytes: pip install 'bitsandbytes>=0.47'") from None
    if threshold < 0:
        raise QuantizationError(f"int8 outlier threshold must be >= 0, got {threshold}")
    _quiet_cast_notice()
    targets = [(name, module) for name, module in model.named_modules()
               if type(module) is nn.Linear and not _skipped(name, skip)]
    if not targets:
        raise QuantizationError("int8: no nn.Linear layer to replace (is the model already quantized?)")
    for name, linear in targets:
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, attr, _to_int8(bnb, linear, threshold))
    kept = [name for name, module in model.named_modules() if type(module) is nn.Linear]
    log.info("int8: replaced %d nn.Linear layers with Linear8bitLt (threshold %s); kept in full precision: %s",
             len(targets), threshold, ", ".join(kept) or "none")
    return len(targets)


def _skipped(name: str, skip: tuple[str, ...]) -> bool:
    return any(name == s or name.startswith(s + ".") for s in skip)


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

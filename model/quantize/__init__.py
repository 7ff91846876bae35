"""Precision: one post-load transform from a loaded fp32 TimeSformer to the precision asked for.

:func:`apply_precision` folds the temporal projections (:meth:`TimeSformer.fold`), then casts or
quantizes, and returns the name of what ran; every result reports that name in ``model.precision``.

=========== ====== ==================================================================================
name        device what runs
=========== ====== ==================================================================================
``fp32``    any    float32
``fp16``    CUDA   float16
``bf16``    any    bfloat16 weights and activations (LayerNorm and softmax accumulate in fp32 inside
                   PyTorch's kernels); fast on CPUs with AVX512_BF16 or AMX, emulated (slow) elsewhere
``int8-x86`` CPU   int8 GEMMs with int8 activations, PyTorch x86 quantization (:mod:`model.quantize.x86`)
``int8-bnb`` both  bitsandbytes LLM.int8() (:mod:`model.quantize.bnb`): saves memory, not time
``int8-ao`` CUDA   torchao int8 dynamic activations x int8 weights, ``torch._int_mm`` (:mod:`model.quantize.ao`)
``fp8``     CUDA   torchao float8 e4m3 activations x weights, per-row scales; compute capability >= 8.9
=========== ====== ==================================================================================

``int8`` asks for the device's fast 8-bit path: ``int8-x86`` on CPU; on CUDA ``int8-ao`` (the caller
may pass what ``--bench`` measured fastest, ``fp8`` on Hopper). Quantization replaces every
``nn.Linear`` but those named in the skip list (:data:`SKIP`: the classifier, plus the layers a built-in
checkpoint declares in :data:`MODEL_SKIP`), logs how many it replaced and fails if none. A model is
quantized once: quantizing it again, or moving or casting an ``int8-x86`` model, raises
:class:`QuantizationError`. The network (``model/timesformer.py``) knows nothing about any backend.
"""

from __future__ import annotations

import logging
from typing import Iterator

import torch
from torch import nn

from model.errors import QuantizationError

log = logging.getLogger(__name__)

CASTS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
EIGHT_BIT = ("int8-x86", "int8-bnb", "int8-ao", "fp8")  #: the names a quantized model reports
PRECISIONS = (*CASTS, "int8", *EIGHT_BIT)  #: every name ``load_model(precision=...)`` takes
SKIP = ("head",)  #: kept in full precision in every model: the classifier
#: Per built-in checkpoint, layers kept in full precision on top of SKIP (module names as in the
#: checkpoint). motion-demo: its fixed front end (docs/DEMO_MODEL.md), hand-set layers whose products
#: are differences of GELU pairs, which 8-bit rounding turns into noise: block 0's temporal attention
#: and MLP (frame differences, edge orientation), block 1's temporal attention and MLP (the turn),
#: block 2's spatial attention (mean turn to the cls). Quantizing them too dropped top-1 agreement with
#: fp32 to 97 % on held-out windows; without them it is >= 99.5 % (tests/model/test_quantize_demo.py).
MODEL_SKIP: dict[str, tuple[str, ...]] = {
    "motion-demo": ("blocks.0.temporal_attn", "blocks.0.mlp", "blocks.1.temporal_attn", "blocks.1.mlp",
                    "blocks.2.attn"),
}
_MARK = "_quantized_as"  # attribute set on a quantized model: its backend's name


def resolve(precision: str, device: str | torch.device) -> str:
    """The concrete name for ``precision`` on ``device``: ``int8`` becomes the device's fast 8-bit path."""
    if precision not in PRECISIONS:
        raise QuantizationError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    if precision != "int8":
        return precision
    return "int8-ao" if torch.device(device).type == "cuda" else "int8-x86"


def apply_precision(model: nn.Module, precision: str, device: str | torch.device, *, name: str | None = None,
                    int8_threshold: float = 6.0) -> tuple[nn.Module, str]:
    """Fold, then cast or quantize ``model`` (fp32, on the CPU, in eval mode) for ``device``.

    Returns the model (on ``device``) and the name of the precision that runs. ``name`` is the
    checkpoint's name (its :data:`MODEL_SKIP` entry applies); ``int8_threshold`` is bitsandbytes'.
    """
    resolved = resolve(precision, device)
    target = torch.device(device)
    if hasattr(model, "fold"):
        model.fold()  # fold first: the folded layer is quantized like any other
    skip = SKIP + MODEL_SKIP.get(name or "", ())
    if resolved in CASTS:
        if resolved == "fp16" and target.type == "cpu":
            log.warning("fp16 on CPU runs PyTorch's slow reference kernels; use bf16 or int8 on CPU")
        return model.to(device=target, dtype=CASTS[resolved]), resolved
    if resolved == "int8-x86":
        if target.type != "cpu":
            raise QuantizationError(f"int8-x86 runs on CPU only, not {target}; on CUDA use int8-ao, fp8 or int8-bnb")
        quantize(model, resolved, skip)
    elif resolved == "int8-bnb":
        # on CUDA the layers kept out of int8 run in fp16 (bitsandbytes' int8 kernels take fp16 input)
        model = model.to(target, dtype=torch.float16 if target.type == "cuda" else torch.float32)
        quantize(model, resolved, skip, int8_threshold=int8_threshold)
    else:  # int8-ao, fp8
        from model.quantize import ao

        reason = ao.unavailable(resolved, target)
        if reason:
            raise QuantizationError(reason)
        model = model.to(target, dtype=ao.DTYPE)
        quantize(model, resolved, skip)
    return model, resolved


def quantize(model: nn.Module, backend: str, skip: tuple[str, ...] = SKIP, *, int8_threshold: float = 6.0) -> int:
    """Replace, in place, every ``nn.Linear`` of ``model`` not named in ``skip`` by ``backend``'s layer.

    Returns the number replaced (also logged, with the layers kept); raises QuantizationError when the
    model is already quantized, the backend cannot run here, or nothing is left to replace.
    """
    done = getattr(model, _MARK, None)
    if done is not None:
        raise QuantizationError(f"the model is already quantized ({done}); load it again in fp32 to quantize it "
                                f"as {backend}")
    if backend not in EIGHT_BIT:
        raise QuantizationError(f"{backend!r} is not an 8-bit backend ({', '.join(EIGHT_BIT)})")
    targets = [(n, m) for n, m in _linears(model) if not _skipped(n, skip)]
    if not targets:
        raise QuantizationError(f"{backend}: no nn.Linear layer to replace (skip list: {', '.join(skip) or 'none'})")
    if backend == "int8-x86":
        _convert_x86(model, targets)
    elif backend == "int8-bnb":
        from model.quantize import bnb

        for name, linear in targets:
            parent, attr = _parent(model, name)
            bnb.convert(parent, attr, linear, int8_threshold)
    else:
        from model.quantize import ao

        ao.convert_all(model, backend, {name for name, _ in targets})
    object.__setattr__(model, _MARK, backend)
    object.__setattr__(model, "_apply", _refuse_move(backend))  # before any layer moves: all or nothing
    kept = [n for n, _ in _linears(model)] if backend in ("int8-x86", "int8-bnb") else sorted(
        n for n, m in model.named_modules() if type(m) is nn.Linear and _skipped(n, skip))
    log.info("%s: replaced %d nn.Linear layers; kept in full precision: %s", backend, len(targets),
             ", ".join(kept) or "none")
    return len(targets)


def _convert_x86(model: nn.Module, targets: list[tuple[str, nn.Linear]]) -> None:
    from model.quantize import x86

    reason = x86.unavailable()
    if reason:
        raise QuantizationError(reason)
    mapped = _mapped_ranges()
    for name, linear in targets:
        x86.convert(*_parent(model, name), linear)
        _drop_mapped_pages(linear.weight, mapped)  # its fp32 pages leave RSS now, not at the end
    _own_the_rest(model)
    _release_freed_memory()


def _refuse_move(backend: str):
    def _apply(fn, recurse=True):
        raise QuantizationError(f"a {backend} model cannot be moved or cast (its weights are quantized for "
                                "the device it was loaded on); load it again with the device and precision you want")
    return _apply


def quantized_as(model: nn.Module) -> str | None:
    """The backend that quantized ``model``, or None."""
    return getattr(model, _MARK, None)


def _linears(model: nn.Module) -> Iterator[tuple[str, nn.Linear]]:
    return ((n, m) for n, m in list(model.named_modules()) if type(m) is nn.Linear)


def _skipped(name: str, skip: tuple[str, ...]) -> bool:
    return any(name == s or name.startswith(s + ".") for s in skip)


def _parent(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    parent_name, _, attr = name.rpartition(".")
    return (model.get_submodule(parent_name) if parent_name else model), attr


def _mapped_ranges() -> list[tuple[int, int]]:
    """Address ranges of this process's file-backed mappings (e.g. a safetensors checkpoint read with mmap)."""
    ranges = []
    try:
        with open("/proc/self/maps", encoding="utf-8") as maps:
            for line in maps:
                fields = line.split()
                if len(fields) >= 6 and fields[5].startswith("/") and not fields[5].startswith("/dev/"):
                    lo, hi = (int(x, 16) for x in fields[0].split("-"))
                    ranges.append((lo, hi))
    except OSError:  # not Linux: nothing is dropped early
        pass
    return ranges


def _drop_mapped_pages(tensor: torch.Tensor, mapped: list[tuple[int, int]]) -> None:
    """When ``tensor`` (no longer used) lies in a file-backed mapping, tell the kernel its whole pages are
    not needed: they leave RSS at once (a private file mapping re-reads them from the file if touched)."""
    import ctypes
    import mmap

    start, size = tensor.data_ptr(), tensor.numel() * tensor.element_size()
    if not any(lo <= start and start + size <= hi for lo, hi in mapped):
        return  # anonymous memory: freed with the tensor
    page = mmap.PAGESIZE
    first, last = -(-start // page) * page, (start + size) // page * page  # whole pages inside the tensor
    if last > first:
        ctypes.CDLL(None).madvise(ctypes.c_void_p(first), ctypes.c_size_t(last - first), 4)  # MADV_DONTNEED


def _own_the_rest(model: nn.Module) -> None:
    """Copy the tensors left in full precision into memory of their own, so that nothing keeps the
    checkpoint's file mapping alive (and its pages resident) once quantization is done."""
    with torch.no_grad():
        for module in model.modules():
            for key, tensor in list(module._parameters.items()) + list(module._buffers.items()):
                if tensor is not None:
                    tensor.data = tensor.data.clone()


def _release_freed_memory() -> None:
    """Hand the freed fp32 weights back to the OS (glibc keeps freed heap pages otherwise)."""
    import ctypes
    import ctypes.util

    libc = ctypes.util.find_library("c")
    try:
        ctypes.CDLL(libc).malloc_trim(0)
    except (OSError, AttributeError, TypeError):  # not glibc: nothing to do
        pass


def weight_bytes(model: nn.Module) -> int:
    """Bytes of every parameter and buffer the model holds (int8 weights one byte each, their scales,
    fp tensors), each tensor counted once, plus the weights packed inside int8-x86 layers."""
    seen, total = set(), 0
    for tensor in list(model.parameters()) + list(model.buffers()):
        if id(tensor) not in seen:
            seen.add(id(tensor))
            total += tensor.numel() * tensor.element_size()
    return total + sum(getattr(m, "packed_nbytes", 0) for m in model.modules())


__all__ = ["apply_precision", "quantize", "quantized_as", "resolve", "weight_bytes", "CASTS", "EIGHT_BIT",
           "PRECISIONS", "SKIP", "MODEL_SKIP"]

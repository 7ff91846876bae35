"""The model as the inference thread calls it: eager, ``torch.compile``d, and/or replayed from CUDA graphs.

With static batches (``cuda_graphs``, or ``compile`` to bound recompilation) a batch of ``n`` windows
is copied into a preallocated input of the smallest size in ``1, 2, 4, ..., max_batch`` that holds
it; the rows past ``n`` are zeroed (bitsandbytes' int8 outlier columns are chosen over the whole
batch, so stale rows could change the others) and their logits are dropped. On CUDA each size's
forward is captured once into a CUDA graph (after warm-up runs on a side stream) and replayed; a
size whose capture fails (an op that synchronizes, as some int8 kernels do) runs eagerly, with one
warning. On CPU the same padding runs without capture, which is what the CPU tests prove.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import torch

log = logging.getLogger(__name__)

_WARMUP_RUNS = 3  # eager runs before a capture: lazy caches (folded weights, cuBLAS handles) are built


def static_batch_sizes(max_batch: int) -> tuple[int, ...]:
    """Powers of two below ``max_batch``, then ``max_batch``: 1, 2, 4, ..., max_batch."""
    sizes, b = [], 1
    while b < max_batch:
        sizes.append(b)
        b *= 2
    sizes.append(max_batch)
    return tuple(sizes)


def padded_size(n: int, sizes: tuple[int, ...]) -> int:
    """The smallest static size that holds ``n`` windows."""
    for size in sizes:
        if size >= n:
            return size
    raise ValueError(f"a batch of {n} windows is larger than the largest static batch {sizes[-1]}")


@dataclass
class _Static:
    input: torch.Tensor  # (size, T, 3, H, W)
    output: torch.Tensor | None  # (size, num_labels); None on CPU until the first run
    replay: Callable[[], None]


class ModelRunner:
    """Runs a network as configured: ``runner(x) -> logits``, like the network itself."""

    def __init__(self, net: torch.nn.Module, *, max_batch: int, compile: bool = False,
                 cuda_graphs: bool = False) -> None:
        self.net = net
        device = next((p.device for p in net.parameters()), torch.device("cpu"))
        self.device = device
        if cuda_graphs and device.type != "cuda":
            log.warning("model.cuda_graphs is ignored: the model runs on %s, and CUDA graphs need CUDA", device)
            cuda_graphs = False
        self.cuda_graphs = cuda_graphs  #: each static batch size is replayed from a captured CUDA graph
        self.fn: Callable[[torch.Tensor], torch.Tensor] = net
        if compile:
            self.fn = torch.compile(net, dynamic=False)
            log.info("model compiled with torch.compile; the first batch of each size compiles (seconds)")
        self.sizes = static_batch_sizes(max_batch) if (compile or cuda_graphs) else ()
        self._static: dict[int, _Static | None] = {}  # None: capture failed for that size, run eagerly
        self._pool = torch.cuda.graph_pool_handle() if cuda_graphs else None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        if not self.sizes:
            return self.fn(x)
        size = padded_size(n, self.sizes)
        if size not in self._static:
            self._static[size] = self._build(size, x)
        static = self._static[size]
        if static is None:
            return self.fn(x)
        static.input[:n].copy_(x)
        if n < size:
            static.input[n:].zero_()
        static.replay()
        return static.output[:n].clone()  # the static output is overwritten by the next replay

    def prepare(self, window_shape: tuple[int, ...], dtype: torch.dtype) -> None:
        """Build (compile, capture) every static batch size now, on a zero batch of windows of
        ``window_shape`` ``(T, 3, H, W)``: call it before the capture threads start, so no capture or
        compile happens mid-stream while other threads allocate on the device."""
        for size in self.sizes:
            if size not in self._static:
                static = self._build(size, torch.zeros((1, *window_shape), dtype=dtype, device=self.device))
                if static is not None and not self.cuda_graphs:
                    static.replay()  # torch.compile compiles this size now
                self._static[size] = static

    def _build(self, size: int, x: torch.Tensor) -> _Static | None:
        shape = (size, *x.shape[1:])
        static_in = torch.zeros(shape, dtype=x.dtype, device=x.device)  # (size, T, 3, H, W)
        if not self.cuda_graphs:
            static = _Static(static_in, None, lambda: None)

            def run() -> None:
                static.output = self.fn(static.input)

            static.replay = run
            return static
        try:
            return self._capture_graph(static_in)
        except Exception as exc:  # e.g. an int8 kernel that synchronizes: this size runs eagerly
            log.warning("CUDA graph capture for batch %d failed (%s: %s); that batch size runs eagerly",
                        size, type(exc).__name__, str(exc).splitlines()[0][:120] if str(exc) else "")
            torch.cuda.synchronize(self.device)
            return None

    def _capture_graph(self, static_in: torch.Tensor) -> _Static:
        # On the model's device (the calling thread's current device may be another GPU), and the
        # caller's stream restored even when capture fails (a failed capture_end leaves the capture
        # stream current). thread_local: other threads may allocate on the device meanwhile.
        with torch.cuda.device(self.device):
            caller = torch.cuda.current_stream(self.device)
            side = torch.cuda.Stream(self.device)
            try:
                side.wait_stream(caller)
                with torch.cuda.stream(side):
                    for _ in range(_WARMUP_RUNS):
                        self.fn(static_in)
                caller.wait_stream(side)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph, pool=self._pool, stream=side, capture_error_mode="thread_local"):
                    static_out = self.fn(static_in)  # (size, num_labels), in the graph's memory pool
                caller.wait_stream(side)
            finally:
                torch.cuda.set_stream(caller)
        log.info("CUDA graph captured for batch %d", static_in.shape[0])
        return _Static(static_in, static_out, graph.replay)


__all__ = ["ModelRunner", "static_batch_sizes", "padded_size"]

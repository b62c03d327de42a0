"""The ``torch`` backend: the module itself, with the usual GPU speed-ups as options."""

from __future__ import annotations

import threading

import torch
from torch import nn

from models.backends.base import BackendError

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class TorchBackend:
    """Runs an nn.Module in eval mode under ``torch.inference_mode``.

    Args:
        model: the module; moved to ``device`` and ``precision`` (in place).
        device: where it runs.
        precision: "fp32", "fp16" or "bf16" (the latter two on CUDA only).
        channels_last: NHWC memory format for 4-D inputs (faster convolutions on GPUs).
        cuda_graph: capture one CUDA graph per input shape and replay it (removes the
            per-kernel launch cost; CUDA only; shapes must repeat to pay off). Calls from
            several threads take turns: a graph has one set of input and output buffers.
    """

    name = "torch"

    def __init__(
        self,
        model: nn.Module,
        device: str | torch.device = "cpu",
        precision: str = "fp32",
        channels_last: bool = False,
        cuda_graph: bool = False,
    ) -> None:
        self.device = torch.device(device)
        if precision not in PRECISIONS:
            raise BackendError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
        if precision != "fp32" and self.device.type != "cuda":
            raise BackendError(f"{precision} needs a CUDA device (got {self.device})")
        if cuda_graph and self.device.type != "cuda":
            raise BackendError("CUDA graphs need a CUDA device")
        self.dtype = PRECISIONS[precision]
        self.channels_last = channels_last
        memory = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model.eval().to(self.device, self.dtype, memory_format=memory)
        self.cuda_graph = cuda_graph
        self._graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, list, tuple]] = {}
        self._graph_lock = threading.Lock()

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, self.dtype, non_blocking=True)
        return (
            x.contiguous(memory_format=torch.channels_last)
            if (self.channels_last and x.dim() == 4)
            else x
        )

    @torch.inference_mode()
    def __call__(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        xs = [self._prepare(x) for x in inputs]
        outputs = self._replay(xs) if self.cuda_graph else self.model(*xs)
        outputs = outputs if isinstance(outputs, tuple | list) else (outputs,)
        return tuple(o.float() for o in outputs)

    def _replay(self, xs: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        with self._graph_lock:
            return self._replay_locked(xs)

    def _replay_locked(self, xs: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        key = tuple((tuple(x.shape), x.dtype) for x in xs)
        if key not in self._graphs:
            static = [x.clone() for x in xs]
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(3):  # warm-up: cuDNN autotuning and lazy allocations
                    self.model(*static)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            # thread_local: other pipeline threads' CUDA calls (copies, syncs) during the
            # capture must not invalidate it; only this thread's own would
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                out = self.model(*static)
            self._graphs[key] = (graph, static, out if isinstance(out, tuple | list) else (out,))
        graph, static, out = self._graphs[key]
        for buffer, x in zip(static, xs, strict=True):
            buffer.copy_(x)
        graph.replay()
        return tuple(o.clone() for o in out)  # the next replay overwrites the graph's outputs

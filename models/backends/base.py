"""What every backend is, and what a model family tells the backends about its graph."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import torch

from models.cache import CacheError


class BackendError(RuntimeError):
    """A backend could not be built or run (bad export, engine build failure, ...)."""


class BackendUnavailable(BackendError):
    """The backend cannot run here (package or device missing); the message says why."""


class UnsafeCacheError(BackendError, CacheError):
    """The model cache is not safe to use (``models.cache.CacheError``), met while building a
    backend: a :class:`BackendError` (one line, a model error to a stage) that ``auto`` does
    not take for one candidate's failure, since it concerns them all."""


@dataclass(frozen=True)
class GraphSpec:
    """The model's graph interface, as exported to ONNX and built into engines.

    Attributes:
        inputs: input names, in ``forward`` argument order.
        outputs: output names, in the order ``forward`` returns them.
        example: one example shape per input (the shape exported with, and TensorRT's
            optimum shape).
        dynamic: per input or output name, its axes that may vary: ``{axis: label}``.
        min_shapes: per input, the smallest shape an engine must accept (default: example).
        max_shapes: per input, the largest shape an engine must accept (default: example).
        opset: ONNX opset.
    """

    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    example: tuple[tuple[int, ...], ...]
    dynamic: dict[str, dict[int, str]] = field(default_factory=dict)
    min_shapes: tuple[tuple[int, ...], ...] | None = None
    max_shapes: tuple[tuple[int, ...], ...] | None = None
    opset: int = 17

    @classmethod
    def any_batch(
        cls,
        inputs: tuple[str, ...],
        outputs: tuple[str, ...],
        example: tuple[tuple[int, ...], ...],
        max_batch: int,
    ) -> GraphSpec:
        """A graph of fixed shapes but for the batch (axis 0 of every input and output),
        which engines accept from 1 to ``max_batch``; ``example`` at batch 1."""
        return cls(
            inputs, outputs, example,
            dynamic={name: {0: "batch"} for name in (*inputs, *outputs)},
            max_shapes=tuple((max_batch, *shape[1:]) for shape in example),
        )  # fmt: skip

    def profile(self) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
        """``{input: (min, opt, max) shape}`` for an engine's optimisation profile."""
        lows = self.min_shapes or self.example
        highs = self.max_shapes or self.example
        return {
            name: (tuple(lo), tuple(opt), tuple(hi))
            for name, lo, opt, hi in zip(self.inputs, lows, self.example, highs, strict=True)
        }

    def describe(self) -> str:
        """A stable text of everything here, for cache keys."""
        dynamic = sorted((k, sorted(v.items())) for k, v in self.dynamic.items())
        return repr((self.inputs, self.outputs, self.example, dynamic, self.profile(), self.opset))


class Backend(Protocol):
    """Runs one model: ``backend(*inputs) -> outputs``.

    Inputs are float tensors on any device (each backend moves them where it runs); outputs
    are float32 tensors on ``device``, in the model's output order.
    """

    name: str
    device: torch.device

    def __call__(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]: ...

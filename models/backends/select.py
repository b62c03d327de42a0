"""Building a backend by name, and picking the fastest of several on real input."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence

import torch
from torch import nn

from models.backends.base import (
    Backend,
    BackendError,
    BackendUnavailable,
    GraphSpec,
    UnsafeCacheError,
)
from models.backends.onnx import cached_onnx_bytes
from models.backends.options import RunOptions
from models.backends.ort import OnnxRuntimeBackend
from models.backends.quantize import Calibration, cached_int8_onnx_bytes
from models.backends.tensorrt import PRECISIONS as TENSORRT_PRECISIONS
from models.backends.tensorrt import TensorRTBackend
from models.backends.torch_backend import TorchBackend
from models.cache import CacheError

KINDS = ("torch", "onnxruntime", "tensorrt")


def create_backend(
    model: nn.Module,
    spec: GraphSpec,
    family: str,
    options: RunOptions,
    calibration: Calibration = (),
) -> Backend:
    """A backend of the kind ``options.backend`` names for ``model``.

    Args:
        model: the nn.Module with official names (the onnx and tensorrt kinds export it).
        spec: its graph interface.
        family: model family name (the cache folder of its exports).
        options: how it runs; ``backend`` is a concrete kind here (``auto`` is
            :func:`create_fastest_backend`'s).
        calibration: inputs to calibrate int8 on (precision ``int8`` only).

    Raises:
        BackendUnavailable: the kind cannot run here; the message says why.
        UnsafeCacheError: the model cache is not safe to use; one line.
        BackendError: bad arguments or a failed export / build.
    """
    kind, device, precision = options.backend, options.torch_device, options.precision
    require_backend(kind, device, precision)  # before any export, which it would waste
    if kind == "torch":
        return TorchBackend(model, device, precision, bool(options.channels_last),
                            options.cuda_graph)  # fmt: skip
    try:
        # Both load the checked bytes of the cached graph, never its file by name.
        if kind == "onnxruntime":
            if precision == "int8":
                onnx = cached_int8_onnx_bytes(model, spec, family, calibration)
            else:
                onnx = cached_onnx_bytes(model, spec, family)
            return OnnxRuntimeBackend(onnx, device, options.threads)
        engine_spec = at_batch(spec, options.batch)
        return TensorRTBackend(cached_onnx_bytes(model, spec, family), engine_spec, device,
                               precision)  # fmt: skip
    except UnsafeCacheError:
        raise
    except CacheError as error:
        raise UnsafeCacheError(str(error)) from None


def at_batch(spec: GraphSpec, batch: int) -> GraphSpec:
    """``spec`` whose example (and, where smaller, largest) shapes take ``batch`` on every
    input with a dynamic batch axis: what ``auto`` measures and a TensorRT engine must accept
    when a stage batches."""
    if batch <= 1:
        return spec
    batched = [0 in spec.dynamic.get(name, {}) for name in spec.inputs]
    example = tuple((batch, *shape[1:]) if b else shape
                    for shape, b in zip(spec.example, batched, strict=True))  # fmt: skip
    highs = spec.max_shapes or spec.example
    max_shapes = tuple((max(batch, shape[0]), *shape[1:]) if b else shape
                       for shape, b in zip(highs, batched, strict=True))  # fmt: skip
    # a batch may come out short (what was queued): the smallest shapes stay at batch 1
    min_shapes = spec.min_shapes or spec.example
    return dataclasses.replace(spec, example=example, min_shapes=min_shapes, max_shapes=max_shapes)


def require_backend(kind: str, device: str | torch.device = "cpu", precision: str = "fp32") -> None:
    """Checks that a backend of ``kind`` can run here, without building one.

    Raises:
        BackendUnavailable: its package or device is missing; the message says why.
        BackendError: an unknown kind, or a precision it does not run.
    """
    if kind not in KINDS:
        raise BackendError(f"unknown backend {kind!r}, expected one of {KINDS}")
    if kind == "onnxruntime":
        if precision not in ("fp32", "int8"):
            raise BackendError("the onnxruntime backend runs our fp32 export, or its int8 one")
        if precision == "int8" and torch.device(device).type != "cpu":
            raise BackendError("int8 runs on the CPU (onnxruntime's CPU provider)")
        OnnxRuntimeBackend.require(device)
    elif kind == "torch" and precision == "int8":
        raise BackendError("the torch backend runs fp32, fp16 or bf16; int8 is onnxruntime's")
    elif kind == "tensorrt":
        if precision not in TENSORRT_PRECISIONS:
            raise BackendError(f"the tensorrt backend runs {' or '.join(TENSORRT_PRECISIONS)}")
        TensorRTBackend.require(device)


def runnable_kinds(
    kinds: Sequence[str], device: str | torch.device = "cpu", precision: str = "fp32"
) -> tuple[str, ...]:
    """Those of ``kinds`` that :func:`require_backend` accepts here, in their order."""
    runnable = []
    for kind in kinds:
        try:
            require_backend(kind, device, precision)
        except BackendError:  # includes BackendUnavailable
            continue
        runnable.append(kind)
    return tuple(runnable)


def create_fastest_backend(
    kinds: Sequence[str],
    model: nn.Module,
    spec: GraphSpec,
    family: str,
    options: RunOptions,
    clock: Callable[[], float] = time.perf_counter,
    calibration: Calibration = (),
) -> tuple[Backend, dict[str, float]]:
    """Builds each of ``kinds`` that can run here and keeps the fastest on the spec's example.

    Kinds that are unavailable, do not support ``options.precision`` or fail to export /
    build are left out. They are measured at ``options.batch`` where the graph's batch axis
    is dynamic. ``clock`` is as for :func:`fastest`; the other arguments are as for
    :func:`create_backend` (each candidate runs with ``options``, its ``backend`` replaced).

    Returns:
        The chosen backend and the median seconds per call of every candidate.

    Raises:
        BackendUnavailable: none of ``kinds`` can run here.
        UnsafeCacheError: the model cache is not safe to use (raised, not taken for one
            candidate's failure: it concerns them all).
    """
    candidates, reasons = [], []
    for kind in kinds:
        try:
            candidate = options.model_copy(update={"backend": kind})
            candidates.append(create_backend(model, spec, family, candidate, calibration))
        except UnsafeCacheError:
            raise
        except BackendError as error:  # includes BackendUnavailable
            reasons.append(f"{kind}: {error}")
    if not candidates:
        raise BackendUnavailable("no backend can run here (" + "; ".join(reasons) + ")")
    example = [torch.zeros(shape) for shape in at_batch(spec, options.batch).example]
    return fastest(candidates, example, clock=clock)


def fastest(
    backends: Sequence[Backend],
    inputs: Sequence[torch.Tensor],
    repeats: int = 5,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[Backend, dict[str, float]]:
    """The backend with the lowest median time on ``inputs``, and every median in seconds.

    Each backend runs once to warm up (lazy allocation, autotuning), then ``repeats`` times,
    each call timed by ``clock`` (seconds; tests pass a virtual one). Ties go to the first.
    """
    timings: dict[str, float] = {}
    for backend in backends:
        backend(*inputs)
        samples = []
        for _ in range(repeats):
            start = clock()
            backend(*inputs)
            if backend.device.type == "cuda":
                torch.cuda.synchronize(backend.device)
            samples.append(clock() - start)
        timings[backend.name] = sorted(samples)[len(samples) // 2]
    best = min(backends, key=lambda b: timings[b.name])
    return best, timings

"""How a model stage opens the backend that runs its network: one rule for every family."""

from __future__ import annotations

import logging

import torch
from torch import nn

from models.backends import (
    Backend,
    BackendError,
    GraphSpec,
    create_backend,
    create_fastest_backend,
    require_backend,
    runnable_kinds,
)
from pipeline.errors import ConfigError, ModelError

log = logging.getLogger("framegraph")

AUTO_CANDIDATES = ("torch", "onnxruntime", "tensorrt")


def auto_candidates(device: torch.device, precision: str = "fp32") -> tuple[str, ...]:
    """The backends ``auto`` builds and measures: those of :data:`AUTO_CANDIDATES` whose
    package and device are here and that run ``precision`` (``tensorrt`` only with TensorRT
    and a CUDA device, ``onnxruntime`` only in fp32 and, on CUDA, with its CUDA provider)."""
    return runnable_kinds(AUTO_CANDIDATES, device, precision)


def check_device(
    stage: str,
    device: torch.device,
    half: bool = False,
    cuda_graph: bool = False,
    backend: str = "auto",
) -> None:
    """What every model stage checks first when it opens: the device exists here, half
    precision and CUDA graphs are asked for on CUDA only, CUDA graphs of the torch backend.

    Raises:
        ModelError: a CUDA device is asked for and there is none (one line).
        ConfigError: ``half`` or ``cuda_graph`` without a CUDA device, or ``cuda_graph`` with
            a backend other than torch (or auto, which then measures torch with graphs).
    """
    if cuda_graph and backend not in ("torch", "auto"):
        raise ConfigError(f"{stage}: cuda_graph is an option of the torch backend, not {backend}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(f"{stage}: device {device} asked for, but CUDA is not available")
    if half and device.type != "cuda":
        raise ConfigError(f"{stage}: half precision needs a CUDA device")
    if cuda_graph and device.type != "cuda":
        raise ConfigError(f"{stage}: cuda_graph needs a CUDA device")


def open_backend(
    stage: str,
    kind: str,
    graph: nn.Module,
    spec: GraphSpec,
    family: str,
    device: torch.device,
    precision: str = "fp32",
    threads: int | None = None,
    channels_last: bool = False,
    cuda_graph: bool = False,
) -> Backend:
    """The backend ``kind`` for ``graph``; ``auto`` builds each of :func:`auto_candidates`
    (torch, onnxruntime, tensorrt where they can run), measures them on the spec's example
    input and keeps the fastest (the choice and timings are logged). A candidate whose export
    or engine build fails is left out.

    Args:
        stage: the stage kind, for messages (e.g. "translate").
        kind: ``torch``, ``onnxruntime``, ``tensorrt`` or ``auto``.
        graph: the tensor-in, tensors-out module with the family's official weights.
        spec: its graph interface.
        family: the model family (the folder of its cached exports).
        device: where it runs.
        precision: ``fp32``, or ``fp16`` / ``bf16`` on CUDA.
        threads: CPU threads of onnxruntime.
        channels_last: torch: NHWC memory format.
        cuda_graph: torch: replay one CUDA graph per input shape (``check_device`` first).

    Raises:
        ModelError: no such backend here, or its export / build failed (one line).
    """
    options = (graph, spec, family, device, precision, threads, channels_last, cuda_graph)
    try:
        if kind != "auto":
            return create_backend(kind, *options)
        kinds = auto_candidates(device, precision) or AUTO_CANDIDATES  # none: say why each not
        backend, timings = create_fastest_backend(kinds, *options)
    except BackendError as error:
        raise ModelError(f"{stage}: {error}") from None
    log.info("%s: %s (median ms: %s)", stage, backend.name,
             {name: round(seconds * 1e3, 1) for name, seconds in timings.items()})  # fmt: skip
    return backend


def check_backend(stage: str, kind: str, device: torch.device, precision: str = "fp32") -> None:
    """For a stage that builds its backends later (at its first frame): fail at open, in one
    line, when the named backend cannot run here (``auto`` always can: torch is a candidate).

    Raises:
        ModelError: the backend's package or device is missing, or it is unknown.
    """
    if kind == "auto":
        return
    try:
        require_backend(kind, device, precision)
    except BackendError as error:
        raise ModelError(f"{stage}: {error}") from None

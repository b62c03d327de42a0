"""How a network runs, as one validated object that the backend layer takes whole.

Every model stage accepts these fields as config keys of its own (``backend: onnxruntime``,
``precision: fp16``, ...) and hands the object to :func:`models.backends.create_backend`
unchanged, so a new run option is a field here and the code of the backend that uses it.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

BackendKind = Literal["torch", "onnxruntime", "tensorrt", "auto"]
Precision = Literal["fp32", "fp16", "bf16", "int8"]


class RunOptions(BaseModel):
    """Where and how a model's network runs.

    Attributes:
        backend: ``torch`` (eager), ``onnxruntime`` (our export, cached), ``tensorrt`` (an
            engine built from that export, cached; needs TensorRT and a GPU) or ``auto`` (the
            fastest of those that can run here, measured on the model's example input).
        device: ``cpu``, ``cuda`` or ``cuda:N``.
        precision: ``fp32``; on CUDA also ``fp16`` (torch, tensorrt) or ``bf16`` (torch); on
            the CPU ``int8`` (onnxruntime: our export quantized statically, calibrated on the
            family's bundled frames; see ``models/backends/quantize.py``).
        cuda_graph: torch on CUDA: capture the network once per input shape and replay it.
        threads: intra-op threads of onnxruntime sessions (None: one per core). torch's
            thread count is the process's, set once from the config (``pipeline.threads``).
        channels_last: torch: NHWC memory format (None: the model family's choice).
        batch: the most frames one network call takes (from one source or several); the
            stage waits at most ``batch_timeout_ms`` for a batch to fill.
        batch_timeout_ms: how long a stage with ``batch`` > 1 waits for more frames once it
            has one (0: it takes what is queued).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: BackendKind = "auto"
    device: str = "cpu"
    precision: Precision = "fp32"
    cuda_graph: bool = False
    threads: int | None = Field(None, ge=1)
    channels_last: bool | None = None
    batch: int = Field(1, ge=1, le=64)
    batch_timeout_ms: float = Field(0.0, ge=0.0)

    @property
    def torch_device(self) -> torch.device:
        """``device`` as a torch device."""
        return torch.device(self.device)

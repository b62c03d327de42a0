"""The ``onnxruntime`` backend: an ONNX file run by ONNX Runtime."""

from __future__ import annotations

import os

import numpy as np
import torch

from models.backends.base import BackendError, BackendUnavailable


class OnnxRuntimeBackend:
    """Runs an ONNX graph with ONNX Runtime.

    Args:
        model: the graph's bytes (e.g. ``cached_onnx_bytes``: checked, then loaded from the
            same bytes) or a .onnx file.
        device: "cpu" or a CUDA device (then the CUDA execution provider is tried first, and
            CPU is the fallback ONNX Runtime itself applies).
        threads: intra-op threads (None: ONNX Runtime's default, one per core).
    """

    name = "onnxruntime"

    def __init__(
        self,
        model: bytes | str | os.PathLike,
        device: str | torch.device = "cpu",
        threads: int | None = None,
    ) -> None:
        ort = self.require(device)
        self.device = torch.device(device)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        providers = ["CPUExecutionProvider"]
        if self.device.type == "cuda":
            providers.insert(0, "CUDAExecutionProvider")
        source = model if isinstance(model, bytes) else os.fspath(model)
        try:
            self.session = ort.InferenceSession(source, options, providers=providers)
        except Exception as error:  # onnxruntime raises its own exception types
            what = "the ONNX graph" if isinstance(model, bytes) else os.fspath(model)
            raise BackendError(f"onnxruntime cannot load {what}: {error}") from None
        self.input_names = [i.name for i in self.session.get_inputs()]

    @staticmethod
    def require(device: str | torch.device = "cpu"):
        """The ``onnxruntime`` module, if it can run on ``device`` (checked before exporting).

        Raises:
            BackendUnavailable: onnxruntime is missing, or has no CUDA provider for a GPU.
        """
        try:
            import onnxruntime as ort
        except ImportError:
            raise BackendUnavailable(
                "onnxruntime is not installed (pip install onnxruntime)"
            ) from None
        cuda = torch.device(device).type == "cuda"
        if cuda and "CUDAExecutionProvider" not in ort.get_available_providers():
            raise BackendUnavailable(
                "this onnxruntime has no CUDA provider (pip install onnxruntime-gpu)"
            )
        return ort

    def __call__(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if len(inputs) != len(self.input_names):
            raise BackendError(f"expected {len(self.input_names)} inputs, got {len(inputs)}")
        feed = {
            name: np.ascontiguousarray(x.detach().float().cpu().numpy())
            for name, x in zip(self.input_names, inputs, strict=True)
        }
        outputs = self.session.run(None, feed)
        return tuple(torch.from_numpy(o).to(self.device) for o in outputs)

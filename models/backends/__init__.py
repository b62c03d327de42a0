"""Inference backends: one interface over torch eager, ONNX Runtime and TensorRT.

A backend is called like the model's ``forward`` on already-normalised input tensors and
returns the raw head outputs as a tuple of tensors, whatever runs underneath:

* ``torch``: the nn.Module itself; fp32 / fp16 / bf16, channels_last, CUDA graphs.
* ``onnxruntime``: our ONNX export of the module (cached by a hash of its code and weights;
  loaded from bytes checked against the sha256 recorded when it was written, see
  ``models.cache``), on the CPU execution provider (or CUDA's when asked and present).
* ``tensorrt``: an engine built from the same ONNX export, cached under a key of everything
  that makes an engine valid (ONNX hash, input shapes, precision, GPU name and compute
  capability, TensorRT version), built once under a file lock. Optional: without the
  ``tensorrt`` package or a GPU it raises :class:`BackendUnavailable` with the reason.

Every backend is checked against torch eager on the same input (tests/models/test_backends.py;
bench/backends.py prints the parity beside the timings).
"""

from models.backends.base import (
    Backend,
    BackendError,
    BackendUnavailable,
    GraphSpec,
    UnsafeCacheError,
)
from models.backends.onnx import cached_onnx, cached_onnx_bytes, export_onnx
from models.backends.options import BackendKind, Precision, RunOptions
from models.backends.ort import OnnxRuntimeBackend
from models.backends.quantize import Calibration, cached_int8_onnx, cached_int8_onnx_bytes
from models.backends.select import (
    create_backend,
    create_fastest_backend,
    fastest,
    require_backend,
    runnable_kinds,
)
from models.backends.tensorrt import EngineCache, EngineKey, TensorRTBackend, tensorrt_version
from models.backends.torch_backend import TorchBackend

__all__ = [
    "Backend",
    "BackendError",
    "BackendKind",
    "BackendUnavailable",
    "Calibration",
    "EngineCache",
    "EngineKey",
    "GraphSpec",
    "OnnxRuntimeBackend",
    "Precision",
    "RunOptions",
    "TensorRTBackend",
    "TorchBackend",
    "UnsafeCacheError",
    "cached_int8_onnx",
    "cached_int8_onnx_bytes",
    "cached_onnx",
    "cached_onnx_bytes",
    "create_backend",
    "create_fastest_backend",
    "export_onnx",
    "fastest",
    "require_backend",
    "runnable_kinds",
    "tensorrt_version",
]

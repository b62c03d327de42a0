"""Static int8 quantization of our ONNX exports for onnxruntime on the CPU.

The fp32 export is quantized in the QDQ format (int8 weights per output channel, uint8
activations whose ranges come from running the fp32 graph on calibration inputs: min / max
over a few real frames of the family's bundled media). The result is cached beside the fp32
export under a key of that export and of the calibration inputs, built once under a file lock.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from models.backends.base import BackendError, GraphSpec
from models.backends.onnx import cached_onnx
from models.cache import atomic_export, file_lock

Calibration = Sequence[tuple[torch.Tensor, ...]]
"""Inputs to calibrate on: one tuple of input tensors (in the spec's order) per call."""


def calibration_digest(calibration: Calibration) -> str:
    """sha256 of the calibration inputs (shapes and values)."""
    digest = hashlib.sha256()
    for inputs in calibration:
        for tensor in inputs:
            array = tensor.detach().float().cpu().contiguous().numpy()
            digest.update(str(array.shape).encode())
            digest.update(array.tobytes())
    return digest.hexdigest()


def cached_int8_onnx(
    model: nn.Module,
    spec: GraphSpec,
    family: str,
    calibration: Calibration,
    cache_dir: str | os.PathLike | None = None,
) -> Path:
    """The int8 (QDQ) ONNX of ``model``, calibrated on ``calibration``, made once and reused.

    Raises:
        BackendError: no calibration inputs, or quantization failed (one line).
    """
    if not calibration:
        raise BackendError(f"int8 needs calibration inputs, and {family} gave none")
    fp32 = cached_onnx(model, spec, family, cache_dir)
    key = hashlib.sha256(f"{fp32.name}:{calibration_digest(calibration)}".encode()).hexdigest()
    path = fp32.with_name(f"int8-{key[:24]}.onnx")
    with file_lock(path.with_suffix(".lock")):
        if not path.is_file():
            try:
                atomic_export(path, lambda tmp: _quantize(fp32, Path(tmp), spec, calibration))
            except Exception as error:  # onnxruntime's quantizer raises many types
                reason = (str(error).strip() or repr(error)).splitlines()[0][:300]
                raise BackendError(f"cannot quantize {family} to int8: {reason}") from error
    return path


def _quantize(fp32: Path, out: Path, spec: GraphSpec, calibration: Calibration) -> None:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    feeds = [
        {
            name: t.detach().float().cpu().numpy()
            for name, t in zip(spec.inputs, inputs, strict=True)
        }
        for inputs in calibration
    ]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.feeds, None)

    prepared = out.with_name(out.name + ".pre.onnx")
    try:
        # fold and infer shapes first, as onnxruntime recommends before quantizing
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )  # fmt: skip
    finally:
        prepared.unlink(missing_ok=True)

"""Static int8 quantization of our ONNX exports for onnxruntime on the CPU.

The fp32 export is quantized in the QDQ format (int8 weights per output channel, uint8
activations whose ranges come from running the fp32 graph on calibration inputs: min / max
over a few real frames of the family's bundled media). The result is cached beside the fp32
export under a key of that export and of the calibration inputs, built once under a file lock
and checked against its recorded sha256 like every cache entry (``models.cache``).
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
from models.backends.onnx import onnx_entry
from models.cache import cached_entry, scratch_file, sha256

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


def int8_entry(
    model: nn.Module,
    spec: GraphSpec,
    family: str,
    calibration: Calibration,
    cache_dir: str | os.PathLike | None = None,
) -> tuple[Path, bytes]:
    """The int8 (QDQ) ONNX of ``model``, calibrated on ``calibration``: its cache file and its
    bytes, checked against the sha256 recorded when it was written, made once and reused.

    It is quantized from the checked bytes of the fp32 export (never from that file by name),
    and keyed by that export, the calibration inputs, onnxruntime's version and this code.

    Raises:
        BackendError: no calibration inputs, or quantization failed (one line).
        CacheError: the cache folder is not safe to use (``models.cache``); one line.
    """
    if not calibration:
        raise BackendError(f"int8 needs calibration inputs, and {family} gave none")
    fp32_path, fp32 = onnx_entry(model, spec, family, cache_dir)
    import onnxruntime

    key = hashlib.sha256(
        f"{sha256(fp32)}:{calibration_digest(calibration)}:{onnxruntime.__version__}".encode()
        + Path(__file__).read_bytes()
    ).hexdigest()
    path = fp32_path.with_name(f"int8-{key[:24]}.onnx")
    return path, cached_entry(path, lambda: _quantize(fp32, path.parent, spec, calibration, family))


def cached_int8_onnx_bytes(
    model: nn.Module,
    spec: GraphSpec,
    family: str,
    calibration: Calibration,
    cache_dir: str | os.PathLike | None = None,
) -> bytes:
    """The checked bytes of the int8 ONNX of ``model`` (see :func:`int8_entry`): what the
    onnxruntime backend loads."""
    return int8_entry(model, spec, family, calibration, cache_dir)[1]


def cached_int8_onnx(
    model: nn.Module,
    spec: GraphSpec,
    family: str,
    calibration: Calibration,
    cache_dir: str | os.PathLike | None = None,
) -> Path:
    """The cache file of the int8 ONNX of ``model`` (see :func:`int8_entry`), checked (or
    rebuilt) before it is returned: for tools; whoever opens it later reads it by name."""
    return int8_entry(model, spec, family, calibration, cache_dir)[0]


def _quantize(
    fp32: bytes, folder: Path, spec: GraphSpec, calibration: Calibration, family: str
) -> bytes:
    """The int8 QDQ graph of the fp32 graph ``fp32``, via scratch files of ours in ``folder``.

    Raises:
        BackendError: quantization failed (one line).
    """
    try:
        with scratch_file(folder, ".onnx") as prepared, scratch_file(folder, ".onnx") as out:
            _quantize_files(fp32, prepared, out, spec, calibration)
            return out.read_bytes()  # our own file (0600, in our 0700 folder), just written
    except Exception as error:  # onnxruntime's quantizer raises many types
        reason = (str(error).strip() or repr(error)).splitlines()[0][:300]
        raise BackendError(f"cannot quantize {family} to int8: {reason}") from error


def _quantize_files(
    fp32: bytes, prepared: Path, out: Path, spec: GraphSpec, calibration: Calibration
) -> None:
    """Quantizes ``fp32`` into ``out`` (``prepared``: the shape-inferred graph between)."""
    import onnx
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

    # fold and infer shapes first, as onnxruntime recommends before quantizing
    quant_pre_process(onnx.load_from_string(fp32), str(prepared), skip_symbolic_shape=True)
    quantize_static(
        str(prepared), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
    )  # fmt: skip

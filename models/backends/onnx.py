"""ONNX export of any model family, cached by a hash of its weights and graph interface."""

from __future__ import annotations

import copy
import hashlib
import os
import sys
import warnings
from pathlib import Path

import torch
from torch import nn

from models.backends.base import BackendError, GraphSpec
from models.cache import atomic_export, resolve_cache_dir


def export_onnx(model: nn.Module, path: str | os.PathLike, spec: GraphSpec) -> None:
    """Exports ``model`` (eval mode, its current device, float32 example inputs) to ONNX.

    Uses the TorchScript exporter: it needs no onnxscript and keeps stable node names. Every
    submodule's train/eval mode is restored afterwards.
    """
    device = next(model.parameters()).device
    example = tuple(torch.zeros(shape, device=device) for shape in spec.example)
    # Restore every submodule's own mode afterwards: a wrapper (fresh, so in training mode)
    # around a model in eval mode must not leave that model in training mode.
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        with warnings.catch_warnings():
            # torch >= 2.9 calls the TorchScript exporter legacy; it is the one that exports
            # these models without extra packages.
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            # Shapes read while tracing become constants: intended, the specs fix the shapes.
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            # Instance norm always normalises by the input's own statistics: "train=True" is
            # its eval behaviour, not a mistake.
            warnings.filterwarnings("ignore", message=".*'instance_norm' is set to train=True")
            warnings.filterwarnings("ignore", message="Constant folding - Only steps=1")
            torch.onnx.export(
                model,
                example,
                os.fspath(path),
                dynamo=False,
                opset_version=spec.opset,
                input_names=list(spec.inputs),
                output_names=list(spec.outputs),
                dynamic_axes=spec.dynamic or None,
                do_constant_folding=True,
            )
    finally:
        for module, training in modes.items():
            module.training = training


def _code_digest(model: nn.Module) -> str:
    """sha256 of the Python sources of the package that defines ``model``'s class.

    The export is a function of the code as much as of the weights: a fixed bug in a model's
    forward must not be served from an old export with the same weights.
    """
    module = sys.modules.get(type(model).__module__)
    source = getattr(module, "__file__", None)
    digest = hashlib.sha256()
    if source:
        for path in sorted(Path(source).parent.glob("*.py")):
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def model_digest(model: nn.Module, spec: GraphSpec) -> str:
    """sha256 of the model's class and code, weights and buffers, the graph spec and torch's
    version: everything an export depends on."""
    digest = hashlib.sha256(f"{type(model).__qualname__}:{torch.__version__}".encode())
    digest.update(_code_digest(model).encode())
    digest.update(spec.describe().encode())
    for key, tensor in model.state_dict().items():
        digest.update(key.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def cached_onnx(
    model: nn.Module, spec: GraphSpec, family: str, cache_dir: str | os.PathLike | None = None
) -> Path:
    """The ONNX export of ``model``, made once and reused (``<cache>/<family>/onnx-<hash>.onnx``).

    The export is written to a temporary file and renamed into place, so concurrent processes
    never read half a file. ``model`` is exported in float32 on the CPU whatever its state.

    Raises:
        BackendError: the model cannot be exported (e.g. an operator ONNX lacks); one line.
    """
    path = resolve_cache_dir(cache_dir) / family / f"onnx-{model_digest(model, spec)[:24]}.onnx"
    if not path.is_file():
        # .float() / .cpu() act in place: export a copy, leave the caller's model alone.
        cpu = copy.deepcopy(model).float().cpu() if _on_cuda_or_half(model) else model
        try:
            atomic_export(path, lambda tmp: export_onnx(cpu, tmp, spec))
        except Exception as error:  # the exporter raises many types; all mean "no export"
            reason = (str(error).strip() or repr(error)).splitlines()[0]
            reason = reason.split(" [Caused by")[0].split(". Please feel free")[0][:300]
            raise BackendError(f"cannot export {family} to ONNX: {reason}") from error
    return path


def _on_cuda_or_half(model: nn.Module) -> bool:
    p = next(model.parameters())
    return p.device.type != "cpu" or p.dtype != torch.float32

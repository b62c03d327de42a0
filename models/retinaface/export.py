"""ONNX export of RetinaFace (TorchScript exporter, opset 17)."""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from .weights import resolve_cache_dir

__all__ = ["cached_onnx", "export_onnx"]


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    height: int,
    width: int,
    dynamic: bool = False,
    opset: int = 17,
) -> None:
    """Export ``model`` to ONNX with input ``input`` and outputs ``loc``, ``conf``, ``landmarks``.

    Upstream's convert_to_onnx.py names only the first output; all three are named
    here. The model is exported in eval mode on its current device.

    Args:
        model: A ``RetinaFace`` (its train/eval mode is restored afterwards).
        path: Output .onnx file.
        height: Input height of the traced graph.
        width: Input width of the traced graph.
        dynamic: Mark batch, height and width as dynamic axes.
        opset: ONNX opset (default 17).

    The graph: ``input`` float32 [N, 3, H, W] (BGR minus mean) -> ``loc`` [N, P, 4],
    ``conf`` [N, P, 2] (softmaxed), ``landmarks`` [N, P, 10].
    """
    device = next(model.parameters()).device
    example = torch.zeros(1, 3, height, width, device=device)
    axes = None
    if dynamic:
        image = {0: "batch", 2: "height", 3: "width"}
        axes = {"input": image, "loc": {0: "batch", 1: "priors"}}
        axes |= {"conf": {0: "batch", 1: "priors"}, "landmarks": {0: "batch", 1: "priors"}}
    was_training = model.training
    model.eval()
    try:
        with warnings.catch_warnings():
            # torch >= 2.9 flags the TorchScript exporter as legacy; it is the one that
            # exports this model without onnxscript and with stable node names.
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            torch.onnx.export(
                model,
                (example,),
                os.fspath(path),
                dynamo=False,
                opset_version=opset,
                input_names=["input"],
                output_names=["loc", "conf", "landmarks"],
                dynamic_axes=axes,
                do_constant_folding=True,
            )
    finally:
        model.train(was_training)


def cached_onnx(
    model: nn.Module, cache_dir: str | os.PathLike | None = None, opset: int = 17
) -> Path:
    """A dynamic-shape ONNX export of ``model``, made once and reused.

    The file is keyed by a hash of the weights, the opset and the torch version
    (``<cache>/retinaface/onnx-<key>.onnx``), and written to a temporary file that
    is renamed into place, so concurrent processes never read half a file.
    """
    digest = hashlib.sha256(f"{opset}:{torch.__version__}".encode())
    for key, tensor in model.state_dict().items():
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    path = resolve_cache_dir(cache_dir) / "retinaface" / f"onnx-{digest.hexdigest()[:24]}.onnx"
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        export_onnx(model, tmp, 480, 640, dynamic=True, opset=opset)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path

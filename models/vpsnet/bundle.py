"""``load``: VPSNet as a :class:`models.bundle.ModelBundle`."""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import Tensor

from models.bundle import RANDOM, ExportGraph, ModelBundle, ModelMeta, resolve_weights

from .config import RGB_MEAN, RGB_STD, VARIANTS
from .export import FirstFrameGraph, NextFrameGraph, graph_specs
from .net import VPSNet
from .panoptic import frame_segments
from .preprocess import TEST_SCALE, normalise, resize_frame
from .weights import load_weights


def load(
    weights: str | os.PathLike | None = None,
    variant: str | None = None,
    scale: tuple[int, int] | None = None,
    category_ids: list[int] | None = None,
) -> ModelBundle:
    """VPSNet, ready to run.

    Args:
        weights: a checkpoint (the official mmcv ``.pth``, loaded strictly; its
            ``flownet2.*`` keys are FlowNet2's, see ``load_flownet2``), ``random``, or None
            for our demo weights (MobileNetV2 trained on generated scenes).
        variant: a ``VARIANTS`` name; default: the weights' sidecar's, else "fusetrack".
        scale: the (long, short) edges frames are fitted into; default: the sidecar's, else
            the official 2048 x 1024.
        category_ids: the category id of each semantic class, stuff first; default: the
            sidecar's, else 1, 2, ...

    Returns:
        The bundle (``meta.input_size`` the scale): ``preprocess(image, device="cpu")`` ->
        (float32 [1, 3, H', W'] normalised RGB padded to multiples of 32, the resized BGR
        frame [h, w, 3] inside the padding);
        ``graphs(H', W')`` -> ``{"first_frame": images -> the 22 maps of
        ``export.OUTPUTS``, "next_frame": images, reference P2..P6, flow -> the same}`` (no
        ``next_frame`` without fusion); the heads on the detections and the tracking run in
        ``module.inference``; ``postprocess(maps, frame_size)`` -> (int32 [H, W] segment
        ids, {segment id: class, is_thing, track_id, area}).

    Raises:
        FileNotFoundError: no such weights file.
        ValueError: an unknown variant, another family's weights, weights that do not fit,
            or ``category_ids`` of the wrong length (one line).
    """
    weights, variant, sidecar = resolve_weights(
        "vpsnet", "VPSNet", weights, variant, "fusetrack", VARIANTS
    )
    module = VPSNet(VARIANTS[variant])
    if weights != RANDOM:
        load_weights(module, weights)
    module.eval()
    config = module.config
    ids = list(category_ids or sidecar.get("category_ids", range(1, config.num_classes + 1)))
    if len(ids) != config.num_classes:
        raise ValueError(
            f"category_ids has {len(ids)} entries, the model {config.num_classes} classes"
        )
    names = tuple(sidecar.get("classes", ()))
    fitted = tuple(scale or sidecar.get("input_scale", TEST_SCALE))
    meta = ModelMeta("vpsnet", variant, weights, fitted, RGB_MEAN, RGB_STD, names, sidecar)

    def preprocess(
        image: np.ndarray, device: str | torch.device = "cpu"
    ) -> tuple[Tensor, np.ndarray]:
        resized = resize_frame(image, fitted)
        return normalise(resized, device), resized

    def graphs(height: int, width: int) -> dict[str, ExportGraph]:
        first, following = graph_specs(config.channels, height, width)
        found = {"first_frame": ExportGraph(FirstFrameGraph(module), first)}
        if config.fusion:
            found["next_frame"] = ExportGraph(NextFrameGraph(module), following)
        return found

    def postprocess(maps, frame_size: tuple[int, int]) -> tuple[np.ndarray, dict[int, dict]]:
        return frame_segments(maps, ids, config.num_stuff, frame_size)

    return ModelBundle(module, meta, preprocess, graphs, postprocess)

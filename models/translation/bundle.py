"""``load``: a translation network as a :class:`models.bundle.ModelBundle`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from models.bundle import ExportGraph, ModelBundle, ModelMeta

from .export import TranslatorGraph, graph_spec
from .translator import NETWORKS, load_translator


def load(
    weights: str | os.PathLike | None = None,
    variant: str | None = None,
    style: int | dict[int, float] | list[float] | None = None,
    **generator_options: Any,
) -> ModelBundle:
    """A translation network behind RGB 0..1 in and out, ready to run.

    Args:
        weights: the checkpoint for the official layouts (``transformer_net``, junyanz's
            generators; loaded strictly), another ONNX file of multistyle26's layout, or
            None for the packaged weights (multistyle26, vintagify).
        variant: the network, one of ``NETWORKS`` (default ``multistyle26``).
        style: multistyle26's style index or mix.
        **generator_options: junyanz generator options (``norm``, ``use_dropout``).

    Returns:
        The bundle (``module``: the :class:`Translator`): ``preprocess(images,
        device="cpu")`` -> float32 [N, 3, H', W'] RGB 0..1, padded to the network's
        multiple (BGR uint8 [H, W, 3] images of one size in); ``graphs(H', W')`` -> ``{"net":
        rgb -> translated}`` (dynamic batch and size); ``postprocess(translated, (H, W))`` ->
        the BGR uint8 [H, W, 3] images, padding cropped.

    Raises:
        FileNotFoundError: no such weights file, or the package shipping them is missing.
        ValueError: an unknown network, or weights missing or not fitting (one line).
    """
    variant = variant or "multistyle26"
    if variant not in NETWORKS:
        raise ValueError(f"network must be one of {list(NETWORKS)}, got {variant!r}")
    translator = load_translator(variant, None if weights is None else os.fspath(weights),
                                 style, **generator_options)  # fmt: skip
    source = os.fspath(weights) if weights is not None else f"packaged {variant}"
    meta = ModelMeta("translation", variant, source)

    def preprocess(images: Sequence[np.ndarray], device: str | torch.device = "cpu") -> Tensor:
        rgb = np.stack([image[..., ::-1] for image in images])
        x = torch.from_numpy(rgb).to(device).permute(0, 3, 1, 2).float() / 255
        return translator.pad(x)

    def graphs(height: int = 360, width: int = 640) -> dict[str, ExportGraph]:
        return {"net": ExportGraph(TranslatorGraph(translator), graph_spec(height, width))}

    return ModelBundle(translator, meta, preprocess, graphs, to_images)


def to_images(translated: Tensor, size: tuple[int, int]) -> list[np.ndarray]:
    """float [N, 3, H', W'] RGB 0..1 -> N BGR uint8 [H, W, 3] images, cropped to ``size``."""
    height, width = size
    rgb = translated[:, :, :height, :width].permute(0, 2, 3, 1).mul(255).round().byte()
    return [np.ascontiguousarray(image[..., ::-1]) for image in rgb.cpu().numpy()]

"""One way to load every model family: ``models.<family>.load(weights=None, variant=None)``.

Each family's ``load`` reads the weights (and their JSON sidecar, once) and returns a
:class:`ModelBundle`: the module with the official parameter names, what it is
(:class:`ModelMeta`), how a frame becomes its input (``preprocess``), the tensor-in,
tensors-out graphs the backends run (``graphs``) and how their outputs become results
(``postprocess``). The stages, ``bench/``, the trainers and the README pictures all load
through it; ``build_model(variant)`` stays the bare constructor the parity checks use.

    from models import retinaface

    faces = retinaface.load()                          # the packaged weights
    x, factors = faces.preprocess(bgr_image)
    net = faces.graphs(*x.shape[2:])["net"]            # ExportGraph(module, spec)
    found = faces.postprocess(*net.module(x), tuple(x.shape[2:]))[0]
"""

from __future__ import annotations

import os
from collections.abc import Callable, Container
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from models.backends.base import GraphSpec
from models.checkpoints import weights_meta

RANDOM = "random"
"""``weights: random``: the architecture with random weights (timing and tests only)."""

MODELS = Path(__file__).resolve().parent


@dataclass(frozen=True)
class ModelMeta:
    """What a loaded model is.

    Attributes:
        family: the ``models`` package it comes from (``retinaface``, ``yolact_edge``, ...).
        variant: its architecture, a name of the family's ``VARIANTS``.
        weights: where its weights came from: a file, a package, or ``random``.
        input_size: the size its input is resized to, in the family's terms (YolactEdge: the
            square side; DensePose: the shorter edge; VPSNet: the (long, short) edges it is
            fitted into); None where frames keep their size (RetinaFace, translation).
        mean: per-channel mean subtracted from 0..255 pixels, in the input's channel order
            (empty where the input is RGB in 0..1).
        std: per-channel divisor after the mean (empty as ``mean``).
        class_names: the classes it finds, background excluded (empty for translation).
        sidecar: the weights' JSON sidecar as written by our trainers (training command,
            accuracy, ...); empty for official and packaged weights.
    """

    family: str
    variant: str
    weights: str
    input_size: int | tuple[int, int] | None = None
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    class_names: tuple[str, ...] = ()
    sidecar: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ExportGraph:
    """A tensor-in, tensors-out module the backends run, and its interface."""

    module: nn.Module
    spec: GraphSpec


@dataclass
class ModelBundle:
    """A model family loaded: everything needed to run it on frames.

    Attributes:
        module: the network (official parameter names), eval mode, on the CPU.
        meta: what it is.
        preprocess: BGR uint8 frame(s) -> network input; the family's ``load`` documents its
            arguments and what it returns.
        graphs: ``graphs(height, width)`` -> the export graphs by name at that (padded) input
            size, sharing ``module``'s weights.
        postprocess: network outputs -> the family's results (documented by its ``load``).
    """

    module: nn.Module
    meta: ModelMeta
    preprocess: Callable[..., Any]
    graphs: Callable[[int, int], dict[str, ExportGraph]]
    postprocess: Callable[..., Any]


def demo_weights(family: str) -> Path:
    """The weights we trained for ``family`` on generated scenes and commit (MobileNetV2)."""
    return MODELS / family / "weights" / "synthetic_mobilenetv2.pth"


def resolve_weights(
    family: str,
    title: str,
    weights: str | os.PathLike | None,
    variant: str | None,
    default: str,
    variants: Container[str],
) -> tuple[str, str, dict[str, Any]]:
    """The weights, variant and sidecar a family's ``load`` builds from.

    Args:
        family: the family's package name (its demo weights' folder).
        title: the family's name in messages (e.g. "VPSNet").
        weights: a checkpoint path, ``random``, or None for the family's demo weights.
        variant: the variant asked for, if any.
        default: the variant when neither ``variant`` nor a sidecar names one.
        variants: the family's variant names.

    Returns:
        ``(weights, variant, sidecar)``: the weights as a string, the variant asked for,
        else the sidecar's, else ``default``; the sidecar's fields ({} without one).

    Raises:
        ValueError: an unknown variant, or a sidecar naming another family's variant (the
            weights of another model), in one line.
    """
    if weights is None:
        weights = demo_weights(family)
    weights = os.fspath(weights)
    if variant is not None and variant not in variants:
        raise ValueError(f"unknown {title} variant {variant!r}; one of {sorted(variants)}")
    sidecar = {} if weights == RANDOM else weights_meta(weights)
    chosen = variant or sidecar.get("variant", default)
    if chosen not in variants:
        raise ValueError(
            f"{weights} is not {title} weights (its sidecar names the variant {chosen!r})"
        )
    return weights, chosen, sidecar

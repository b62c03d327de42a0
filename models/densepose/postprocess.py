"""DensePose chart outputs -> per-box part index I and U, V (detectron2's chart result).

The predictor gives, per detected person, 112x112 maps in the box's own frame: coarse
foreground / background logits, fine logits over 24 body parts + background, and U, V
regressions per part. detectron2 (converters/chart_output_to_chart_result.py) turns them into
a result over the box's integer size:

1. the box xyxy becomes x, y, w, h with ``w = int(x1 - x0)``, ``h = int(y1 - y0)`` (truncated,
   at least 1);
2. every map is resized bilinearly (align_corners False) to h x w;
3. ``I = argmax(fine) * (argmax(coarse) > 0)``: a part where the coarse head sees a person;
4. U and V at each pixel are read from the channel of its part, 0 on the background.

The box is pasted at ``(int(x0), int(y0))``. Quantised results are (I, U*255, V*255) uint8.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

if TYPE_CHECKING:
    from .net import DensePoseInstances


def box_size(box: Tensor) -> tuple[int, int]:
    """detectron2's integer (height, width) of an xyxy box: truncated, at least 1."""
    x0, y0, x1, y1 = (float(c) for c in box)
    return max(int(y1 - y0), 1), max(int(x1 - x0), 1)


def chart_result(
    box: Tensor, coarse_segm: Tensor, fine_segm: Tensor, u: Tensor, v: Tensor
) -> tuple[Tensor, Tensor]:
    """One person's part index and chart coordinates over its box.

    Args:
        box: float [4] xyxy in the image's pixels.
        coarse_segm: float [2, S, S] background / foreground logits.
        fine_segm: float [25, S, S] background + 24 part logits.
        u: float [25, S, S] U per part (nominally 0..1, not clamped by the model).
        v: float [25, S, S] V per part.

    Returns:
        ``(labels int64 [h, w] in 0..24, uv float [2, h, w])`` with ``h, w = box_size(box)``;
        U and V are 0 where the label is 0.
    """
    size = box_size(box)

    def resized(maps: Tensor) -> Tensor:
        return F.interpolate(maps[None], size=size, mode="bilinear", align_corners=False)[0]

    person = resized(coarse_segm).argmax(0) > 0
    labels = resized(fine_segm).argmax(0) * person
    index = labels[None]
    uv = torch.cat([resized(u).gather(0, index), resized(v).gather(0, index)])
    return labels, uv * (labels > 0)


def chart_results(
    boxes: Tensor, coarse_segm: Tensor, fine_segm: Tensor, u: Tensor, v: Tensor
) -> list[tuple[Tensor, Tensor]]:
    """:func:`chart_result` for every detection: boxes [K, 4] and maps [K, C, S, S]."""
    return [
        chart_result(boxes[k], coarse_segm[k], fine_segm[k], u[k], v[k]) for k in range(len(boxes))
    ]


def chart_arrays(
    found: DensePoseInstances, min_score: float
) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray], np.ndarray]:
    """The people scoring at least ``min_score`` (best first) as numpy, each box's I, U, V from
    its chart outputs (:func:`chart_results`): the fields of the pipeline's ``DensePoseResult``,
    in its order.

    Args:
        found: One image's detections with their chart outputs.
        min_score: Least person score kept.

    Returns:
        ``(boxes float32 [N, 4] xyxy, parts [uint8 [h_i, w_i] in 0..24] * N,
        uv [float32 [2, h_i, w_i]] * N, scores float32 [N])``.
    """
    keep = found.scores >= min_score
    boxes = found.boxes[keep]
    charts = chart_results(
        boxes, found.coarse_segm[keep], found.fine_segm[keep], found.u[keep], found.v[keep]
    )
    return (
        boxes.cpu().numpy().astype(np.float32),
        [labels.cpu().numpy().astype(np.uint8) for labels, _ in charts],
        [uv.cpu().numpy().astype(np.float32) for _, uv in charts],
        found.scores[keep].cpu().numpy().astype(np.float32),
    )


def quantize(labels: Tensor, uv: Tensor) -> Tensor:
    """(labels [h, w], uv [2, h, w]) -> uint8 [3, h, w]: I, U*255, V*255 (U, V clamped to 0..1)."""
    scaled = (uv.clamp(0, 1) * 255).round().to(torch.uint8)
    return torch.cat([labels[None].to(torch.uint8), scaled])

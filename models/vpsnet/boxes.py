"""Box arithmetic in mmdetection v1's convention: a box (x1, y1, x2, y2) covers pixels x1..x2
inclusive, so its width is ``x2 - x1 + 1``. Anchors, deltas, IoU, NMS and RoI pooling all
follow it, as the official VPSNet (mmdet v1 + UPSNet) does."""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import box_iou as exclusive_box_iou
from torchvision.ops import nms, roi_align

from .config import ANCHOR_RATIOS, ANCHOR_SCALE, FINEST_SCALE, MAX_DELTA_RATIO


def base_anchors(stride: int, device: torch.device | None = None) -> Tensor:
    """The anchors at grid cell (0, 0) of a level: [3, 4] in ratio order 0.5, 1, 2.

    Centre ``(stride - 1) / 2``, side ``stride * 8`` scaled by ``1 / sqrt(r)`` (width) and
    ``sqrt(r)`` (height), corners ``centre -/+ (side - 1) / 2`` rounded (mmdet v1).
    """
    ratios = torch.tensor(ANCHOR_RATIOS, dtype=torch.float32, device=device)
    centre = 0.5 * (stride - 1)
    h_ratios = ratios.sqrt()
    ws = stride * ANCHOR_SCALE / h_ratios
    hs = stride * ANCHOR_SCALE * h_ratios
    return torch.stack(
        [centre - 0.5 * (ws - 1), centre - 0.5 * (hs - 1), centre + 0.5 * (ws - 1),
         centre + 0.5 * (hs - 1)], dim=1,
    ).round()  # fmt: skip


def grid_anchors(stride: int, height: int, width: int, device=None) -> Tensor:
    """Every anchor of an ``height`` x ``width`` level: [H * W * 3, 4], (y, x, anchor) order."""
    xs = torch.arange(width, device=device, dtype=torch.float32) * stride
    ys = torch.arange(height, device=device, dtype=torch.float32) * stride
    y, x = torch.meshgrid(ys, xs, indexing="ij")
    shifts = torch.stack([x, y, x, y], dim=-1).reshape(-1, 1, 4)
    return (shifts + base_anchors(stride, device)).reshape(-1, 4)


def apply_deltas(
    boxes: Tensor,
    deltas: Tensor,
    stds: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0),
    max_shape: tuple[int, int] | None = None,
    clamp_below: bool = True,
) -> Tensor:
    """mmdet v1 ``delta2bbox`` (means 0): move ``boxes`` [R, 4] by ``deltas`` [R, 4 * k].

    Args:
        boxes: reference boxes, xyxy inclusive.
        deltas: (dx, dy, dw, dh) per box, possibly k classes side by side.
        stds: the deltas are multiplied by these first.
        max_shape: (height, width); boxes are clipped to ``[0, width - 1] x [0, height - 1]``.
        clamp_below: also clamp dw, dh from below (mmdet); UPSNet's ``MaskROI`` only clamps
            them from above.

    Returns:
        [R, 4 * k] boxes.
    """
    d = deltas.reshape(len(deltas), -1, 4) * deltas.new_tensor(stds)
    low = -MAX_DELTA_RATIO if clamp_below else None
    dw = d[..., 2].clamp(low, MAX_DELTA_RATIO)
    dh = d[..., 3].clamp(low, MAX_DELTA_RATIO)
    px = ((boxes[:, 0] + boxes[:, 2]) * 0.5)[:, None]
    py = ((boxes[:, 1] + boxes[:, 3]) * 0.5)[:, None]
    pw = (boxes[:, 2] - boxes[:, 0] + 1.0)[:, None]
    ph = (boxes[:, 3] - boxes[:, 1] + 1.0)[:, None]
    gw, gh = pw * dw.exp(), ph * dh.exp()
    gx, gy = px + pw * d[..., 0], py + ph * d[..., 1]
    x1, y1 = gx - gw * 0.5 + 0.5, gy - gh * 0.5 + 0.5
    x2, y2 = gx + gw * 0.5 - 0.5, gy + gh * 0.5 - 0.5
    if max_shape is not None:
        height, width = max_shape
        x1, x2 = x1.clamp(0, width - 1), x2.clamp(0, width - 1)
        y1, y2 = y1.clamp(0, height - 1), y2.clamp(0, height - 1)
    return torch.stack([x1, y1, x2, y2], dim=-1).reshape(len(deltas), -1)


def box_deltas(boxes: Tensor, reference: Tensor, stds=(1.0, 1.0, 1.0, 1.0)) -> Tensor:
    """mmdet v1 ``bbox2delta`` (means 0): the deltas [R, 4] taking ``reference`` to ``boxes``,
    the inverse of :func:`apply_deltas`."""
    pw = reference[:, 2] - reference[:, 0] + 1.0
    ph = reference[:, 3] - reference[:, 1] + 1.0
    gw = boxes[:, 2] - boxes[:, 0] + 1.0
    gh = boxes[:, 3] - boxes[:, 1] + 1.0
    dx = ((boxes[:, 0] + boxes[:, 2]) - (reference[:, 0] + reference[:, 2])) * 0.5 / pw
    dy = ((boxes[:, 1] + boxes[:, 3]) - (reference[:, 1] + reference[:, 3])) * 0.5 / ph
    out = torch.stack([dx, dy, (gw / pw).log(), (gh / ph).log()], dim=1)
    return out / out.new_tensor(stds)


def inclusive_to_exclusive(boxes: Tensor) -> Tensor:
    """xyxy inclusive -> xyxy with the far edges one pixel out (torchvision's convention):
    IoU, NMS and RoIAlign of the result equal mmdet v1's on the input."""
    return torch.cat([boxes[:, :2], boxes[:, 2:4] + 1], dim=1)


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU [len(a), len(b)] with ``+1`` areas (mmdet ``bbox_overlaps``)."""
    return exclusive_box_iou(inclusive_to_exclusive(a), inclusive_to_exclusive(b))


def nms_inclusive(boxes: Tensor, scores: Tensor, iou: float) -> Tensor:
    """Indices kept by NMS with ``+1`` areas, best first (mmdet v1 / UPSNet ``nms``)."""
    return nms(inclusive_to_exclusive(boxes), scores, iou)


def roi_levels(boxes: Tensor, levels: int = 4) -> Tensor:
    """Pyramid level (0 = P2) of each RoI [R, 4]: ``floor(log2(sqrt(area) / 56 + 1e-6))``."""
    side = ((boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)).sqrt()
    return torch.floor(torch.log2(side / FINEST_SCALE + 1e-6)).clamp(0, levels - 1).long()


def pool_rois(features: list[Tensor], rois: Tensor, size: int, strides=(4, 8, 16, 32)) -> Tensor:
    """mmdet v1 ``SingleRoIExtractor`` + RoIAlign (sample_num 2, not aligned, far edge + 1).

    Args:
        features: P2..P5, [N, C, H/s, W/s].
        rois: [R, 5] (batch index, x1, y1, x2, y2) inclusive, in input pixels.
        size: output side (7 for boxes, 14 for masks).

    Returns:
        [R, C, size, size].
    """
    out = features[0].new_zeros(len(rois), features[0].shape[1], size, size)
    if not len(rois):
        return out
    levels = roi_levels(rois[:, 1:], len(features))
    boxes = torch.cat([rois[:, :1], inclusive_to_exclusive(rois[:, 1:])], dim=1)
    for level, (feature, stride) in enumerate(zip(features, strides, strict=False)):
        index = torch.nonzero(levels == level).squeeze(1)
        if len(index):
            out[index] = roi_align(
                feature, boxes[index], size, spatial_scale=1.0 / stride, sampling_ratio=2
            )
    return out

"""Training losses of the DensePose R-CNN (people only), as detectron2 computes them.

1. RPN: every anchor of P2..P6 is matched to the ground-truth boxes (IoU >= 0.7 foreground,
   < 0.3 background, in between ignored; each box's best anchors are foreground too, as
   detectron2's ``allow_low_quality_matches``); 256 anchors per image are sampled, at most
   half foreground; binary cross-entropy on the objectness and smooth-L1 on the (1, 1, 1, 1)
   deltas of the foreground anchors, both summed and divided by the number sampled.
2. Box head: the RPN's proposals (detached) plus the ground-truth boxes, matched at IoU >= 0.5;
   ``rois_per_image`` sampled with at most 25 % foreground; cross-entropy over (person,
   background) with background LAST, and smooth-L1 on the (10, 10, 5, 5) deltas of the
   foreground ROIs divided by the number of sampled ROIs.
3. DensePose head, on (up to ``densepose_per_image``) foreground ROIs: the ground truth inside
   each ROI, resampled to 112 x 112 by nearest neighbour (the pixel under each cell centre of
   the aligned ROI grid). Our synthetic ground truth is dense (I, U, V at every person pixel),
   unlike COCO DensePose's ~100 annotated points per person and its coarse masks, so every
   cell is supervised:
   - coarse: cross-entropy person / background at every cell, person = the matched person's
     own pixels (another person inside the ROI is background, as its mask would be in COCO);
   - fine: cross-entropy over the 25 classes at the matched person's cells (labels 1..24;
     the coarse head decides foreground, as in detectron2 where only body points carry parts);
   - U, V: smooth-L1 at the same cells on the channel of the ground-truth part.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import box_iou

from ..sampling import sample_labels
from .config import ANCHOR_SIZES, HEATMAP_SIZE
from .heads import BOX_WEIGHTS
from .net import DensePoseRCNN
from .rpn import STRIDES, grid_anchors

SMOOTH_L1_BETA = 0.1
"""Smooth-L1 transition for box deltas and U / V (detectron2's default 0 is plain L1)."""


@dataclass
class PersonTargets:
    """The ground truth of one image, in the network's input pixels.

    Attributes:
        boxes: float32 [K, 4], xyxy, one per person.
        instances: int64 [H, W], 1 + the index of the person owning each pixel, 0 elsewhere.
        parts: int64 [H, W], body part I in 0..24 (0 off the people).
        uv: float32 [2, H, W], U and V in [0, 1].
    """

    boxes: Tensor
    instances: Tensor
    parts: Tensor
    uv: Tensor


def encode(boxes: Tensor, reference: Tensor, weights: tuple[float, ...]) -> Tensor:
    """detectron2's ``Box2BoxTransform.get_deltas``: the deltas taking ``reference`` [R, 4] to
    ``boxes`` [R, 4] (both xyxy), the inverse of ``rpn.apply_deltas``."""
    pw = reference[:, 2] - reference[:, 0]
    ph = reference[:, 3] - reference[:, 1]
    px = reference[:, 0] + 0.5 * pw
    py = reference[:, 1] + 0.5 * ph
    gw = boxes[:, 2] - boxes[:, 0]
    gh = boxes[:, 3] - boxes[:, 1]
    gx = boxes[:, 0] + 0.5 * gw
    gy = boxes[:, 1] + 0.5 * gh
    wx, wy, ww, wh = weights
    return torch.stack(
        [
            wx * (gx - px) / pw,
            wy * (gy - py) / ph,
            ww * torch.log(gw / pw),
            wh * torch.log(gh / ph),
        ],
        dim=1,
    )


def rpn_loss(
    logits: list[Tensor],
    deltas: list[Tensor],
    targets: list[PersonTargets],
    per_image: int = 256,
) -> dict[str, Tensor]:
    """Objectness BCE and anchor-delta smooth-L1 (see the module docstring).

    Args:
        logits: per level [N, A, H, W] (``DensePoseRCNN.forward``).
        deltas: per level [N, A * 4, H, W].
    """
    anchors = torch.cat(
        [
            grid_anchors(size, stride, x.shape[2], x.shape[3], x.device)
            for size, stride, x in zip(ANCHOR_SIZES, STRIDES, logits, strict=True)
        ]
    )
    n = logits[0].shape[0]
    # The anchors' order: per level, (y, x) row-major with the A ratios innermost.
    flat_logits = torch.cat([x.permute(0, 2, 3, 1).reshape(n, -1) for x in logits], dim=1)
    flat_deltas = torch.cat(
        [
            d.view(n, d.shape[1] // 4, 4, *d.shape[2:]).permute(0, 3, 4, 1, 2).reshape(n, -1, 4)
            for d in deltas
        ],
        dim=1,
    )
    objectness, localisation = [], []
    for image, target in enumerate(targets):
        labels = torch.zeros(len(anchors), dtype=torch.long, device=anchors.device)
        matched = torch.zeros(len(anchors), dtype=torch.long, device=anchors.device)
        if len(target.boxes):
            iou = box_iou(target.boxes, anchors)  # [K, anchors]
            best, matched = iou.max(dim=0)
            labels[(best >= 0.3) & (best < 0.7)] = -1
            labels[best >= 0.7] = 1
            # Each box's best anchors (ties included) are foreground whatever their IoU.
            top = iou.max(dim=1, keepdim=True).values
            labels[torch.nonzero((iou == top) & (top > 0), as_tuple=True)[1]] = 1
        fg, bg = sample_labels(labels, per_image, 0.5)
        chosen = torch.cat([fg, bg])
        truth = torch.cat([torch.ones(len(fg)), torch.zeros(len(bg))]).to(flat_logits)
        objectness.append(
            F.binary_cross_entropy_with_logits(flat_logits[image, chosen], truth, reduction="sum")
        )
        if len(fg):
            wanted = encode(target.boxes[matched[fg]], anchors[fg], (1.0, 1.0, 1.0, 1.0))
            localisation.append(
                F.smooth_l1_loss(
                    flat_deltas[image, fg], wanted, beta=SMOOTH_L1_BETA, reduction="sum"
                )
            )
    count = n * per_image
    return {
        "rpn_cls": torch.stack(objectness).sum() / count,
        "rpn_loc": (sum(localisation) if localisation else flat_deltas.sum() * 0) / count,
    }


def sample_rois(
    proposals: list[Tensor],
    targets: list[PersonTargets],
    per_image: int = 128,
    fg_fraction: float = 0.25,
) -> list[tuple[Tensor, Tensor, Tensor]]:
    """Box-head training ROIs: proposals plus ground-truth boxes, matched at IoU >= 0.5.

    Returns:
        per image ``(rois [R, 4], is_person bool [R], matched person int64 [R])``, the
        foreground first; ``matched`` is meaningful where ``is_person``.
    """
    out = []
    for boxes, target in zip(proposals, targets, strict=True):
        boxes = torch.cat([boxes.detach(), target.boxes])
        labels = torch.zeros(len(boxes), dtype=torch.long, device=boxes.device)
        matched = torch.zeros(len(boxes), dtype=torch.long, device=boxes.device)
        if len(target.boxes):
            best, matched = box_iou(target.boxes, boxes).max(dim=0)
            labels[best >= 0.5] = 1
        fg, bg = sample_labels(labels, per_image, fg_fraction)
        chosen = torch.cat([fg, bg])
        out.append((boxes[chosen], labels[chosen] == 1, matched[chosen]))
    return out


def box_loss(
    logits: Tensor, deltas: Tensor, rois: list[tuple[Tensor, Tensor, Tensor]], targets
) -> dict[str, Tensor]:
    """Cross-entropy (person 0, background 1: background last) and smooth-L1 on the
    (10, 10, 5, 5) deltas of the person ROIs, divided by the number of ROIs."""
    boxes = torch.cat([r for r, _, _ in rois])
    person = torch.cat([p for _, p, _ in rois])
    truth = torch.cat(
        [t.boxes[m] if len(t.boxes) else r for (r, _, m), t in zip(rois, targets, strict=True)]
    )
    classes = (~person).long()  # 0 = person, 1 = background
    cls = F.cross_entropy(logits, classes)
    if person.any():
        wanted = encode(truth[person], boxes[person], BOX_WEIGHTS)
        loc = F.smooth_l1_loss(deltas[person], wanted, beta=SMOOTH_L1_BETA, reduction="sum")
    else:
        loc = deltas.sum() * 0
    return {"box_cls": cls, "box_loc": loc / max(len(boxes), 1)}


def densepose_targets(
    boxes: Tensor, owner: Tensor, target: PersonTargets, side: int = HEATMAP_SIZE
) -> tuple[Tensor, Tensor, Tensor]:
    """The ground truth inside each ROI on a ``side`` x ``side`` grid (nearest neighbour).

    Cell (i, j) of ROI (x0, y0, x1, y1) takes the pixel under its centre
    ``(x0 + (j + 0.5) (x1 - x0) / side, y0 + (i + 0.5) (y1 - y0) / side)``: the cell centres
    of the ROIAlignV2 (aligned) grid the DensePose head pools on. Cells off the image are
    background.

    Args:
        boxes: float32 [R, 4] xyxy ROIs.
        owner: int64 [R], the person each ROI is matched to.

    Returns:
        ``(person bool [R, S, S], parts int64 [R, S, S] (0 off the matched person),
        uv float32 [R, 2, S, S])``.
    """
    height, width = target.parts.shape
    steps = (torch.arange(side, device=boxes.device, dtype=torch.float32) + 0.5) / side
    xs = boxes[:, :1] + steps * (boxes[:, 2:3] - boxes[:, :1])  # [R, S]
    ys = boxes[:, 1:2] + steps * (boxes[:, 3:4] - boxes[:, 1:2])
    inside = ((ys >= 0) & (ys < height))[:, :, None] & ((xs >= 0) & (xs < width))[:, None, :]
    yi = ys.floor().long().clamp(0, height - 1)[:, :, None]
    xi = xs.floor().long().clamp(0, width - 1)[:, None, :]
    person = (target.instances[yi, xi] == (owner + 1)[:, None, None]) & inside
    parts = target.parts[yi, xi] * person
    uv = torch.stack([target.uv[0][yi, xi], target.uv[1][yi, xi]], dim=1)
    return person, parts, uv


def densepose_loss(charts: dict[str, Tensor], person: Tensor, parts: Tensor, uv: Tensor):
    """Coarse CE at every cell, fine CE and U / V smooth-L1 at the person's cells (means)."""
    coarse = F.cross_entropy(charts["coarse_segm"], person.long())
    on = parts > 0
    if not on.any():
        zero = charts["fine_segm"].sum() * 0 + charts["u"].sum() * 0 + charts["v"].sum() * 0
        return {"dp_coarse": coarse, "dp_fine": zero, "dp_uv": zero}
    fine = F.cross_entropy(charts["fine_segm"].permute(0, 2, 3, 1)[on], parts[on])
    index = parts[:, None]
    u = charts["u"].gather(1, index)[:, 0][on]
    v = charts["v"].gather(1, index)[:, 0][on]
    predicted = torch.stack([u, v], dim=1)
    wanted = uv.permute(0, 2, 3, 1)[on]
    regression = F.smooth_l1_loss(predicted, wanted, beta=SMOOTH_L1_BETA)
    return {"dp_coarse": coarse, "dp_fine": fine, "dp_uv": regression}


def densepose_rcnn_losses(
    model: DensePoseRCNN,
    images: Tensor,
    targets: list[PersonTargets],
    rois_per_image: int = 128,
    densepose_per_image: int = 8,
    weights: dict[str, float] | None = None,
) -> dict[str, Tensor]:
    """Every loss of one batch (see the module docstring), each already weighted.

    Args:
        images: float32 [N, 3, H, W] from ``preprocess.to_input``; the targets are in its
            pixels and the images fill it (no padding).
        rois_per_image: box-head ROIs sampled per image (25 % foreground at most).
        densepose_per_image: foreground ROIs per image the DensePose head trains on.
        weights: multipliers by loss name (default 1; "dp_uv" defaults to 5).

    Returns:
        ``rpn_cls``, ``rpn_loc``, ``box_cls``, ``box_loc``, ``dp_coarse``, ``dp_fine``, ``dp_uv``.
    """
    weights = {"dp_uv": 5.0} | (weights or {})
    raw = model(images)
    losses = rpn_loss(raw["objectness_logits"], raw["anchor_deltas"], targets)
    size = tuple(images.shape[2:])
    with torch.no_grad():
        proposals = model.proposal_generator.proposals(
            raw["objectness_logits"], raw["anchor_deltas"], [size] * len(images), 1000, 500, 0.7
        )
    rois = sample_rois(proposals, targets, rois_per_image)
    logits, deltas = model.roi_heads.box_outputs(raw["features"], [r for r, _, _ in rois])
    losses |= box_loss(logits, deltas, rois, targets)

    boxes, truth = [], []
    for roi, person, owner in rois:
        count = min(int(person.sum()), densepose_per_image)  # foreground comes first, shuffled
        boxes.append(roi[:count])
        truth.append(owner[:count])
    if sum(len(b) for b in boxes):
        charts = model.roi_heads.densepose_outputs(raw["decoded"], boxes)
        person, parts, uv = (
            torch.cat(t)
            for t in zip(
                *(
                    densepose_targets(b, o, t)
                    for b, o, t in zip(boxes, truth, targets, strict=True)
                    if len(b)
                ),
                strict=True,
            )
        )
        losses |= densepose_loss(charts, person, parts, uv)
    else:
        zero = raw["decoded"].sum() * 0
        losses |= {"dp_coarse": zero, "dp_fine": zero, "dp_uv": zero}
    return {k: v * weights.get(k, 1.0) for k, v in losses.items()}

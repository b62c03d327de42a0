"""YOLACT's training loss, for training YolactEdge on our own data.

Per image: priors are matched to ground-truth boxes by IoU (>= 0.5 positive, < 0.4 negative,
in between ignored; every object also claims its best prior), then

- box loss: smooth L1 on the centre-size offsets (variances 0.1, 0.2) of positives, weight 1.5;
- class loss: cross-entropy over positives and the hardest negatives (3 per positive, online
  hard example mining), weight 1;
- mask loss: binary cross-entropy of sigmoid(proto x coefficients) against the object's mask at
  prototype resolution, both cropped to the ground-truth box, normalised by the box area,
  weight 6.125;

each divided by the number of positives, as in YOLACT (Bolya et al., 2019). The semantic
segmentation auxiliary loss is left out.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import box_iou

from .postprocess import VARIANCES

POSITIVE_IOU, NEGATIVE_IOU = 0.5, 0.4
NEGATIVES_PER_POSITIVE = 3
WEIGHTS = {"box": 1.5, "class": 1.0, "mask": 6.125}
MAX_MASKS = 100


@dataclass
class Target:
    """Ground truth of one image.

    Attributes:
        boxes: float [G, 4] xyxy relative to the image (0..1).
        classes: int64 [G] foreground class index (0 = the first non-background class).
        masks: bool or float [G, H, W] at any resolution.
    """

    boxes: Tensor
    classes: Tensor
    masks: Tensor


def encode(boxes: Tensor, priors: Tensor) -> Tensor:
    """Relative xyxy [P, 4] -> offsets [P, 4] w.r.t. priors (cx, cy, w, h); inverse of decode."""
    centre = ((boxes[:, :2] + boxes[:, 2:]) / 2 - priors[:, :2]) / (VARIANCES[0] * priors[:, 2:])
    size = torch.log((boxes[:, 2:] - boxes[:, :2]).clamp(min=1e-6) / priors[:, 2:]) / VARIANCES[1]
    return torch.cat([centre, size], dim=1)


def match(priors: Tensor, target: Target) -> tuple[Tensor, Tensor]:
    """Per prior: class label (0 background, -1 ignored, else class + 1) and its object index."""
    corners = torch.cat([priors[:, :2] - priors[:, 2:] / 2, priors[:, :2] + priors[:, 2:] / 2], 1)
    iou = box_iou(target.boxes, corners)  # [G, P]
    best_iou, best_object = iou.max(dim=0)
    claimed = iou.argmax(dim=1)  # each object's best prior is positive whatever its IoU
    best_iou[claimed] = 2.0
    best_object[claimed] = torch.arange(len(claimed), device=priors.device)
    labels = target.classes[best_object] + 1
    labels[best_iou < POSITIVE_IOU] = -1
    labels[best_iou < NEGATIVE_IOU] = 0
    return labels, best_object


def crop_mask(masks: Tensor, boxes: Tensor) -> Tensor:
    """Zeroes [h, w, K] outside each relative box [K, 4] (on the same grid, no padding)."""
    h, w, _ = masks.shape
    cols = torch.arange(w, device=masks.device, dtype=masks.dtype).view(1, -1, 1)
    rows = torch.arange(h, device=masks.device, dtype=masks.dtype).view(-1, 1, 1)
    inside = (
        (cols >= boxes[:, 0] * w) & (cols < boxes[:, 2] * w)
        & (rows >= boxes[:, 1] * h) & (rows < boxes[:, 3] * h)
    )  # fmt: skip
    return masks * inside


def yolact_loss(
    loc: Tensor,
    conf_logits: Tensor,
    coeffs: Tensor,
    proto: Tensor,
    priors: Tensor,
    targets: list[Target],
) -> dict[str, Tensor]:
    """The weighted losses of a batch.

    Args:
        loc: float [N, P, 4] box offsets.
        conf_logits: float [N, P, C] class logits (before softmax).
        coeffs: float [N, P, 32] mask coefficients (after tanh).
        proto: float [N, h, w, 32] prototypes (after ReLU).
        priors: float [P, 4].
        targets: one per image (an image without objects contributes negatives only).

    Returns:
        ``{"box", "class", "mask"}`` scalar tensors, weighted; their sum is the loss.
    """
    totals = {name: loc.new_zeros(()) for name in WEIGHTS}
    positives = 0
    for i, target in enumerate(targets):
        if len(target.boxes) == 0:
            labels = torch.zeros(len(priors), dtype=torch.long, device=loc.device)
            objects = labels
        else:
            labels, objects = match(priors, target)
        positive = labels > 0
        n_pos = int(positive.sum())
        positives += n_pos
        ce = F.cross_entropy(conf_logits[i], labels.clamp(min=0), reduction="none")
        hardness = ce.detach().clone()
        hardness[labels != 0] = -1.0  # only true negatives compete
        n_neg = min(
            max(NEGATIVES_PER_POSITIVE * n_pos, 1 if n_pos == 0 else 0), int((labels == 0).sum())
        )
        hard = hardness.topk(n_neg).indices if n_neg else hardness.new_zeros(0, dtype=torch.long)
        totals["class"] = totals["class"] + ce[positive].sum() + ce[hard].sum()
        if n_pos == 0:
            continue
        boxes = target.boxes[objects[positive]]
        totals["box"] = totals["box"] + F.smooth_l1_loss(
            loc[i][positive], encode(boxes, priors[positive]), reduction="sum"
        )
        index = torch.nonzero(positive).flatten()
        if len(index) > MAX_MASKS:
            index = index[torch.randperm(len(index), device=index.device)[:MAX_MASKS]]
        h, w, _ = proto[i].shape
        gt = F.interpolate(
            target.masks[None].float(), (h, w), mode="bilinear", align_corners=False
        )[0]
        gt = (gt > 0.5).float()[objects[index]].permute(1, 2, 0)  # [h, w, K]
        mask_boxes = target.boxes[objects[index]]
        predicted = torch.sigmoid(proto[i] @ coeffs[i][index].t())  # [h, w, K]
        bce = F.binary_cross_entropy(crop_mask(predicted, mask_boxes).clamp(1e-6, 1 - 1e-6),
                                     crop_mask(gt, mask_boxes), reduction="none")  # fmt: skip
        area = (mask_boxes[:, 2] - mask_boxes[:, 0]) * w * (mask_boxes[:, 3] - mask_boxes[:, 1]) * h
        totals["mask"] = (
            totals["mask"] + (crop_mask(bce, mask_boxes).sum((0, 1)) / area.clamp(min=1)).sum()
        )
    scale = 1.0 / max(positives, 1)
    return {name: WEIGHTS[name] * value * scale for name, value in totals.items()}

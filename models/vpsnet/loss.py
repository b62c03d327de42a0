"""Training losses of VPSNet, as mmdetection v1 + UPSNet + MaskTrack R-CNN compute them.

A training sample is a frame with its reference (the previous frame), the flow between them
and both frames' ground truth:

1. RPN: anchors fully inside the image matched to the boxes (IoU >= 0.7 positive, < 0.3
   negative, each box's best anchors positive when their IoU >= 0.3); ``rpn_samples`` per
   image, half positive at most; sigmoid cross-entropy and smooth-L1 (beta 1/9) on the
   deltas, both averaged over the samples.
2. Box head: proposals (detached) plus the ground-truth boxes, IoU >= 0.5 positive;
   ``roi_samples`` with at most 25 % positive; cross-entropy over background + classes and
   smooth-L1 (beta 1) on the positive RoIs' class deltas, averaged over the samples.
3. Mask head: binary cross-entropy of the ground-truth class's 28 x 28 logits against the
   matched mask cropped to the RoI (bilinear, thresholded at 0.5).
4. Semantic head: cross-entropy of the full-resolution logits, void (255) ignored.
5. Track head (weight 0.5): each positive RoI's embedding against the reference frame's
   ground-truth boxes' (pooled from the reference's un-fused pyramid) with a "new object"
   column: the target is the same track in the reference, or "new" when it is absent.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import roi_align

from ..sampling import sample_labels
from .boxes import box_deltas, box_iou, grid_anchors, pool_rois
from .config import BOX_STDS, STRIDES
from .net import VPSNet


@dataclass
class PanopticTargets:
    """The ground truth of one image, in the network's input pixels.

    Attributes:
        boxes: float32 [K, 4] xyxy inclusive (x2 = x + w - 1).
        classes: int64 [K] detector classes 1..T.
        track_ids: int64 [K] persistent ids (to match the reference frame's).
        masks: bool [K, H, W].
        semantic: int64 [H, W] semantic class (stuff first, then things), 255 void.
    """

    boxes: Tensor
    classes: Tensor
    track_ids: Tensor
    masks: Tensor
    semantic: Tensor


def rpn_loss(
    logits: list[Tensor],
    deltas: list[Tensor],
    targets: list[PanopticTargets],
    image_size: tuple[int, int],
    samples: int = 256,
) -> dict[str, Tensor]:
    """Objectness and anchor-delta losses (see the module docstring)."""
    n = logits[0].shape[0]
    anchors = torch.cat([
        grid_anchors(stride, *x.shape[2:], device=x.device)
        for stride, x in zip(STRIDES, logits, strict=True)
    ])  # fmt: skip
    flat_logits = torch.cat([x.permute(0, 2, 3, 1).reshape(n, -1) for x in logits], dim=1)
    flat_deltas = torch.cat([d.permute(0, 2, 3, 1).reshape(n, -1, 4) for d in deltas], dim=1)
    height, width = image_size
    inside = (anchors[:, 0] >= 0) & (anchors[:, 1] >= 0)
    inside &= (anchors[:, 2] < width) & (anchors[:, 3] < height)
    cls_terms, loc_terms = [], []
    for image, target in enumerate(targets):
        labels = torch.full((len(anchors),), -1, dtype=torch.long)
        matched = torch.zeros(len(anchors), dtype=torch.long)
        if len(target.boxes):
            iou = box_iou(target.boxes, anchors)
            best, matched = iou.max(dim=0)
            labels[best < 0.3] = 0
            labels[best >= 0.7] = 1
            top = iou.max(dim=1, keepdim=True).values
            low_quality = (iou == top) & (top >= 0.3)
            labels[torch.nonzero(low_quality, as_tuple=True)[1]] = 1
            matched[torch.nonzero(low_quality, as_tuple=True)[1]] = torch.nonzero(
                low_quality, as_tuple=True
            )[0]
        else:
            labels[:] = 0
        labels[~inside] = -1
        fg, bg = sample_labels(labels, samples, 0.5)
        chosen = torch.cat([fg, bg])
        truth = torch.cat([torch.ones(len(fg)), torch.zeros(len(bg))])
        cls_terms.append(F.binary_cross_entropy_with_logits(
            flat_logits[image, chosen], truth, reduction="sum"
        ) / max(len(chosen), 1))  # fmt: skip
        if len(fg):
            wanted = box_deltas(target.boxes[matched[fg]], anchors[fg])
            loc = F.smooth_l1_loss(flat_deltas[image, fg], wanted, beta=1 / 9, reduction="sum")
            loc_terms.append(loc / max(len(chosen), 1))
        else:
            loc_terms.append(flat_deltas[image].sum() * 0)
    return {"rpn_cls": torch.stack(cls_terms).mean(), "rpn_loc": torch.stack(loc_terms).mean()}


def sample_rois(
    proposals: list[Tensor], targets: list[PanopticTargets], samples: int = 128
) -> list[tuple[Tensor, Tensor, Tensor]]:
    """Per image ``(rois [R, 4], class int64 [R] (0 background), matched box index [R])``,
    positives first: proposals plus the ground-truth boxes, IoU >= 0.5 positive."""
    out = []
    for boxes, target in zip(proposals, targets, strict=True):
        boxes = torch.cat([boxes.detach(), target.boxes])
        labels = torch.zeros(len(boxes), dtype=torch.long)
        matched = torch.zeros(len(boxes), dtype=torch.long)
        if len(target.boxes):
            best, matched = box_iou(target.boxes, boxes).max(dim=0)
            labels[best >= 0.5] = 1
        fg, bg = sample_labels(labels, samples, 0.25)
        chosen = torch.cat([fg, bg])
        classes = torch.zeros(len(chosen), dtype=torch.long)
        if len(fg):
            classes[: len(fg)] = target.classes[matched[fg]]
        out.append((boxes[chosen], classes, matched[chosen]))
    return out


def _rois(boxes: list[Tensor]) -> Tensor:
    return torch.cat([
        torch.cat([torch.full((len(b), 1), float(i)), b], dim=1) for i, b in enumerate(boxes)
    ])  # fmt: skip


def vpsnet_losses(
    model: VPSNet,
    images: Tensor,
    targets: list[PanopticTargets],
    references: Tensor | None = None,
    reference_targets: list[PanopticTargets] | None = None,
    flows: Tensor | None = None,
    rpn_samples: int = 256,
    roi_samples: int = 128,
    train_proposals: int = 500,
) -> dict[str, Tensor]:
    """Every loss of one batch (see the module docstring).

    Args:
        images: [N, 3, H, W] normalised (no padding: H, W multiples of 32).
        targets: per image.
        references: the previous frames, [N, 3, H, W] (None: each image is its own).
        reference_targets: their ground truth (for the track head).
        flows: [N, 2, H, W] from each image to its reference (None: zero).
        train_proposals: RPN proposals per image fed to the box head.

    Returns:
        ``rpn_cls``, ``rpn_loc``, ``box_cls``, ``box_loc``, ``mask``, ``semantic`` and, with
        a track head and references, ``track``.
    """
    size = tuple(images.shape[2:])
    with torch.no_grad():  # the reference's pyramid is a cache at test time too
        reference = model.pyramid(references) if references is not None else None
    raw = model(images, reference, flows)
    losses = rpn_loss(raw["rpn_logits"], raw["rpn_deltas"], targets, size, rpn_samples)
    with torch.no_grad():
        config = model.config
        model.config = replace(config, rpn_max=train_proposals, rpn_post_nms=train_proposals)
        proposals = [
            model.proposals(
                [x[i : i + 1] for x in raw["rpn_logits"]],
                [x[i : i + 1] for x in raw["rpn_deltas"]],
                size,
            )
            for i in range(len(images))
        ]
        model.config = config
    sampled = sample_rois(proposals, targets, roi_samples)
    features = raw["features"][:4]
    rois = _rois([r for r, _, _ in sampled])
    pooled = pool_rois(features, rois, 7)
    logits, deltas = model.bbox_head(pooled)
    classes = torch.cat([c for _, c, _ in sampled])
    losses["box_cls"] = F.cross_entropy(logits, classes)
    positive = torch.nonzero(classes > 0).squeeze(1)
    if len(positive):
        truth = torch.cat([t.boxes[m] for (_, _, m), t in zip(sampled, targets, strict=True)])
        wanted = box_deltas(truth[positive], rois[positive, 1:], BOX_STDS)
        chosen = deltas.view(len(deltas), -1, 4)[positive, classes[positive]]
        loc = F.smooth_l1_loss(chosen, wanted, beta=1.0, reduction="sum")
        losses["box_loc"] = loc / len(classes)
        losses["mask"] = _mask_loss(model, features, rois, classes, sampled, targets, positive)
    else:
        losses["box_loc"] = losses["mask"] = deltas.sum() * 0
    semantic = torch.stack([t.semantic for t in targets])
    losses["semantic"] = F.cross_entropy(raw["fcn_output"], semantic, ignore_index=255)
    if config.track and reference is not None and reference_targets is not None:
        losses["track"] = 0.5 * _track_loss(
            model, pooled, sampled, targets, reference, reference_targets
        )
    return losses


def _mask_loss(model, features, rois, classes, sampled, targets, positive) -> Tensor:
    """BCE of the positive RoIs' class masks against the matched masks cropped to them."""
    logits = model.mask_head(pool_rois(features, rois[positive], 14))
    logits = logits[torch.arange(len(positive)), classes[positive]]
    masks, offset = [], 0
    for (_, c, m), target in zip(sampled, targets, strict=True):
        count = int((c > 0).sum())
        if count:
            boxes = rois[offset : offset + count, 1:]
            crop = torch.cat([torch.zeros(count, 1), boxes[:, :2], boxes[:, 2:] + 1], dim=1)
            gt = target.masks[m[:count]].float()[:, None]
            index = torch.arange(count, dtype=torch.float32)[:, None]
            crop[:, :1] = index
            masks.append(roi_align(gt, crop, 28, aligned=True, sampling_ratio=2)[:, 0] >= 0.5)
        offset += len(c)
    return F.binary_cross_entropy_with_logits(logits, torch.cat(masks).float())


def _track_loss(model, pooled, sampled, targets, reference, reference_targets) -> Tensor:
    """Cross-entropy of each positive RoI over [new object, the reference's objects]."""
    terms, offset = [], 0
    for image, ((_, c, m), target, ref_target) in enumerate(
        zip(sampled, targets, reference_targets, strict=True)
    ):
        count = int((c > 0).sum())
        rows = slice(offset, offset + count)
        offset += len(c)
        if not count or not len(ref_target.boxes):
            continue
        ref_rois = torch.cat([torch.full((len(ref_target.boxes), 1), float(image)),
                              ref_target.boxes], dim=1)  # fmt: skip
        ref_pooled = pool_rois([x[:4] for x in reference[:4]], ref_rois, 7)
        current = model.track_head(pooled[rows])
        memory = model.track_head(ref_pooled)
        logits = model.track_head.match_logits(current, memory)
        ids = target.track_ids[m[:count]]
        same = ids[:, None] == ref_target.track_ids[None]
        wanted = torch.where(same.any(dim=1), same.float().argmax(dim=1) + 1, 0)
        terms.append(F.cross_entropy(logits, wanted))
    if not terms:
        return pooled.sum() * 0
    return torch.stack(terms).mean()

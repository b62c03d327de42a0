"""Anchors, box-delta decoding and the region proposal network (``proposal_generator``)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import batched_nms

from .config import ANCHOR_RATIOS, ANCHOR_SIZES, SCALE_CLAMP

STRIDES = (4, 8, 16, 32, 64)
"""Strides of P2..P6."""


def cell_anchors(size: float, ratios: tuple[float, ...] = ANCHOR_RATIOS) -> Tensor:
    """detectron2's base anchors of one level, centred on 0 and NOT rounded (torchvision
    rounds them, which moves boxes by sub-pixels).

    For each ratio r = h / w: ``w = sqrt(size**2 / r)``, ``h = r * w``.

    Returns:
        float32 [len(ratios), 4], xyxy.
    """
    rows = []
    for ratio in ratios:
        w = math.sqrt(size * size / ratio)
        h = ratio * w
        rows.append([-w / 2, -h / 2, w / 2, h / 2])
    return torch.tensor(rows, dtype=torch.float32)


def grid_anchors(
    size: float, stride: int, height: int, width: int, device: torch.device | str = "cpu"
) -> Tensor:
    """All anchors of one level: cell anchors shifted to ``(x * stride, y * stride)`` (offset 0).

    Returns:
        float32 [height * width * A, 4], xyxy in input pixels; row-major over (y, x), the
        A ratios innermost: the order of the flattened RPN outputs.
    """
    ys = torch.arange(height, dtype=torch.float32, device=device) * stride
    xs = torch.arange(width, dtype=torch.float32, device=device) * stride
    shift_y, shift_x = torch.meshgrid(ys, xs, indexing="ij")
    shifts = torch.stack([shift_x, shift_y, shift_x, shift_y], dim=-1).reshape(-1, 1, 4)
    return (shifts + cell_anchors(size).to(device).view(1, -1, 4)).reshape(-1, 4)


def apply_deltas(
    deltas: Tensor, boxes: Tensor, weights: tuple[float, float, float, float]
) -> Tensor:
    """detectron2's ``Box2BoxTransform.apply_deltas`` for one box per row.

    Args:
        deltas: [R, 4] (dx, dy, dw, dh), scaled by ``weights``.
        boxes: [R, 4] xyxy reference boxes (anchors or proposals).
        weights: (wx, wy, ww, wh): (1, 1, 1, 1) for the RPN, (10, 10, 5, 5) for the box head.

    Returns:
        float32 [R, 4] xyxy. dw, dh are clamped at log(1000 / 16) so exp never overflows.
    """
    deltas = deltas.float()
    boxes = boxes.to(deltas.dtype)
    widths = boxes[:, 2] - boxes[:, 0]
    heights = boxes[:, 3] - boxes[:, 1]
    ctr_x = boxes[:, 0] + 0.5 * widths
    ctr_y = boxes[:, 1] + 0.5 * heights
    wx, wy, ww, wh = weights
    dx, dy = deltas[:, 0] / wx, deltas[:, 1] / wy
    dw = (deltas[:, 2] / ww).clamp(max=SCALE_CLAMP)
    dh = (deltas[:, 3] / wh).clamp(max=SCALE_CLAMP)
    x = dx * widths + ctr_x
    y = dy * heights + ctr_y
    w = torch.exp(dw) * widths
    h = torch.exp(dh) * heights
    return torch.stack([x - 0.5 * w, y - 0.5 * h, x + 0.5 * w, y + 0.5 * h], dim=1)


def clip_boxes(boxes: Tensor, height: int, width: int) -> Tensor:
    """Clamps xyxy boxes [R, 4] to [0, width] x [0, height]."""
    x = boxes[:, 0::2].clamp(0, width)
    y = boxes[:, 1::2].clamp(0, height)
    return torch.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], dim=1)


class StandardRPNHead(nn.Module):
    """Shared 3x3 conv + ReLU, then per anchor one objectness logit and four deltas.

    Args:
        channels: FPN width.
        num_anchors: anchors per position (3 ratios).
    """

    def __init__(self, channels: int = 256, num_anchors: int = len(ANCHOR_RATIOS)) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.objectness_logits = nn.Conv2d(channels, num_anchors, 1)
        self.anchor_deltas = nn.Conv2d(channels, num_anchors * 4, 1)
        for layer in (self.conv, self.objectness_logits, self.anchor_deltas):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)

    def forward(self, features: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """P2..P6 -> per level objectness [N, A, H, W] and deltas [N, A * 4, H, W]."""
        logits, deltas = [], []
        for x in features:
            x = F.relu(self.conv(x))
            logits.append(self.objectness_logits(x))
            deltas.append(self.anchor_deltas(x))
        return logits, deltas


class RPN(nn.Module):
    """``proposal_generator``: the head plus test-time proposal selection."""

    def __init__(self, channels: int = 256) -> None:
        super().__init__()
        self.rpn_head = StandardRPNHead(channels)

    def forward(self, features: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        return self.rpn_head(features)

    @staticmethod
    def proposals(
        logits: list[Tensor],
        deltas: list[Tensor],
        image_sizes: list[tuple[int, int]],
        pre_nms_topk: int = 1000,
        post_nms_topk: int = 1000,
        nms_thresh: float = 0.7,
    ) -> list[Tensor]:
        """detectron2's ``find_top_rpn_proposals`` at test time.

        Per image: the ``pre_nms_topk`` best anchors of each level, decoded with weights
        (1, 1, 1, 1), clipped to the image, empty and non-finite boxes dropped, NMS per level
        at ``nms_thresh``, the ``post_nms_topk`` best kept overall.

        Args:
            logits: per level [N, A, H, W] (what ``forward`` returns).
            deltas: per level [N, A * 4, H, W].
            image_sizes: (height, width) of each image before padding, in input pixels.

        Returns:
            per image float32 [R, 4] xyxy proposals, best objectness first.
        """
        anchors = [
            grid_anchors(size, stride, x.shape[2], x.shape[3], x.device)
            for size, stride, x in zip(ANCHOR_SIZES, STRIDES, logits, strict=True)
        ]
        out = []
        for image, (height, width) in enumerate(image_sizes):
            boxes, scores, levels = [], [], []
            for level, (logit, delta, anchor) in enumerate(
                zip(logits, deltas, anchors, strict=True)
            ):
                # [A, H, W] -> [H * W * A]: the anchors' order.
                score = logit[image].permute(1, 2, 0).reshape(-1)
                a = logit.shape[1]
                delta = delta[image].view(a, 4, *delta.shape[2:]).permute(2, 3, 0, 1)
                k = min(pre_nms_topk, score.numel())
                score, index = score.sort(descending=True)
                score, index = score[:k], index[:k]
                boxes.append(apply_deltas(delta.reshape(-1, 4)[index], anchor[index], (1, 1, 1, 1)))
                scores.append(score)
                levels.append(torch.full((k,), level, dtype=torch.long, device=score.device))
            box, score, level = torch.cat(boxes), torch.cat(scores), torch.cat(levels)
            valid = torch.isfinite(box).all(dim=1) & torch.isfinite(score)
            box, score, level = box[valid], score[valid], level[valid]
            box = clip_boxes(box, height, width)
            keep = (box[:, 2] > box[:, 0]) & (box[:, 3] > box[:, 1])
            box, score, level = box[keep], score[keep], level[keep]
            keep = batched_nms(box, score, level, nms_thresh)[:post_nms_topk]
            out.append(box[keep])
        return out

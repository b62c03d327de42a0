"""Decoding, Fast NMS and masks: the official detection path, vectorised on the model's device.

Official behaviour kept (../shared/reference/models-video.md A3): boxes are centre-size decoded
with variances (0.1, 0.2); priors whose best foreground score is <= 0.05 are dropped; Fast NMS
per class takes the top 200 per class, keeps a box when its IoU with every higher-scored box of
its class is <= 0.5, then the global top 100; masks are sigmoid(proto @ coeffs), cropped to the
box on the prototype grid (1 px padding), upsampled bilinearly to the image and thresholded at
0.5.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import torch
from torch import Tensor

VARIANCES = (0.1, 0.2)


@dataclass
class Instances:
    """Detections of one image.

    Attributes:
        boxes: float32 [K, 4] xyxy, relative to the image (0..1).
        scores: float32 [K], sorted high to low.
        classes: int64 [K], foreground class index (0 = the first non-background class).
        coeffs: float32 [K, 32] mask coefficients.
    """

    boxes: Tensor
    scores: Tensor
    classes: Tensor
    coeffs: Tensor

    def __len__(self) -> int:
        return len(self.scores)

    def select(self, keep: Tensor) -> Instances:
        """The detections where ``keep`` (bool [K] or indices) says so."""
        return Instances(self.boxes[keep], self.scores[keep], self.classes[keep], self.coeffs[keep])


def decode(loc: Tensor, priors: Tensor) -> Tensor:
    """Box offsets float [P, 4] + priors [P, 4] (cx, cy, w, h) -> relative xyxy [P, 4]."""
    centre = priors[:, :2] + loc[:, :2] * VARIANCES[0] * priors[:, 2:]
    size = priors[:, 2:] * torch.exp(loc[:, 2:] * VARIANCES[1])
    return torch.cat([centre - size / 2, centre + size / 2], dim=1)


def batched_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of every pair within each batch: [B, N, 4] x [B, M, 4] -> [B, N, M]."""
    low = torch.maximum(a[:, :, None, :2], b[:, None, :, :2])
    high = torch.minimum(a[:, :, None, 2:], b[:, None, :, 2:])
    inter = (high - low).clamp(min=0).prod(-1)
    area_a = (a[:, :, 2:] - a[:, :, :2]).prod(-1)
    area_b = (b[:, :, 2:] - b[:, :, :2]).prod(-1)
    return inter / (area_a[:, :, None] + area_b[:, None, :] - inter)


def fast_nms(
    boxes: Tensor,
    coeffs: Tensor,
    scores: Tensor,
    iou_threshold: float = 0.5,
    top_k: int = 200,
    max_detections: int = 100,
) -> Instances:
    """Fast NMS per class (YOLACT): one IoU matrix per class instead of a sequential loop.

    Args:
        boxes: float [P, 4] candidates (relative xyxy).
        coeffs: float [P, 32] their mask coefficients.
        scores: float [C, P] foreground class scores.
        iou_threshold: suppress a box whose IoU with a higher-scored box of its class exceeds it.
        top_k: candidates per class considered.
        max_detections: kept overall, by score.
    """
    # The official sorts every candidate and keeps the first top_k; topk gives the same
    # top_k, sorted, without sorting the rest.
    scores, order = scores.topk(min(top_k, scores.shape[1]), dim=1, sorted=True)
    num_classes, k = order.shape
    class_boxes = boxes[order.reshape(-1)].view(num_classes, k, 4)
    class_coeffs = coeffs[order.reshape(-1)].view(num_classes, k, -1)
    iou = batched_iou(class_boxes, class_boxes).triu_(diagonal=1)
    keep = iou.max(dim=1).values <= iou_threshold
    classes = torch.arange(num_classes, device=boxes.device)[:, None].expand_as(keep)
    kept_scores, best = scores[keep].sort(descending=True)
    best = best[:max_detections]
    return Instances(
        boxes=class_boxes[keep][best],
        scores=kept_scores[:max_detections],
        classes=classes[keep][best],
        coeffs=class_coeffs[keep][best],
    )


def detect(
    loc: Tensor,
    conf: Tensor,
    coeffs: Tensor,
    priors: Tensor,
    conf_threshold: float = 0.05,
    nms_threshold: float = 0.5,
    top_k: int = 200,
    max_detections: int = 100,
) -> list[Instances]:
    """Raw head outputs of a batch -> detections per image.

    Args:
        loc: float [N, P, 4]; conf: float [N, P, C] softmax; coeffs: float [N, P, 32];
        priors: float [P, 4] (see ``priors.priors``).
        conf_threshold: candidates need a best foreground score above this.
        nms_threshold: Fast NMS IoU threshold.
        top_k: candidates per class into Fast NMS.
        max_detections: detections per image.
    """
    boxes = torch.stack([decode(loc[i], priors) for i in range(len(loc))])
    out = []
    for i in range(len(loc)):
        fg = conf[i, :, 1:].t()  # [C-1, P]
        keep = fg.max(dim=0).values > conf_threshold
        if not keep.any():
            empty = loc.new_zeros((0, 4))
            out.append(
                Instances(
                    empty,
                    loc.new_zeros(0),
                    torch.zeros(0, dtype=torch.long, device=loc.device),
                    coeffs.new_zeros((0, coeffs.shape[-1])),
                )
            )
            continue
        out.append(
            fast_nms(
                boxes[i][keep], coeffs[i][keep], fg[:, keep], nms_threshold, top_k, max_detections
            )
        )
    return out


def _sanitize(low: Tensor, high: Tensor, size: int, padding: int = 0) -> tuple[Tensor, Tensor]:
    low, high = low * size, high * size
    x1, x2 = torch.minimum(low, high), torch.maximum(low, high)
    return (x1 - padding).clamp(min=0), (x2 + padding).clamp(max=size)


@cache
def _bilinear_taps(src: int, dst: int) -> tuple[Tensor, Tensor, Tensor]:
    """For each output index of a ``src`` -> ``dst`` bilinear resize (align_corners=False, as
    ``F.interpolate``): the two source indices and the weight of the second."""
    position = ((torch.arange(dst, dtype=torch.float64) + 0.5) * (src / dst) - 0.5).clamp(min=0)
    low = position.floor().long().clamp(max=src - 1)
    high = (low + 1).clamp(max=src - 1)
    return low, high, (position - low).float()


def masks(
    proto: Tensor, instances: Instances, height: int, width: int, crop: bool = True
) -> Tensor:
    """Instance masks at image size.

    Same result as the official path (sigmoid of proto x coefficients, cropped to the box on
    the prototype grid with 1 px padding, bilinear resize of the whole map to the image,
    threshold 0.5), but each mask is resized only over the output pixels that can be non-zero:
    those whose bilinear taps touch its crop. Resizing 100 full maps to 640x480 is what makes
    the official post-processing cost more than the network (yolact_edge #56).

    Args:
        proto: float [h, w, 32] prototypes of the image.
        instances: its detections.
        height: image height in pixels.
        width: image width in pixels.
        crop: zero each mask outside its box (on the prototype grid, 1 px padding).

    Returns:
        bool [K, height, width].
    """
    out = torch.zeros((len(instances), height, width), dtype=torch.bool, device=proto.device)
    if len(instances) == 0:
        return out
    h, w, _ = proto.shape
    soft = torch.sigmoid(proto @ instances.coeffs.t()).permute(2, 0, 1)  # [K, h, w]
    if crop:
        x1, x2 = _sanitize(instances.boxes[:, 0], instances.boxes[:, 2], w, padding=1)
        y1, y2 = _sanitize(instances.boxes[:, 1], instances.boxes[:, 3], h, padding=1)
    else:
        x1 = y1 = torch.zeros(len(instances), device=proto.device)
        x2, y2 = torch.full_like(x1, w), torch.full_like(x1, h)
    # Proto cells kept by the crop: integer c with low <= c < high.
    rows = torch.stack([y1.ceil(), y2.ceil()], 1).long().clamp(0, h).tolist()
    cols = torch.stack([x1.ceil(), x2.ceil()], 1).long().clamp(0, w).tolist()
    ry0, ry1, wy = (t.to(proto.device) for t in _bilinear_taps(h, height))
    rx0, rx1, wx = (t.to(proto.device) for t in _bilinear_taps(w, width))
    for k, ((r_lo, r_hi), (c_lo, c_hi)) in enumerate(zip(rows, cols, strict=True)):
        if r_hi <= r_lo or c_hi <= c_lo:
            continue
        # Output rows / columns with a tap inside the kept cells (taps are monotone).
        ys = torch.nonzero((ry1 >= r_lo) & (ry0 < r_hi)).flatten()
        xs = torch.nonzero((rx1 >= c_lo) & (rx0 < c_hi)).flatten()
        if len(ys) == 0 or len(xs) == 0:
            continue
        cell = torch.zeros((h, w), dtype=soft.dtype, device=proto.device)
        cell[r_lo:r_hi, c_lo:c_hi] = soft[k, r_lo:r_hi, c_lo:c_hi]
        top = torch.lerp(cell[ry0[ys]][:, rx0[xs]], cell[ry0[ys]][:, rx1[xs]], wx[xs])
        bottom = torch.lerp(cell[ry1[ys]][:, rx0[xs]], cell[ry1[ys]][:, rx1[xs]], wx[xs])
        value = torch.lerp(top, bottom, wy[ys, None])
        out[k, ys[0] : ys[-1] + 1, xs[0] : xs[-1] + 1] = value > 0.5
    return out


def boxes_in_pixels(boxes: Tensor, height: int, width: int) -> Tensor:
    """Relative xyxy [K, 4] -> pixel xyxy [K, 4], ordered and clipped to the image."""
    x1, x2 = _sanitize(boxes[:, 0], boxes[:, 2], width)
    y1, y2 = _sanitize(boxes[:, 1], boxes[:, 3], height)
    return torch.stack([x1, y1, x2, y2], dim=1)

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

import numpy as np
import torch
from torch import Tensor

from .priors import priors

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
    # One coordinate at a time: [B, N, M] temporaries instead of strided [B, N, M, 2] ones
    # halve the work of the largest step of Fast NMS (40 classes x 200 x 200 candidates).
    ax1, ay1, ax2, ay2 = (c[:, :, None] for c in a.unbind(-1))
    bx1, by1, bx2, by2 = (c[:, None, :] for c in b.unbind(-1))
    inter = (torch.minimum(ax2, bx2) - torch.maximum(ax1, bx1)).clamp_(min=0)
    inter *= (torch.minimum(ay2, by2) - torch.maximum(ay1, by1)).clamp_(min=0)
    area_a = (ax2 - ax1) * (ay2 - ay1)
    area_b = (bx2 - bx1) * (by2 - by1)
    return inter / (area_a + area_b - inter)


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
    # A few classes at a time: the [classes, k, k] IoU temporaries then stay in cache, which
    # makes this step about 3x faster on a CPU than one pass over all classes.
    keep = torch.cat([
        batched_iou(chunk, chunk).triu_(diagonal=1).max(dim=1).values <= iou_threshold
        for chunk in class_boxes.split(4)
    ])  # fmt: skip
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
        fg = conf[i, :, 1:]  # [P, C-1]
        keep = fg.max(dim=1).values > conf_threshold
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
                boxes[i][keep],
                coeffs[i][keep],
                fg[keep].t().contiguous(),
                nms_threshold,
                top_k,
                max_detections,
            )
        )
    return out


def _sanitize(low: Tensor, high: Tensor, size: int, padding: int = 0) -> tuple[Tensor, Tensor]:
    low, high = low * size, high * size
    x1, x2 = torch.minimum(low, high), torch.maximum(low, high)
    return (x1 - padding).clamp(min=0), (x2 + padding).clamp(max=size)


@dataclass(frozen=True)
class _Taps:
    """A ``src`` -> ``dst`` bilinear resize along one axis (align_corners=False, as
    ``F.interpolate``).

    Attributes:
        low: int64 [dst], the first source index of each output index.
        high: int64 [dst], the second source index.
        weight: float32 [dst], the weight of ``high``.
        start: for each source bound c in 0..src, the first output index with ``high >= c``.
        stop: for each c, one past the last output index with ``low < c``.
    """

    low: Tensor
    high: Tensor
    weight: Tensor
    start: tuple[int, ...]
    stop: tuple[int, ...]

    def outputs(self, first: int, end: int) -> tuple[int, int]:
        """The output range whose taps touch source cells ``first <= c < end`` (taps are
        monotone, so it is one run)."""
        return self.start[first], self.stop[end]


@cache
def _bilinear_taps(src: int, dst: int) -> _Taps:
    position = ((torch.arange(dst, dtype=torch.float64) + 0.5) * (src / dst) - 0.5).clamp(min=0)
    low = position.floor().long().clamp(max=src - 1)
    high = (low + 1).clamp(max=src - 1)
    bounds = torch.arange(src + 1)
    start = torch.searchsorted(high, bounds, right=False)
    stop = torch.searchsorted(low, bounds, right=False)
    return _Taps(low, high, (position - low).float(), tuple(start.tolist()), tuple(stop.tolist()))


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
    taps_y, taps_x = _bilinear_taps(h, height), _bilinear_taps(w, width)
    wy, wx = taps_y.weight.to(proto.device), taps_x.weight.to(proto.device)
    for k, ((r_lo, r_hi), (c_lo, c_hi)) in enumerate(zip(rows, cols, strict=True)):
        (y0, y1), (x0, x1) = taps_y.outputs(r_lo, r_hi), taps_x.outputs(c_lo, c_hi)
        if r_hi <= r_lo or c_hi <= c_lo or y1 <= y0 or x1 <= x0:
            continue
        # The source block those outputs read, zero outside the crop.
        top, left = int(taps_y.low[y0]), int(taps_x.low[x0])
        block = soft.new_zeros(
            (int(taps_y.high[y1 - 1]) + 1 - top, int(taps_x.high[x1 - 1]) + 1 - left)
        )
        i0, i1 = max(r_lo, top), min(r_hi, top + block.shape[0])
        j0, j1 = max(c_lo, left), min(c_hi, left + block.shape[1])
        block[i0 - top : i1 - top, j0 - left : j1 - left] = soft[k, i0:i1, j0:j1]
        across = torch.lerp(
            block[:, (taps_x.low[x0:x1] - left).to(proto.device)],
            block[:, (taps_x.high[x0:x1] - left).to(proto.device)],
            wx[x0:x1],
        )
        value = torch.lerp(
            across[(taps_y.low[y0:y1] - top).to(proto.device)],
            across[(taps_y.high[y0:y1] - top).to(proto.device)],
            wy[y0:y1, None],
        )
        out[k, y0:y1, x0:x1] = value > 0.5
    return out


def boxes_in_pixels(boxes: Tensor, height: int, width: int) -> Tensor:
    """Relative xyxy [K, 4] -> pixel xyxy [K, 4], ordered and clipped to the image."""
    x1, x2 = _sanitize(boxes[:, 0], boxes[:, 2], width)
    y1, y2 = _sanitize(boxes[:, 1], boxes[:, 3], height)
    return torch.stack([x1, y1, x2, y2], dim=1)


@dataclass
class FrameInstances:
    """Detections of one frame in its own pixels, as arrays.

    Attributes:
        boxes: float32 [K, 4] xyxy pixels, ordered and clipped to the frame.
        scores: float32 [K], high to low.
        classes: int64 [K], foreground class index.
        masks: bool [K, H, W] at frame size, or None when not asked for.
    """

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    masks: np.ndarray | None


def frame_instances(
    loc: Tensor,
    conf: Tensor,
    coeffs: Tensor,
    proto: Tensor,
    input_size: int,
    frame_size: tuple[int, int],
    score_threshold: float = 0.3,
    nms_threshold: float = 0.5,
    max_detections: int = 100,
    with_masks: bool = True,
) -> FrameInstances:
    """One frame's head outputs -> its detections in frame pixels: decoding and Fast NMS
    (:func:`detect`), the score threshold, boxes and masks at frame size.

    Args:
        loc: float [1, P, 4]; conf: float [1, P, C] softmax; coeffs: float [1, P, 32];
        proto: float [1, h, w, 32].
        input_size: the side of the square input the network ran on.
        frame_size: the frame's (height, width).
        score_threshold: detections below it are dropped (after NMS).
        nms_threshold: Fast NMS IoU.
        max_detections: kept by NMS.
        with_masks: compute the masks.
    """
    prior = priors(input_size, input_size, loc.device)
    (found,) = detect(loc, conf, coeffs, prior,
                      nms_threshold=nms_threshold, max_detections=max_detections)  # fmt: skip
    found = found.select(found.scores >= score_threshold)
    height, width = frame_size
    return FrameInstances(
        boxes_in_pixels(found.boxes, height, width).cpu().numpy(),
        found.scores.cpu().numpy(),
        found.classes.cpu().numpy(),
        masks(proto[0], found, height, width).cpu().numpy() if with_masks else None,
    )

"""Decoding, NMS and the one-call ``detect()`` of upstream ``detect.py``, vectorised.

Order of operations per image, as upstream: score = conf[..., 1]; keep score >
``conf_threshold``; the ``top_k`` best; decode boxes and landmarks against the
priors; NMS at ``nms_threshold``; the ``keep_top_k`` best. Only the candidates that
pass the threshold are decoded. One difference: NMS is ``torchvision.ops.nms``
(continuous IoU), where upstream's ``py_cpu_nms`` adds 1 to widths and heights, so
IoUs of small boxes differ slightly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor, nn
from torchvision.ops import nms

from .preprocess import resize, to_tensor
from .priors import MIN_SIZES, VARIANCES, feature_sizes, priors

__all__ = ["FaceDetections", "decode_boxes", "decode_landmarks", "detect", "postprocess"]


@dataclass
class FaceDetections:
    """Faces found in one image, best score first, in that image's pixels.

    Attributes:
        boxes: float32 [K, 4], xyxy, pixels.
        scores: float32 [K], face probability.
        landmarks: float32 [K, 5, 2], (x, y) pixels: left eye, right eye, nose,
            left and right mouth corner (WIDER FACE order, image left/right).
    """

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)


def decode_boxes(loc: Tensor, priors: Tensor, variances: tuple[float, float] = VARIANCES) -> Tensor:
    """Box offsets -> xyxy boxes, normalised to the network input size.

    Args:
        loc: [..., P, 4] (dx, dy, dw, dh) from the network.
        priors: [P, 4] (cx, cy, w, h), normalised.
        variances: Upstream's (0.1, 0.2).

    Returns:
        [..., P, 4] (x1, y1, x2, y2) in [0, 1] units of the input width/height.
    """
    centre = priors[..., :2] + loc[..., :2] * variances[0] * priors[..., 2:]
    size = priors[..., 2:] * torch.exp(loc[..., 2:] * variances[1])
    top_left = centre - size / 2
    return torch.cat([top_left, top_left + size], dim=-1)


def decode_landmarks(
    pre: Tensor, priors: Tensor, variances: tuple[float, float] = VARIANCES
) -> Tensor:
    """Landmark offsets -> five points, normalised to the network input size.

    Args:
        pre: [..., P, 10] five (dx, dy) offsets.
        priors: [P, 4] (cx, cy, w, h), normalised.
        variances: Upstream's (0.1, 0.2); only the first is used.

    Returns:
        [..., P, 5, 2] (x, y) in [0, 1] units of the input width/height.
    """
    pts = pre.reshape(*pre.shape[:-1], 5, 2)
    return priors[..., None, :2] + pts * variances[0] * priors[..., None, 2:]


@lru_cache(maxsize=64)
def _own_grid_indices(batch_hw: tuple[int, int], image_hw: tuple[int, int]) -> Tensor:
    """Indices into a ``batch_hw`` output that form the ``image_hw`` output.

    Padding at the bottom/right keeps every cell (row, col) of the image at the same
    pixel position, so the image's own prior grid is a sub-grid of the padded one.
    Returns int64 [P_image] in the image's own (level, row, col, anchor) order.
    """
    parts, offset = [], 0
    for (bh, bw), (ih, iw), sizes in zip(
        feature_sizes(*batch_hw), feature_sizes(*image_hw), MIN_SIZES, strict=True
    ):
        a = len(sizes)
        rows = torch.arange(ih).view(ih, 1, 1)
        cols = torch.arange(iw).view(1, iw, 1)
        anchors = torch.arange(a).view(1, 1, a)
        parts.append((offset + (rows * bw + cols) * a + anchors).reshape(-1))
        offset += bh * bw * a
    return torch.cat(parts)


def postprocess(
    loc: Tensor,
    conf: Tensor,
    landmarks: Tensor,
    input_size: tuple[int, int],
    image_sizes: Sequence[tuple[int, int]] | None = None,
    conf_threshold: float = 0.5,
    nms_threshold: float = 0.4,
    top_k: int = 5000,
    keep_top_k: int = 750,
) -> list[FaceDetections]:
    """Decode raw network outputs into per-image detections.

    Args:
        loc: float32 [N, P, 4] for a batch of input size ``input_size``.
        conf: float32 [N, P, 2], softmaxed.
        landmarks: float32 [N, P, 10].
        input_size: (H, W) of the batch tensor the network ran on.
        image_sizes: (h, w) of each image inside the batch (padded at the bottom and
            right); default: all (H, W). Each image is decoded on its own prior grid,
            exactly as if it had run alone, so outputs over the padding are ignored.
        conf_threshold: Minimum face score.
        nms_threshold: IoU above which the lower-scored box is suppressed.
        top_k: Candidates kept (best first) before NMS.
        keep_top_k: Detections kept after NMS.

    Returns:
        One ``FaceDetections`` per image, in pixels of the network input.
    """
    n = loc.shape[0]
    if image_sizes is None:
        image_sizes = [tuple(input_size)] * n
    if len(image_sizes) != n:
        raise ValueError(f"{len(image_sizes)} image sizes for a batch of {n}")
    results = []
    for b, (h, w) in enumerate(image_sizes):
        if h > input_size[0] or w > input_size[1]:
            raise ValueError(f"image size {(h, w)} exceeds the batch input size {input_size}")
        scores = conf[b, :, 1]
        own = None
        if (h, w) != tuple(input_size):
            own = _own_grid_indices(tuple(input_size), (h, w)).to(loc.device)
            scores = scores[own]
        cand = torch.nonzero(scores > conf_threshold).squeeze(1)
        cand_scores, order = torch.sort(scores[cand], descending=True, stable=True)
        cand = cand[order[:top_k]]
        cand_scores = cand_scores[:top_k]
        rows = cand if own is None else own[cand]
        pri = priors(h, w, loc.device)[cand]
        px = torch.tensor([w, h], dtype=loc.dtype, device=loc.device)
        boxes = decode_boxes(loc[b, rows], pri) * px.repeat(2)
        points = decode_landmarks(landmarks[b, rows], pri) * px
        keep = nms(boxes, cand_scores, nms_threshold)[:keep_top_k]
        results.append(
            FaceDetections(
                boxes=boxes[keep].float().cpu().numpy(),
                scores=cand_scores[keep].float().cpu().numpy(),
                landmarks=points[keep].float().cpu().numpy(),
            )
        )
    return results


@torch.inference_mode()
def detect(
    model: nn.Module,
    images: np.ndarray | Sequence[np.ndarray] | Tensor,
    conf_threshold: float = 0.5,
    nms_threshold: float = 0.4,
    top_k: int = 5000,
    keep_top_k: int = 750,
    scale: float = 1.0,
    image_sizes: Sequence[tuple[int, int]] | None = None,
) -> list[FaceDetections]:
    """Detect faces: preprocess, one batched forward, decode, NMS.

    Args:
        model: A ``RetinaFace`` in eval mode (weights loaded).
        images: BGR uint8 [H, W, 3] image(s) of any sizes (padded into one batch),
            or an already preprocessed float32 [N, 3, H, W] batch (``to_tensor``).
        conf_threshold: Minimum face score (upstream's detect.py uses 0.02 for
            evaluation; 0.5 suits a live pipeline).
        nms_threshold: NMS IoU threshold (upstream 0.4).
        top_k: Candidates kept before NMS (upstream 5000).
        keep_top_k: Detections kept after NMS (upstream 750).
        scale: Resize factor applied to uint8 images before the network (e.g. 0.5
            runs about 4x faster and misses small faces); results are mapped back to
            the original pixels. Downscaling uses area interpolation.
        image_sizes: Only with a preprocessed batch: (h, w) of each image inside it.

    Returns:
        One ``FaceDetections`` per image, in that image's original pixels.

    Raises:
        ValueError: if the model is in training mode (BatchNorm would use batch
            statistics), or for ``scale`` with a preprocessed batch.
    """
    if model.training:
        raise ValueError("detect() needs the model in eval mode: call model.eval() first")
    device = next(model.parameters()).device
    factors = None
    if isinstance(images, Tensor):
        if scale != 1.0:
            raise ValueError("scale applies to uint8 images, not to a preprocessed batch")
        batch = images.to(device)
    else:
        if isinstance(images, np.ndarray) and images.ndim == 3:
            images = [images]
        if scale != 1.0:
            resized = [resize(img, scale) for img in images]
            images = [r[0] for r in resized]
            factors = [(r[1], r[2]) for r in resized]
        image_sizes = [img.shape[:2] for img in images]
        batch = to_tensor(images, device)
    loc, conf, landmarks = model(batch)
    results = postprocess(
        loc,
        conf,
        landmarks,
        input_size=tuple(batch.shape[-2:]),
        image_sizes=image_sizes,
        conf_threshold=conf_threshold,
        nms_threshold=nms_threshold,
        top_k=top_k,
        keep_top_k=keep_top_k,
    )
    if factors is not None:
        for det, (fx, fy) in zip(results, factors, strict=True):
            f = np.array([fx, fy], dtype=np.float32)
            det.boxes /= np.tile(f, 2)
            det.landmarks /= f
    return results

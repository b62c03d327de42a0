"""Dense DensePose metrics on full-frame IUV images: part IoU, foreground IoU and UV error.

Frames follow DensePose's IUV image convention: a uint8 array of shape ``[H, W, 3]`` whose channel
0 is the body-part index ``I`` in ``0..24`` (``0`` is background), channel 1 is ``U * 255`` and
channel 2 is ``V * 255``, with ``U, V`` in ``[0, 1]`` the chart coordinates inside part ``I``. A
frame may also be given as a tuple ``(I, U, V)`` of ``[H, W]`` arrays (``I`` integer, ``U, V``
float in ``[0, 1]``), which avoids the 1/255 quantisation of the uint8 image.

All counts are accumulated over every frame before any ratio is taken (so large frames weigh
more, as pixels do in a semantic-segmentation mIoU):

* ``per_part_iou[p] = |GT_p ∩ Pred_p| / |GT_p ∪ Pred_p|`` with ``GT_p = {I_gt == p}``, for each
  part ``p`` in ``1..24`` whose union is not empty; ``part_iou`` is their unweighted mean.
* ``foreground_iou`` is the IoU of the person masks ``{I_gt > 0}`` and ``{I_pred > 0}``.
* ``uv_error`` is the mean Euclidean distance ``sqrt(dU² + dV²)`` over the pixels where both images
  name the same part (``I_gt == I_pred > 0``); ``uv_pixels`` is how many pixels that is.

These are *not* the COCO DensePose metrics. The official score, GPS (geodesic point similarity,
Güler et al., "DensePose", CVPR 2018), compares points by their geodesic distance on the SMPL body
surface, which needs the SMPL mesh and its precomputed geodesic distances; this package has
neither, so GPS (and the AP over GPS thresholds) is deliberately not implemented or approximated.
``uv_error`` is a chart-space distance: it is only comparable between pixels of the same part and
says nothing about errors across part boundaries (those show up in ``per_part_iou``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

NUM_PARTS = 24
"""Number of DensePose body parts; part indices are ``1..NUM_PARTS`` and ``0`` is background."""

IUVFrame = np.ndarray | tuple[np.ndarray, np.ndarray, np.ndarray]
"""IUV image uint8 ``[H, W, 3]``, or ``(I int [H, W], U float [H, W], V float [H, W])``."""


@dataclass(frozen=True)
class DensePoseScores:
    """Result of :func:`densepose_scores`.

    Attributes:
        part_iou: Unweighted mean of ``per_part_iou`` (nan if no part appears in any frame).
        per_part_iou: ``{part: IoU}`` for each part in ``1..24`` present in the ground truth or
            the prediction of at least one frame, IoU computed on pixel counts summed over frames.
        foreground_iou: IoU of the person masks ``I > 0`` (nan if both are empty in every frame).
        uv_error: Mean of ``sqrt(dU² + dV²)``, ``U, V`` in ``[0, 1]``, over the pixels whose
            ground-truth and predicted part agree and are not background (nan if there are none).
        uv_pixels: Number of pixels ``uv_error`` averages over.
    """

    part_iou: float
    per_part_iou: dict[int, float]
    foreground_iou: float
    uv_error: float
    uv_pixels: int


def split_iuv(iuv: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Splits a DensePose IUV image into part indices and chart coordinates.

    Args:
        iuv: uint8 ``[H, W, 3]``: part index ``I`` in ``0..24``, ``U * 255``, ``V * 255``.

    Returns:
        ``(parts int64 [H, W], u float32 [H, W], v float32 [H, W])`` with ``u, v`` in ``[0, 1]``.

    Raises:
        ValueError: If ``iuv`` is not ``[H, W, 3]`` or holds a part index above 24.
        TypeError: If ``iuv`` is not uint8.
    """
    iuv = np.asarray(iuv)
    if iuv.ndim != 3 or iuv.shape[2] != 3:
        raise ValueError(f"IUV image must be [H, W, 3], got shape {iuv.shape}")
    if iuv.dtype != np.uint8:
        raise TypeError(f"IUV image must be uint8, got {iuv.dtype}")
    parts = iuv[..., 0].astype(np.int64)
    if parts.size and parts.max() > NUM_PARTS:
        raise ValueError(f"part index {parts.max()} above {NUM_PARTS}")
    u = iuv[..., 1].astype(np.float32) / 255
    v = iuv[..., 2].astype(np.float32) / 255
    return parts, u, v


def _as_iuv(frame: IUVFrame, what: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not isinstance(frame, tuple):
        return split_iuv(frame)
    if len(frame) != 3:
        raise ValueError(f"{what} frame tuple must be (I, U, V), got {len(frame)} arrays")
    parts, u, v = (np.asarray(a) for a in frame)
    if parts.ndim != 2 or u.shape != parts.shape or v.shape != parts.shape:
        raise ValueError(
            f"{what} I, U, V must be [H, W] of one shape, got {parts.shape}, {u.shape}, {v.shape}"
        )
    if not np.issubdtype(parts.dtype, np.integer):
        raise TypeError(f"{what} part indices must be integers, got {parts.dtype}")
    if parts.size and (parts.min() < 0 or parts.max() > NUM_PARTS):
        raise ValueError(f"{what} part indices must lie in 0..{NUM_PARTS}")
    return parts.astype(np.int64, copy=False), u.astype(np.float64), v.astype(np.float64)


def densepose_scores(
    ground_truth: Sequence[IUVFrame],
    predictions: Sequence[IUVFrame],
) -> DensePoseScores:
    """Part IoU, foreground IoU and UV error of predicted IUV images, accumulated over frames.

    Example:
        >>> iuv = np.zeros((2, 2, 3), dtype=np.uint8)
        >>> iuv[0, 0] = (3, 255, 0)
        >>> densepose_scores([iuv], [iuv]).per_part_iou
        {3: 1.0}

    Args:
        ground_truth: ``N`` frames, each an IUV image uint8 ``[H, W, 3]`` or a tuple
            ``(I int [H, W], U float [H, W], V float [H, W])`` (see the module docstring).
        predictions: ``N`` predicted frames in either form; each must have the shape of its
            ground-truth frame (frames may differ in size from one another).

    Returns:
        :class:`DensePoseScores`.

    Raises:
        ValueError: If the sequences differ in length, a frame is malformed, or a predicted frame
            does not match its ground truth's shape.
        TypeError: If an IUV image is not uint8 or part indices are not integers.
    """
    if len(ground_truth) != len(predictions):
        raise ValueError(
            f"{len(ground_truth)} ground-truth frames vs {len(predictions)} predicted frames"
        )
    n_bins = NUM_PARTS + 1
    inter = np.zeros(n_bins, dtype=np.int64)
    gt_area = np.zeros(n_bins, dtype=np.int64)
    pred_area = np.zeros(n_bins, dtype=np.int64)
    fg_inter = fg_union = 0
    uv_sum, uv_pixels = 0.0, 0
    for index, (gt_frame, pred_frame) in enumerate(zip(ground_truth, predictions, strict=True)):
        gi, gu, gv = _as_iuv(gt_frame, "ground-truth")
        pi, pu, pv = _as_iuv(pred_frame, "predicted")
        if gi.shape != pi.shape:
            raise ValueError(
                f"frame {index}: ground-truth shape {gi.shape} vs predicted shape {pi.shape}"
            )
        gt_area += np.bincount(gi.ravel(), minlength=n_bins)
        pred_area += np.bincount(pi.ravel(), minlength=n_bins)
        same = (gi == pi) & (gi > 0)
        inter += np.bincount(gi[same], minlength=n_bins)
        fg_inter += int(np.count_nonzero((gi > 0) & (pi > 0)))
        fg_union += int(np.count_nonzero((gi > 0) | (pi > 0)))
        du = gu[same].astype(np.float64) - pu[same]
        dv = gv[same].astype(np.float64) - pv[same]
        uv_sum += float(np.sqrt(du * du + dv * dv).sum())
        uv_pixels += int(du.size)

    union = gt_area + pred_area - inter
    per_part = {p: float(inter[p] / union[p]) for p in range(1, n_bins) if union[p] > 0}
    return DensePoseScores(
        part_iou=float(np.mean(list(per_part.values()))) if per_part else float("nan"),
        per_part_iou=per_part,
        foreground_iou=fg_inter / fg_union if fg_union else float("nan"),
        uv_error=uv_sum / uv_pixels if uv_pixels else float("nan"),
        uv_pixels=uv_pixels,
    )

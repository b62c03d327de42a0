"""COCO mask AP (and box AP) via pycocotools (``COCOeval`` with ``iouType="segm"`` / "bbox").

A thin wrapper: ground truth and predictions are given as in-memory binary masks, converted to
RLE with ``pycocotools.mask.encode`` and evaluated with the standard COCO protocol (IoU thresholds
0.50:0.05:0.95, 101-point interpolated precision, at most 100 detections per image, all areas).
pycocotools' console output is suppressed.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

GtInstance = tuple[np.ndarray, int]
"""``(mask bool [H, W], category_id)``."""

Prediction = tuple[np.ndarray, int, float]
"""``(mask bool [H, W], category_id, score)``."""


@dataclass(frozen=True)
class MaskAP:
    """COCO mask average precision.

    Attributes:
        ap: AP averaged over IoU thresholds 0.50:0.05:0.95 (COCO "AP").
        ap50: AP at IoU 0.50.
        ap75: AP at IoU 0.75.
    """

    ap: float
    ap50: float
    ap75: float


def _rle(mask: np.ndarray) -> dict:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"masks must be [H, W], got shape {mask.shape}")
    return mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))


def _evaluate(
    images: list[dict], annotations: list[dict], results: list[dict], cats: set[int], kind: str
) -> MaskAP:
    """COCOeval of in-memory ground truth and results (``kind``: "segm" or "bbox")."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = {
            "images": images,
            "annotations": annotations,
            "categories": [{"id": c, "name": str(c)} for c in sorted(cats)],
        }
        coco_gt.createIndex()
        ev = COCOeval(coco_gt, coco_gt.loadRes(results), iouType=kind)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    # stats[0..2] = AP@[.5:.95], AP50, AP75 (all areas, maxDets=100); -1 means "no GT" -> 0.
    ap, ap50, ap75 = (max(float(v), 0.0) for v in ev.stats[:3])
    return MaskAP(ap, ap50, ap75)


def box_ap(
    ground_truth: Sequence[Sequence[tuple[Sequence[float], int]]],
    predictions: Sequence[Sequence[tuple[Sequence[float], int, float]]],
) -> MaskAP:
    """COCO box AP, AP50 and AP75 (``iouType="bbox"``), as :func:`mask_ap` for boxes.

    Args:
        ground_truth: per image a list of ``(box xyxy, category_id)``.
        predictions: per image a list of ``(box xyxy, category_id, score)``.

    Returns:
        :class:`MaskAP` holding the box APs; all zeros without predictions.

    Raises:
        ValueError: If the two sequences differ in length or there is no ground truth at all.
    """
    if len(ground_truth) != len(predictions):
        raise ValueError(f"{len(ground_truth)} ground-truth images vs {len(predictions)} predicted")
    if not any(len(g) for g in ground_truth):
        raise ValueError("no ground-truth instance: AP is undefined")

    def xywh(box: Sequence[float]) -> list[float]:
        x0, y0, x1, y1 = (float(v) for v in box)
        return [x0, y0, x1 - x0, y1 - y0]

    images, annotations, results = [], [], []
    cats: set[int] = set()
    for img_id, (gts, preds) in enumerate(zip(ground_truth, predictions, strict=True), start=1):
        images.append({"id": img_id})
        for box, cat in gts:
            b = xywh(box)
            annotations.append({"id": len(annotations) + 1, "image_id": img_id,
                                "category_id": int(cat), "bbox": b, "area": b[2] * b[3],
                                "iscrowd": 0})  # fmt: skip
            cats.add(int(cat))
        for box, cat, score in preds:
            results.append({"image_id": img_id, "category_id": int(cat), "bbox": xywh(box),
                            "score": float(score)})  # fmt: skip
            cats.add(int(cat))
    if not results:
        return MaskAP(0.0, 0.0, 0.0)
    return _evaluate(images, annotations, results, cats, "bbox")


def mask_ap(
    ground_truth: Sequence[Sequence[GtInstance]],
    predictions: Sequence[Sequence[Prediction]],
) -> MaskAP:
    """Computes COCO mask AP, AP50 and AP75.

    Args:
        ground_truth: For each of ``N`` images, a list of ``(mask, category_id)`` with ``mask`` a
            boolean array of shape ``[H, W]`` (``H, W`` may differ between images but not within
            one).
        predictions: For each of the same ``N`` images, a list of ``(mask, category_id, score)``
            with ``mask`` of that image's shape ``[H, W]``. Only the 100 highest-scoring
            predictions per image count (COCO ``maxDets``).

    Returns:
        :class:`MaskAP`. All zeros when there are no predictions at all.

    Raises:
        ValueError: If the two sequences differ in length, there is no ground-truth instance at
            all, or a mask is not 2-D or does not match its image's shape.
    """
    if len(ground_truth) != len(predictions):
        raise ValueError(f"{len(ground_truth)} ground-truth images vs {len(predictions)} predicted")
    if not any(len(g) for g in ground_truth):
        raise ValueError("no ground-truth instance: AP is undefined")

    images, annotations, results = [], [], []
    cats: set[int] = set()
    for img_id, (gts, preds) in enumerate(zip(ground_truth, predictions, strict=True), start=1):
        shape = None
        for mask, *_ in [*gts, *preds]:
            if shape is None:
                shape = np.shape(mask)
            elif np.shape(mask) != shape:
                raise ValueError(f"image {img_id - 1}: masks of shapes {shape} and {mask.shape}")
        h, w = shape if shape is not None and len(shape) == 2 else (1, 1)
        images.append({"id": img_id, "height": int(h), "width": int(w)})
        for mask, cat in gts:
            rle = _rle(mask)
            annotations.append(
                {
                    "id": len(annotations) + 1,  # COCOeval needs ids > 0
                    "image_id": img_id,
                    "category_id": int(cat),
                    "segmentation": rle,
                    "area": float(mask_utils.area(rle)),
                    "bbox": mask_utils.toBbox(rle).tolist(),
                    "iscrowd": 0,
                }
            )
            cats.add(int(cat))
        for mask, cat, score in preds:
            results.append(
                {
                    "image_id": img_id,
                    "category_id": int(cat),
                    "segmentation": _rle(mask),
                    "score": float(score),
                }
            )
            cats.add(int(cat))
    if not results:
        return MaskAP(0.0, 0.0, 0.0)
    return _evaluate(images, annotations, results, cats, "segm")

"""Tests for evaluation.coco.mask_ap (pycocotools COCOeval, segm)."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.coco import box_ap, mask_ap


def box(top: int, left: int, h: int = 10, w: int = 10, shape: tuple[int, int] = (40, 40)):
    m = np.zeros(shape, dtype=bool)
    m[top : top + h, left : left + w] = True
    return m


def gt_images() -> list[list[tuple[np.ndarray, int]]]:
    return [
        [(box(0, 0), 1), (box(20, 20), 1), (box(0, 25, 8, 12), 2)],
        [(box(5, 5, 20, 20, shape=(30, 50)), 2)],
    ]


def test_gt_as_prediction_is_perfect() -> None:
    gt = gt_images()
    preds = [[(m, c, 0.9) for m, c in img] for img in gt]
    res = mask_ap(gt, preds)
    assert (res.ap, res.ap50, res.ap75) == pytest.approx((1.0, 1.0, 1.0))


def test_one_removed_detection() -> None:
    # 2 GT, 1 perfect prediction: precision 1 up to recall 0.5, then 0. COCO's 101 recall
    # points 0.00..1.00 -> 51 of them (0.00..0.50) have precision 1 -> AP = 51/101 ~ 0.505 at
    # every IoU threshold.
    gt = [[(box(0, 0), 1), (box(20, 20), 1)]]
    preds = [[(box(0, 0), 1, 0.8)]]
    res = mask_ap(gt, preds)
    assert res.ap50 == pytest.approx(51 / 101, abs=0.01)
    assert res.ap75 == pytest.approx(51 / 101, abs=0.01)
    assert res.ap == pytest.approx(51 / 101, abs=0.01)
    assert res.ap < 1


def test_shifted_detection_iou_two_thirds() -> None:
    # 10x10 mask shifted by 2 px -> IoU 80/120 = 2/3: a TP at IoU thresholds 0.50, 0.55, 0.60,
    # 0.65 (4 of the 10) -> AP50 = 1, AP75 = 0, AP = 0.4.
    gt = [[(box(5, 5), 1)]]
    preds = [[(box(5, 7), 1, 0.7)]]
    res = mask_ap(gt, preds)
    assert res.ap50 == pytest.approx(1.0)
    assert res.ap75 == pytest.approx(0.0)
    assert res.ap == pytest.approx(0.4)


def test_wrong_category_and_no_predictions() -> None:
    gt = [[(box(0, 0), 1)]]
    assert mask_ap(gt, [[(box(0, 0), 2, 0.9)]]).ap == 0.0
    assert mask_ap(gt, [[]]).ap == 0.0


def test_invalid_inputs() -> None:
    with pytest.raises(ValueError, match="no ground-truth"):
        mask_ap([[]], [[]])
    with pytest.raises(ValueError, match="vs"):
        mask_ap([[(box(0, 0), 1)]], [])
    with pytest.raises(ValueError, match="shapes"):
        mask_ap([[(box(0, 0), 1)]], [[(box(0, 0, shape=(20, 20)), 1, 0.5)]])


def test_prints_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    gt = [[(box(0, 0), 1)]]
    mask_ap(gt, [[(box(0, 0), 1, 0.9)]])
    assert capsys.readouterr().out == ""


def test_box_ap_perfect_missing_and_shifted() -> None:
    truth = [[([10, 10, 50, 60], 1), ([70, 20, 90, 80], 1)], [([0, 0, 30, 30], 2)]]
    perfect = [[(b, c, 0.9) for b, c in image] for image in truth]
    assert box_ap(truth, perfect).ap == pytest.approx(1.0)
    # One of the two class-1 boxes never found: recall 1/2 -> AP_1 = 0.5 (101-point), AP_2 = 1.
    missing = [perfect[0][:1], perfect[1]]
    assert box_ap(truth, missing).ap == pytest.approx((0.5049504950495 + 1.0) / 2, abs=1e-6)
    # A box grown so its IoU is 0.58 counts at thresholds 0.50 and 0.55 only (2 of 10).
    shifted = [
        [([10, 10, 50, 60], 1, 0.9), ([70, 20, 90, 80], 1, 0.8)],
        [([0, 0, 30, 30 / 0.58], 2, 0.9)],
    ]
    scores = box_ap(truth, shifted)
    assert scores.ap50 == pytest.approx(1.0) and scores.ap == pytest.approx((1.0 + 0.2) / 2)
    with pytest.raises(ValueError):
        box_ap(truth, perfect[:1])

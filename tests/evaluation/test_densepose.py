"""Tests for evaluation.densepose: tiny hand-made IUV frames whose scores are computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evaluation.densepose import densepose_scores, split_iuv

H, W = 4, 6


def iuv(parts: np.ndarray, u: int = 0, v: int = 0) -> np.ndarray:
    """uint8 [H, W, 3] IUV image with the given part map and constant U, V channels (0..255)."""
    out = np.zeros((*parts.shape, 3), dtype=np.uint8)
    out[..., 0] = parts
    out[..., 1] = u
    out[..., 2] = v
    return out


def test_split_iuv() -> None:
    image = np.array([[[3, 0, 255], [0, 51, 102]]], dtype=np.uint8)  # [1, 2, 3]
    parts, u, v = split_iuv(image)
    assert parts.tolist() == [[3, 0]]
    assert u.dtype == np.float32 and v.dtype == np.float32
    np.testing.assert_allclose(u, [[0.0, 0.2]], atol=1e-7)
    np.testing.assert_allclose(v, [[1.0, 0.4]], atol=1e-7)


def test_gt_as_prediction_is_perfect() -> None:
    parts = np.zeros((H, W), dtype=np.uint8)
    parts[0:2, 0:2] = 1
    parts[1:4, 3:5] = 24
    gt = iuv(parts, u=10, v=200)
    res = densepose_scores([gt, gt], [gt.copy(), gt.copy()])
    assert res.per_part_iou == {1: 1.0, 24: 1.0}
    assert res.part_iou == 1.0
    assert res.foreground_iou == 1.0
    assert res.uv_error == 0.0
    assert res.uv_pixels == 2 * (4 + 6)  # two frames of 4 + 6 foreground pixels


def test_part_shifted_by_one_column() -> None:
    # Part 5 covers columns 1..4 of all 4 rows in the GT and columns 2..5 in the prediction:
    # inter = 4 * 3 = 12, union = 4 * 5 = 20 -> IoU 3/5. Part 7 (rows 0..1, column 0) is exact.
    # Foreground: inter = 12 + 2 = 14, union = 2 + 4 * 5 = 22 -> 7/11.
    gt_parts = np.zeros((H, W), dtype=np.uint8)
    gt_parts[:, 1:5] = 5
    gt_parts[0:2, 0] = 7
    pred_parts = np.zeros((H, W), dtype=np.uint8)
    pred_parts[:, 2:6] = 5
    pred_parts[0:2, 0] = 7
    res = densepose_scores([iuv(gt_parts, 80, 80)], [iuv(pred_parts, 80, 80)])
    assert res.per_part_iou == pytest.approx({5: 3 / 5, 7: 1.0})
    assert res.part_iou == pytest.approx((3 / 5 + 1.0) / 2)
    assert res.foreground_iou == pytest.approx(7 / 11)
    assert res.uv_pixels == 12 + 2
    assert res.uv_error == 0.0


def test_uv_offset_uint8() -> None:
    # Every pixel is part 2 in both. On k = 6 pixels the prediction has U + 51 and V + 68 (uint8
    # steps), i.e. dU = 0.2 and dV = 4/15: distance sqrt(51² + 68²) / 255 = 85 / 255 = 1/3 exactly.
    # uv_error = 6 * (1/3) / 24 = 1/12.
    parts = np.full((H, W), 2, dtype=np.uint8)
    gt = iuv(parts, u=100, v=30)
    pred = gt.copy()
    pred[1, :, 1] += 51
    pred[1, :, 2] += 68
    res = densepose_scores([gt], [pred])
    assert res.uv_pixels == H * W
    assert res.uv_error == pytest.approx(1 / 12, rel=1e-6)
    assert res.part_iou == 1.0


def test_uv_offset_float_tuple_only_on_agreeing_parts() -> None:
    # Float (I, U, V) input: U + 0.1 on k = 5 pixels of 23 agreeing foreground pixels, so
    # uv_error = 5 * 0.1 / 23. The one pixel whose part differs (3 vs 4) has a large UV error
    # that must not count.
    parts = np.full((H, W), 3, dtype=np.int32)
    u = np.full((H, W), 0.25)
    v = np.full((H, W), 0.5)
    pred_parts = parts.copy()
    pred_parts[3, 5] = 4
    pred_u = u.copy()
    pred_u[0, 0:5] += 0.1
    pred_u[3, 5] = 1.0
    res = densepose_scores([(parts, u, v)], [(pred_parts, pred_u, v)])
    assert res.uv_pixels == 23
    assert res.uv_error == pytest.approx(5 * 0.1 / 23)
    # Part 3: inter 23, union 24. Part 4: inter 0, union 1.
    assert res.per_part_iou == pytest.approx({3: 23 / 24, 4: 0.0})
    assert res.foreground_iou == 1.0


def test_mixed_frame_forms() -> None:
    parts = np.zeros((H, W), dtype=np.uint8)
    parts[1:3, 1:3] = 9
    image = iuv(parts, u=255, v=0)
    as_tuple = (parts.astype(np.int64), np.ones((H, W)), np.zeros((H, W)))
    res = densepose_scores([image], [as_tuple])
    assert res.per_part_iou == {9: 1.0}
    assert res.uv_error == pytest.approx(0.0, abs=1e-7)


def test_absent_parts_are_excluded_from_the_mean() -> None:
    # GT has parts 1 and 2, the prediction misses part 2: per-part IoU {1: 1, 2: 0}, mean 0.5
    # (not 1/24: the 22 parts absent from both do not count).
    gt_parts = np.zeros((H, W), dtype=np.uint8)
    gt_parts[0, 0:3] = 1
    gt_parts[2, 0:3] = 2
    pred_parts = gt_parts.copy()
    pred_parts[pred_parts == 2] = 0
    res = densepose_scores([iuv(gt_parts)], [iuv(pred_parts)])
    assert res.per_part_iou == {1: 1.0, 2: 0.0}
    assert res.part_iou == 0.5
    assert res.foreground_iou == 0.5  # inter 3, union 6


def test_counts_accumulate_over_frames() -> None:
    # Part 3: frame A exact on 4 px; frame B 12 GT px, none predicted. Accumulated IoU =
    # 4 / (4 + 12) = 1/4 (the mean of per-frame IoUs would be 1/2).
    a = np.zeros((H, W), dtype=np.uint8)
    a[0:2, 0:2] = 3
    b = np.zeros((H, W), dtype=np.uint8)
    b[0:2, :] = 3
    res = densepose_scores([iuv(a), iuv(b)], [iuv(a), iuv(np.zeros_like(b))])
    assert res.per_part_iou == {3: 0.25}


def test_all_background_gives_nan() -> None:
    empty = iuv(np.zeros((H, W), dtype=np.uint8))
    res = densepose_scores([empty], [empty])
    assert res.per_part_iou == {}
    assert math.isnan(res.part_iou)
    assert math.isnan(res.foreground_iou)
    assert math.isnan(res.uv_error)
    assert res.uv_pixels == 0


def test_invalid_inputs() -> None:
    frame = iuv(np.zeros((H, W), dtype=np.uint8))
    with pytest.raises(ValueError, match="shape"):
        densepose_scores([frame], [iuv(np.zeros((H, W + 1), dtype=np.uint8))])
    with pytest.raises(ValueError, match="frames"):
        densepose_scores([frame, frame], [frame])
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        split_iuv(np.zeros((H, W), dtype=np.uint8))
    with pytest.raises(ValueError, match="above 24"):
        split_iuv(iuv(np.full((H, W), 25, dtype=np.uint8)))
    with pytest.raises(TypeError, match="uint8"):
        split_iuv(np.zeros((H, W, 3), dtype=np.float32))
    zeros = np.zeros((H, W))
    with pytest.raises(ValueError, match="one shape"):
        densepose_scores([frame], [(np.zeros((H, W), int), zeros, np.zeros((H, W + 1)))])

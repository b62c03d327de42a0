"""Tests for evaluation.panoptic: hand-made frames whose PQ/SQ/RQ/VPQ are computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.panoptic import pq, pq_stats, vpq

THING, STUFF = 1, 2  # category ids


def square(seg: np.ndarray, sid: int, top: int, left: int, h: int = 10, w: int = 10) -> None:
    seg[top : top + h, left : left + w] = sid


def scene() -> tuple[np.ndarray, dict[int, int]]:
    """20x30 frame: stuff id 1 everywhere, two 10x10 things (ids 2, 3) and a void strip."""
    seg = np.ones((20, 30), dtype=np.int32)
    square(seg, 2, 0, 0)
    square(seg, 3, 5, 12)
    seg[:, 26:] = 0  # void
    return seg, {1: STUFF, 2: THING, 3: THING}


def test_gt_as_prediction_is_perfect() -> None:
    seg, cats = scene()
    res = pq([(seg.copy(), dict(cats))], [(seg, cats)], thing_categories={THING})
    for avg in (res.all, res.things, res.stuff):
        assert (avg.pq, avg.sq, avg.rq) == (1.0, 1.0, 1.0)
    assert res.all.n == 2 and res.things.n == 1 and res.stuff.n == 1
    assert res.stats[THING].tp == 2 and res.stats[STUFF].tp == 1


def test_removed_instance() -> None:
    # Two GT things of one class on void, only one predicted exactly:
    # TP=1 (IoU 1), FN=1 -> SQ = 1, RQ = 1 / (1 + 0.5) = 2/3, PQ = 2/3.
    gt = np.zeros((20, 30), dtype=np.int32)
    square(gt, 1, 0, 0)
    square(gt, 2, 5, 15)
    pred = gt.copy()
    pred[pred == 2] = 0
    res = pq([(pred, {1: THING})], [(gt, {1: THING, 2: THING})])
    c = res.per_class[THING]
    assert (res.stats[THING].tp, res.stats[THING].fp, res.stats[THING].fn) == (1, 0, 1)
    assert c.sq == pytest.approx(1.0)
    assert c.rq == pytest.approx(2 / 3)
    assert c.pq == pytest.approx(2 / 3)
    assert res.all.pq == pytest.approx(2 / 3)


def shifted(shift: int, w: int = 10) -> tuple[list, list]:
    """20x20 frame, stuff id 9 everywhere but a 10 x w thing (id 1) shifted right in the pred."""
    gt = np.full((20, 20), 9, dtype=np.int32)
    pred = gt.copy()
    square(gt, 1, 5, 2, w=w)
    square(pred, 1, 5, 2 + shift, w=w)
    cats = {1: THING, 9: STUFF}
    return [(pred, cats)], [(gt, cats)]


def test_shifted_instance_exact_sq() -> None:
    # 10x10 shifted by 2 px: thing inter = 10*8 = 80, union = 120 -> IoU 2/3 (TP).
    # Stuff: both 300 px, inter = 400 - 120 = 280, union = 320 -> IoU 7/8.
    res = pq(*shifted(2), thing_categories={THING})
    assert res.stats[THING].tp == 1 and res.stats[THING].fp == 0 and res.stats[THING].fn == 0
    assert res.per_class[THING].sq == pytest.approx(2 / 3)
    assert res.per_class[THING].rq == pytest.approx(1.0)
    assert res.per_class[STUFF].sq == pytest.approx(7 / 8)
    assert res.things.pq == pytest.approx(2 / 3)
    assert res.stuff.pq == pytest.approx(7 / 8)
    assert res.all.pq == pytest.approx((2 / 3 + 7 / 8) / 2)


def test_shift_below_half_is_fp_and_fn() -> None:
    # Shift by 6: inter = 40, union = 160 -> IoU 0.25: no match, FP=1, FN=1 -> PQ = RQ = 0.
    # Stuff: inter = 400 - 160 = 240, union = 360 -> IoU 2/3, TP.
    res = pq(*shifted(6), thing_categories={THING})
    s = res.stats[THING]
    assert (s.tp, s.fp, s.fn) == (0, 1, 1)
    assert res.per_class[THING].pq == 0.0 and res.per_class[THING].rq == 0.0
    assert res.per_class[STUFF].pq == pytest.approx(2 / 3)
    assert res.all.pq == pytest.approx(1 / 3)


def test_iou_exactly_half_is_not_a_match() -> None:
    # 10x12 shifted by 4: inter = 10*8 = 80, union = 10*16 = 160 -> IoU = 0.5, not > 0.5.
    res = pq(*shifted(4, w=12))
    s = res.stats[THING]
    assert (s.tp, s.fp, s.fn) == (0, 1, 1)


def test_pred_pixels_on_void_leave_the_union() -> None:
    # GT thing on a void background, pred shifted by 2: the 20 pred pixels on void are not in
    # the union -> IoU = 80 / (100 + 100 - 80 - 20) = 0.8 (it would be 2/3 without void).
    gt = np.zeros((20, 20), dtype=np.int32)
    pred = gt.copy()
    square(gt, 1, 5, 2)
    square(pred, 1, 5, 4)
    res = pq([(pred, {1: THING})], [(gt, {1: THING})])
    assert res.per_class[THING].sq == pytest.approx(0.8)
    assert res.per_class[THING].pq == pytest.approx(0.8)


@pytest.mark.parametrize(("left", "expected_fp"), [(11, 0), (9, 1)])
def test_prediction_mostly_on_void_is_not_fp(left: int, expected_fp: int) -> None:
    # GT: stuff id 1 on columns 0..14, void on 15..19. Pred: same stuff, minus a 10x10 thing
    # (id 5) at columns left..left+9. left=11 -> 60 of its 100 px on void: ignored (not FP);
    # left=9 -> only 40 px on void: FP.
    gt = np.zeros((20, 20), dtype=np.int32)
    gt[:, :15] = 1
    pred = gt.copy()
    square(pred, 5, 0, left)
    res = pq([(pred, {1: STUFF, 5: THING})], [(gt, {1: STUFF})], thing_categories={THING})
    assert res.stats[THING].fp == expected_fp
    assert (THING in res.per_class) == bool(expected_fp)
    # Stuff: pred area = 300 - (15 - left) * 10, all inside GT stuff (300 px) -> IoU = area / 300.
    stuff_iou = (300 - (15 - left) * 10) / 300
    assert res.per_class[STUFF].pq == pytest.approx(stuff_iou)
    if expected_fp:
        assert res.all.pq == pytest.approx(stuff_iou / 2)  # thing class has PQ 0
    else:
        assert res.all.pq == pytest.approx(stuff_iou)  # thing class excluded: no TP+FP+FN


def test_accumulates_over_frames() -> None:
    # Frame 1 perfect (TP, IoU 1), frame 2 the removed-instance case (TP IoU 1 + FN):
    # TP=2, FN=1 -> RQ = 2 / 2.5 = 0.8 = PQ.
    gt = np.zeros((20, 30), dtype=np.int32)
    square(gt, 1, 0, 0)
    square(gt, 2, 5, 15)
    cats = {1: THING, 2: THING}
    pred2 = gt.copy()
    pred2[pred2 == 2] = 0
    first = gt[:, :15]  # holds only thing 1
    res = pq([(first.copy(), {1: THING}), (pred2, {1: THING})], [(first, {1: THING}), (gt, cats)])
    assert (res.stats[THING].tp, res.stats[THING].fn) == (2, 1)
    assert res.all.pq == pytest.approx(0.8)


def test_invalid_inputs() -> None:
    seg = np.ones((4, 4), dtype=np.int32)
    with pytest.raises(ValueError, match="no category"):
        pq_stats(seg, {}, seg, {1: THING})
    with pytest.raises(ValueError, match="shape"):
        pq_stats(seg, {1: THING}, seg[:2], {1: THING})
    with pytest.raises(TypeError):
        pq_stats(seg.astype(float), {1: THING}, seg, {1: THING})


# ---- VPQ ------------------------------------------------------------------------------------


def video(pred_track_ids: list[int]) -> tuple[list, list]:
    """3 frames of 4x4: track 1 (thing) on the left 4x2 half, stuff id 2 on the right half.

    The prediction uses ``pred_track_ids[t]`` for the thing in frame t.
    """
    gt_frames, pred_frames = [], []
    for tid in pred_track_ids:
        g = np.full((4, 4), 2, dtype=np.int32)
        g[:, :2] = 1
        p = np.full((4, 4), 2, dtype=np.int32)
        p[:, :2] = tid
        gt_frames.append((g, {1: THING, 2: STUFF}))
        pred_frames.append((p, {tid: THING, 2: STUFF}))
    return pred_frames, gt_frames


@pytest.mark.parametrize("k", [1, 2, 3])
def test_vpq_gt_as_prediction(k: int) -> None:
    pred, gt = video([1, 1, 1])
    res = vpq(pred, gt, k=k, thing_categories={THING})
    assert res.vpq == 1.0 and res.vpq_things == 1.0 and res.vpq_stuff == 1.0
    assert res.per_k[k].stats[THING].tp == 3 - k + 1  # one TP per window


def test_vpq_id_change_mid_video() -> None:
    # Predicted track id changes 1 -> 3 at frame 2 (each thing segment is 8 px per frame).
    # k=1: every frame perfect -> PQ 1.
    # k=2: window [0,1] perfect (thing TP IoU 1, stuff TP IoU 1). Window [1,2]: GT track 16 px,
    #   pred ids 1 and 3 have 8 px each -> IoU 8/16 = 0.5 (not > 0.5) -> FP 2, FN 1.
    #   thing: TP 1, IoU 1, FP 2, FN 1 -> PQ = 1 / (1 + 1 + 0.5) = 0.4; stuff PQ 1 -> 0.7.
    # k=3: one window, GT 24 px; pred id 1 has 16 px -> IoU 2/3 (TP); id 3 (8 px) is FP.
    #   thing PQ = (2/3) / (1 + 0.5) = 4/9; stuff 1 -> (4/9 + 1) / 2 = 13/18.
    pred, gt = video([1, 1, 3])
    res = vpq(pred, gt, k=(1, 2, 3), thing_categories={THING})
    assert res.per_k[1].all.pq == pytest.approx(1.0)
    assert res.per_k[2].things.pq == pytest.approx(0.4)
    assert res.per_k[2].all.pq == pytest.approx(0.7)
    assert res.per_k[3].things.pq == pytest.approx(4 / 9)
    assert res.per_k[3].things.sq == pytest.approx(2 / 3)
    assert res.per_k[3].all.pq == pytest.approx(13 / 18)
    assert res.vpq == pytest.approx((1 + 0.7 + 13 / 18) / 3)
    assert res.vpq_stuff == pytest.approx(1.0)
    # Image PQ does not see the identity change.
    assert pq(pred, gt).all.pq == pytest.approx(1.0)


def test_vpq_k1_equals_image_pq() -> None:
    pred, gt = shifted(2)
    pred2, gt2 = shifted(6)
    frames_p, frames_g = pred + pred2, gt + gt2
    assert vpq(frames_p, frames_g, k=1).vpq == pytest.approx(pq(frames_p, frames_g).all.pq)


def test_vpq_invalid_inputs() -> None:
    pred, gt = video([1, 1])
    with pytest.raises(ValueError, match="window size"):
        vpq(pred, gt, k=3)
    bad = [(pred[0][0], {1: THING, 2: STUFF}), (pred[1][0], {1: STUFF, 2: STUFF})]
    with pytest.raises(ValueError, match="categories"):
        vpq(bad, gt, k=2)

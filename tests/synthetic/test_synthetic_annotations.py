"""Ground truth in standard formats, and scored against itself with ``evaluation``.

Rendering the ground truth back as predictions must give AP = PQ = VPQ = 1; removing or
shifting one instance must give the values computed here by hand from the counts.
"""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from evaluation import mask_ap, pq, vpq
from synthetic.annotations import (
    coco_instances,
    decode_panoptic,
    encode_panoptic,
    instance_ground_truth,
    panoptic_ground_truth,
    panoptic_record,
)
from synthetic.categories import THING_IDS
from synthetic.generator import SyntheticFrame

RECALL_THRESHOLDS = np.linspace(0, 1, 101)  # COCOeval's 101-point interpolation
IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)


def as_predictions(clip: list[SyntheticFrame]) -> list[list[tuple[np.ndarray, int, float]]]:
    return [[(m, c, 1.0) for m, c in instance_ground_truth(f)] for f in clip]


def capped_ap(n: int) -> float:
    """AP of one class with n instances of which n - 1 are found perfectly and one is missed:
    precision 1 up to recall (n - 1) / n, then nothing; 101-point interpolation."""
    return float(np.sum((n - 1) / n >= RECALL_THRESHOLDS)) / 101


def pick_instance(clip: list[SyntheticFrame], min_area: int = 0) -> tuple[int, int, int]:
    """(frame, segment id, class count n) of a thing whose class has an n with 100 (n-1)/n
    not an integer, so no recall threshold sits exactly on (n - 1) / n."""
    counts: dict[int, int] = {}
    for frame in clip:
        for s in frame.things():
            counts[s.category_id] = counts.get(s.category_id, 0) + 1
    for t, frame in enumerate(clip):
        for s in frame.things():
            n = counts[s.category_id]
            if s.area >= max(min_area, 30) and (100 * (n - 1)) % n:
                return t, s.id, n
    raise AssertionError("no suitable instance in the clip")


def test_ground_truth_as_prediction_is_perfect(clip: list[SyntheticFrame]) -> None:
    gt = [instance_ground_truth(f) for f in clip]
    ap = mask_ap(gt, as_predictions(clip))
    assert (ap.ap, ap.ap50, ap.ap75) == (1.0, 1.0, 1.0)

    panoptic = [panoptic_ground_truth(f) for f in clip]
    result = pq(panoptic, panoptic, thing_categories=THING_IDS)
    assert (result.all.pq, result.all.sq, result.all.rq) == (1.0, 1.0, 1.0)
    assert result.things.n >= 4 and result.stuff.n == 4
    video = vpq(panoptic, panoptic, k=(1, 5, 10, 15), thing_categories=THING_IDS)
    assert video.vpq == 1.0 and video.vpq_things == 1.0


def test_removed_instance(clip: list[SyntheticFrame]) -> None:
    t, sid, n = pick_instance(clip)
    category = clip[t].segments[sid].category_id
    gt = [instance_ground_truth(f) for f in clip]
    predictions = as_predictions(clip)
    predictions[t] = [p for p in predictions[t] if not np.array_equal(p[0], clip[t].mask(sid))]
    classes = len({c for frame in gt for _, c in frame})
    ap = mask_ap(gt, predictions)
    assert ap.ap == pytest.approx((classes - 1 + capped_ap(n)) / classes, abs=1e-9)

    # PQ: the removed segment is predicted as void: one FN, the n - 1 others TP with IoU 1, so
    # PQ_c = (n - 1) / ((n - 1) + 0.5); every other class stays at 1.
    truth = [panoptic_ground_truth(f) for f in clip]
    predicted = [(seg.copy(), dict(cats)) for seg, cats in truth]
    seg, cats = predicted[t]
    seg[seg == sid] = 0
    del cats[sid]
    result = pq(predicted, truth, thing_categories=THING_IDS)
    expected = (n - 1) / (n - 1 + 0.5)
    assert result.per_class[category].pq == pytest.approx(expected, abs=1e-12)
    assert result.per_class[category].sq == 1.0
    others = [c.pq for cat, c in result.per_class.items() if cat != category]
    assert others == [1.0] * len(others)
    assert result.all.pq == pytest.approx((len(others) + expected) / (len(others) + 1))


def test_shifted_instance(clip: list[SyntheticFrame]) -> None:
    t, sid, n = pick_instance(clip, min_area=300)
    category = clip[t].segments[sid].category_id
    mask = clip[t].mask(sid)
    shifted = np.zeros_like(mask)
    shifted[:, 3:] = mask[:, :-3]
    iou = (mask & shifted).sum() / (mask | shifted).sum()
    assert np.abs(IOU_THRESHOLDS - iou).min() > 1e-6  # not on a threshold
    predictions = as_predictions(clip)
    predictions[t] = [
        (shifted, c, 0.5) if np.array_equal(m, mask) else (m, c, s) for m, c, s in predictions[t]
    ]
    gt = [instance_ground_truth(f) for f in clip]
    classes = len({c for frame in gt for _, c in frame})
    # At thresholds <= IoU the shifted mask still matches (AP 1); above, it is a false positive
    # ranked last and its object a miss: AP = capped_ap(n).
    class_ap = np.mean([1.0 if iou >= thr else capped_ap(n) for thr in IOU_THRESHOLDS])
    ap = mask_ap(gt, predictions)
    assert ap.ap == pytest.approx((classes - 1 + class_ap) / classes, abs=1e-9)
    assert ap.ap50 == 1.0 and iou > 0.5
    assert category in THING_IDS


def test_identity_switch_lowers_vpq_not_pq(clip: list[SyntheticFrame]) -> None:
    truth = [panoptic_ground_truth(f) for f in clip]
    everywhere = set.intersection(*({s.id for s in f.things()} for f in clip))
    sid = min(everywhere)
    category = clip[0].segments[sid].category_id
    switched = sid // 1000 * 1000 + 999  # same class, a track id nobody has
    predicted = []
    for t, (seg, cats) in enumerate(truth):
        seg, cats = seg.copy(), dict(cats)
        if t >= len(clip) // 2:
            seg[seg == sid] = switched
            cats[switched] = cats.pop(sid)
        predicted.append((seg, cats))
    result = vpq(predicted, truth, k=(1, 5), thing_categories=THING_IDS)
    assert result.per_k[1].all.pq == 1.0  # every frame on its own is still perfect
    assert result.per_k[5].per_class[category].pq < 1.0  # windows across the switch are not
    others = [c.pq for cat, c in result.per_k[5].per_class.items() if cat != category]
    assert others == [1.0] * len(others)


def test_coco_records_round_trip(clip: list[SyntheticFrame]) -> None:
    frame = clip[20]
    records = coco_instances(frame, image_id=3, first_id=10)
    assert [r["id"] for r in records] == list(range(10, 10 + len(frame.things())))
    for record, s in zip(records, frame.things(), strict=True):
        rle = {**record["segmentation"], "counts": record["segmentation"]["counts"].encode()}
        assert np.array_equal(mask_utils.decode(rle).astype(bool), frame.mask(s.id))
        assert record["area"] == s.area == int(mask_utils.area(rle))
        assert record["bbox"] == list(s.bbox) == mask_utils.toBbox(rle).astype(int).tolist()
        assert (record["track_id"], record["category_id"]) == (s.track_id, s.category_id)
    info = panoptic_record(frame, 3, "panoptic/000020.png")["segments_info"]
    assert {i["id"] for i in info} == set(frame.segments)


def test_panoptic_png_encoding() -> None:
    ids = np.array([[0, 1, 255], [256, 11000, (1 << 24) - 1]], np.int32)
    rgb = encode_panoptic(ids)
    assert rgb[1, 1].tolist() == [11000 % 256, 11000 // 256, 0]
    assert np.array_equal(decode_panoptic(rgb), ids)
    with pytest.raises(ValueError):
        encode_panoptic(np.array([[1 << 24]]))

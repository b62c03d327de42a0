"""Panoptic Quality (PQ) and Video Panoptic Quality (VPQ).

Panoptic inputs are given per frame as a pair ``(segment_map, categories)``:

* ``segment_map``: integer array of shape ``[H, W]`` (int32 in practice) holding a segment id per
  pixel. Id ``0`` is *void* (unlabelled / ignored).
* ``categories``: ``{segment_id: category_id}`` for every non-zero id present in the map.

PQ follows the COCO panoptic definition (Kirillov et al., "Panoptic Segmentation", CVPR 2019, and
the reference ``panopticapi`` implementation):

* A predicted and a ground-truth segment of the same category match when their IoU is strictly
  greater than 0.5 (which makes the matching unique). The union excludes the predicted pixels that
  fall on ground-truth void.
* Unmatched ground-truth segments are false negatives (FN).
* An unmatched predicted segment is a false positive (FP) unless more than half of its pixels lie on
  ground-truth void, in which case it is ignored.
* TP/FP/FN counts and the IoU sum of the TPs are accumulated per category over all frames,
  then ``PQ = sum(IoU) / (TP + FP/2 + FN/2)``, ``SQ = sum(IoU) / TP`` and
  ``RQ = TP / (TP + FP/2 + FN/2)``.
* Averages (all / things / stuff) are unweighted means over the categories with
  ``TP + FP + FN > 0``.

Crowd regions (``iscrowd``) are not supported: mark them as void in the ground truth instead.

VPQ follows Kim et al., "Video Panoptic Segmentation", CVPR 2020 (VPSNet ``eval_vpq``): segment ids
are track ids, consistent across frames. For a window size ``k`` every run of ``k`` consecutive
frames (stride 1) is treated as one spatio-temporal volume, so a segment is the set of pixels with
the same id in all ``k`` frames; TP/FP/FN/IoU are accumulated over all windows and the PQ for ``k``
is computed from them. VPQ is the mean of those PQ values over the given window sizes. With
``k = 1`` VPQ equals image PQ.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

VOID = 0
"""Segment id marking void (ignored) pixels."""

PanopticFrame = tuple[np.ndarray, Mapping[int, int]]
"""``(segment_map [H, W] int, {segment_id: category_id})``."""


@dataclass
class PQStat:
    """Accumulated matching counts for one category.

    Attributes:
        tp: Number of matched (prediction, ground truth) segment pairs.
        fp: Number of unmatched predicted segments not lying mostly on void.
        fn: Number of unmatched ground-truth segments.
        iou: Sum of the IoUs of the true positives.
    """

    tp: int = 0
    fp: int = 0
    fn: int = 0
    iou: float = 0.0

    def __iadd__(self, other: PQStat) -> PQStat:
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn
        self.iou += other.iou
        return self

    @property
    def count(self) -> int:
        """``TP + FP + FN``; categories where this is 0 are left out of averages."""
        return self.tp + self.fp + self.fn


@dataclass(frozen=True)
class ClassPQ:
    """PQ, SQ and RQ of one category (or an average over categories).

    Attributes:
        pq: Panoptic quality, ``sq * rq``.
        sq: Segmentation quality, mean IoU of the true positives (0 when there are none).
        rq: Recognition quality, an F1 score ``TP / (TP + FP/2 + FN/2)``.
        n: For a single category, ``TP + FP + FN``; for an average, the number of categories
            averaged.
    """

    pq: float
    sq: float
    rq: float
    n: int


@dataclass(frozen=True)
class PQResult:
    """Result of :func:`pq`.

    Attributes:
        per_class: ``{category_id: ClassPQ}`` for the categories with ``TP + FP + FN > 0``.
        all: Average over all those categories.
        things: Average over the thing categories among them (``n == 0`` and all values 0 if none,
            or if no thing categories were given).
        stuff: Average over the remaining (stuff) categories.
        stats: Raw accumulated ``{category_id: PQStat}``, including categories with no segments
            that were listed in ``categories``.
    """

    per_class: dict[int, ClassPQ]
    all: ClassPQ
    things: ClassPQ
    stuff: ClassPQ
    stats: dict[int, PQStat] = field(repr=False)


@dataclass(frozen=True)
class VPQResult:
    """Result of :func:`vpq`.

    Attributes:
        vpq: Mean over the window sizes of ``per_k[k].all.pq``.
        vpq_things: Mean over the window sizes of ``per_k[k].things.pq``.
        vpq_stuff: Mean over the window sizes of ``per_k[k].stuff.pq``.
        per_k: ``{k: PQResult}`` accumulated over all windows of ``k`` frames.
    """

    vpq: float
    vpq_things: float
    vpq_stuff: float
    per_k: dict[int, PQResult]


def _check_frame(seg: np.ndarray, cats: Mapping[int, int], what: str) -> np.ndarray:
    seg = np.asarray(seg)
    if not np.issubdtype(seg.dtype, np.integer):
        raise TypeError(f"{what} segment map must be an integer array, got {seg.dtype}")
    if seg.size and seg.min() < 0:
        raise ValueError(f"{what} segment map has negative ids")
    ids = np.unique(seg)
    missing = [int(i) for i in ids if i != VOID and int(i) not in cats]
    if missing:
        raise ValueError(f"{what} segment ids {missing} have no category")
    return seg.astype(np.int64, copy=False)


def pq_stats(
    pred_segments: np.ndarray,
    pred_categories: Mapping[int, int],
    gt_segments: np.ndarray,
    gt_categories: Mapping[int, int],
) -> dict[int, PQStat]:
    """Matches the segments of one frame (or one spatio-temporal volume) and counts TP/FP/FN.

    Args:
        pred_segments: Predicted segment ids, integer array of any shape (``[H, W]`` for an image,
            ``[k, H, W]`` for a video window); ``0`` is void.
        pred_categories: ``{segment_id: category_id}`` for every non-zero predicted id. Entries for
            ids absent from the map are ignored.
        gt_segments: Ground-truth segment ids, same shape as ``pred_segments``; ``0`` is void.
        gt_categories: ``{segment_id: category_id}`` for every non-zero ground-truth id.

    Returns:
        ``{category_id: PQStat}`` for every category with at least one segment in either input.

    Raises:
        ValueError: On shape mismatch, negative ids, or ids without a category.
        TypeError: If a segment map is not an integer array.
    """
    pred = _check_frame(pred_segments, pred_categories, "predicted")
    gt = _check_frame(gt_segments, gt_categories, "ground-truth")
    if pred.shape != gt.shape:
        raise ValueError(f"shape mismatch: prediction {pred.shape} vs ground truth {gt.shape}")

    pred_ids, pred_area = np.unique(pred, return_counts=True)
    gt_ids, gt_area = np.unique(gt, return_counts=True)
    pred_areas = {int(i): int(a) for i, a in zip(pred_ids, pred_area, strict=True)}
    gt_areas = {int(i): int(a) for i, a in zip(gt_ids, gt_area, strict=True)}

    # Intersection areas of every (gt id, pred id) pair, void included.
    offset = int(pred.max(initial=0)) + 1
    pair, inter = np.unique(gt * offset + pred, return_counts=True)
    inters = {(int(p // offset), int(p % offset)): int(a) for p, a in zip(pair, inter, strict=True)}

    stats: dict[int, PQStat] = {}

    def stat(cat: int) -> PQStat:
        return stats.setdefault(cat, PQStat())

    matched_gt: set[int] = set()
    matched_pred: set[int] = set()
    for (g, p), area in inters.items():
        if g == VOID or p == VOID:
            continue
        cat = gt_categories[g]
        if pred_categories[p] != cat:
            continue
        union = pred_areas[p] + gt_areas[g] - area - inters.get((VOID, p), 0)
        iou = area / union
        if iou > 0.5:  # IoU > 0.5 makes the match unique; no assignment needed
            matched_gt.add(g)
            matched_pred.add(p)
            s = stat(cat)
            s.tp += 1
            s.iou += iou

    for g in gt_areas:
        if g == VOID:
            continue
        s = stat(gt_categories[g])
        if g not in matched_gt:
            s.fn += 1
    for p, area in pred_areas.items():
        if p == VOID:
            continue
        s = stat(pred_categories[p])
        if p in matched_pred:
            continue
        if inters.get((VOID, p), 0) / area > 0.5:  # mostly on void: ignored
            continue
        s.fp += 1
    return stats


def _class_pq(s: PQStat) -> ClassPQ:
    denom = s.tp + 0.5 * s.fp + 0.5 * s.fn
    if denom == 0:
        return ClassPQ(0.0, 0.0, 0.0, 0)
    sq = s.iou / s.tp if s.tp else 0.0
    rq = s.tp / denom
    return ClassPQ(pq=s.iou / denom, sq=sq, rq=rq, n=s.count)


def _average(classes: Iterable[ClassPQ]) -> ClassPQ:
    classes = list(classes)
    if not classes:
        return ClassPQ(0.0, 0.0, 0.0, 0)
    n = len(classes)
    return ClassPQ(
        pq=sum(c.pq for c in classes) / n,
        sq=sum(c.sq for c in classes) / n,
        rq=sum(c.rq for c in classes) / n,
        n=n,
    )


def summarize(
    stats: Mapping[int, PQStat],
    thing_categories: Collection[int] = (),
    categories: Collection[int] | None = None,
) -> PQResult:
    """Turns accumulated per-category counts into PQ/SQ/RQ per category and averages.

    Args:
        stats: ``{category_id: PQStat}`` accumulated over frames.
        thing_categories: Category ids that are *things*; every other category is *stuff*.
        categories: If given, only these category ids are evaluated (others are dropped).

    Returns:
        The :class:`PQResult`.
    """
    if categories is not None:
        keep = set(categories)
        stats = {c: s for c, s in stats.items() if c in keep}
        stats = {**{c: PQStat() for c in keep}, **stats}
    per_class = {c: _class_pq(s) for c, s in sorted(stats.items()) if s.count > 0}
    things = set(thing_categories)
    return PQResult(
        per_class=per_class,
        all=_average(per_class.values()),
        things=_average(v for c, v in per_class.items() if c in things),
        stuff=_average(v for c, v in per_class.items() if c not in things),
        stats=dict(stats),
    )


def _accumulate(total: dict[int, PQStat], part: Mapping[int, PQStat]) -> None:
    for cat, s in part.items():
        total.setdefault(cat, PQStat())
        total[cat] += s


def pq(
    predictions: Sequence[PanopticFrame],
    ground_truth: Sequence[PanopticFrame],
    thing_categories: Collection[int] = (),
    categories: Collection[int] | None = None,
) -> PQResult:
    """Panoptic quality over a list of frames.

    Example:
        >>> seg = np.array([[0, 1], [2, 2]], dtype=np.int32)
        >>> pq([(seg, {1: 7, 2: 3})], [(seg, {1: 7, 2: 3})], thing_categories={7}).all.pq
        1.0

    Args:
        predictions: One ``(segment_map, {segment_id: category_id})`` per frame; ``segment_map``
            is an integer array of shape ``[H, W]`` with ``0`` as void.
        ground_truth: Same structure and length as ``predictions``; map shapes must match frame by
            frame.
        thing_categories: Category ids that are *things* (the rest are *stuff*), used only for
            the ``things`` / ``stuff`` averages.
        categories: If given, restrict the evaluation to these category ids.

    Returns:
        :class:`PQResult` with per-category and averaged PQ/SQ/RQ.

    Raises:
        ValueError: If the two sequences differ in length, or on an invalid frame (see
            :func:`pq_stats`).
    """
    if len(predictions) != len(ground_truth):
        raise ValueError(
            f"{len(predictions)} predicted frames vs {len(ground_truth)} ground-truth frames"
        )
    total: dict[int, PQStat] = {}
    for (pseg, pcat), (gseg, gcat) in zip(predictions, ground_truth, strict=True):
        _accumulate(total, pq_stats(pseg, pcat, gseg, gcat))
    return summarize(total, thing_categories, categories)


def _merge_categories(frames: Sequence[PanopticFrame], what: str) -> dict[int, int]:
    merged: dict[int, int] = {}
    for _, cats in frames:
        for sid, cat in cats.items():
            if merged.setdefault(int(sid), cat) != cat:
                raise ValueError(
                    f"{what} track id {sid} has categories {merged[int(sid)]} and {cat}"
                )
    return merged


def vpq(
    predictions: Sequence[PanopticFrame],
    ground_truth: Sequence[PanopticFrame],
    k: int | Sequence[int] = (1, 5, 10, 15),
    thing_categories: Collection[int] = (),
    categories: Collection[int] | None = None,
) -> VPQResult:
    """Video panoptic quality of one video (Kim et al., CVPR 2020).

    For each window size ``k``, every window of ``k`` consecutive frames (stride 1, so
    ``T - k + 1`` windows) is stacked into a ``[k, H, W]`` volume and matched as one "image" with
    :func:`pq_stats`; counts are accumulated over all windows and turned into PQ. VPQ is the mean of
    the per-``k`` PQ. To evaluate several videos as VPSNet does, sum the per-``k`` stats
    (``per_k[k].stats``) of every video and pass each sum to :func:`summarize`.

    Args:
        predictions: ``T`` frames ``(segment_map [H, W] int, {track_id: category_id})``; a track id
            must keep the same id (and category) in every frame; ``0`` is void.
        ground_truth: ``T`` ground-truth frames, same structure and shapes.
        k: Window size or sizes (each in ``1..T``).
        thing_categories: Category ids that are *things* (the rest are *stuff*).
        categories: If given, restrict the evaluation to these category ids.

    Returns:
        :class:`VPQResult` with the mean VPQ and the per-``k`` :class:`PQResult`.

    Raises:
        ValueError: If lengths differ, a window size is out of range, or a track id changes
            category within a window.
    """
    if len(predictions) != len(ground_truth):
        raise ValueError(
            f"{len(predictions)} predicted frames vs {len(ground_truth)} ground-truth frames"
        )
    n_frames = len(predictions)
    ks = [k] if isinstance(k, int) else list(k)
    if not ks:
        raise ValueError("no window size given")
    per_k: dict[int, PQResult] = {}
    for size in ks:
        if not 1 <= size <= n_frames:
            raise ValueError(f"window size {size} not in 1..{n_frames}")
        total: dict[int, PQStat] = {}
        for start in range(n_frames - size + 1):
            pw = predictions[start : start + size]
            gw = ground_truth[start : start + size]
            _accumulate(
                total,
                pq_stats(
                    np.stack([np.asarray(s) for s, _ in pw]),
                    _merge_categories(pw, "predicted"),
                    np.stack([np.asarray(s) for s, _ in gw]),
                    _merge_categories(gw, "ground-truth"),
                ),
            )
        per_k[size] = summarize(total, thing_categories, categories)
    n = len(per_k)
    return VPQResult(
        vpq=sum(r.all.pq for r in per_k.values()) / n,
        vpq_things=sum(r.things.pq for r in per_k.values()) / n,
        vpq_stuff=sum(r.stuff.pq for r in per_k.values()) / n,
        per_k=per_k,
    )

"""Offline evaluation metrics (numpy, plus pycocotools and OpenCV).

This package deliberately depends on nothing else in FrameGraph (no ``pipeline``, ``stages`` or
``models`` imports) so it can be used on saved outputs without building a pipeline.

Modules:
    panoptic: Panoptic Quality (PQ/SQ/RQ, Kirillov et al.) and Video PQ (VPQ, Kim et al.).
    tracking: CLEAR-MOT identity switches.
    coco: COCO mask AP and box AP via pycocotools.
    densepose: DensePose part IoU, foreground IoU and UV error on IUV images (no GPS).
    temporal: Temporal warping error of a video (Lai et al.), with DIS optical flow (OpenCV).
"""

from evaluation.coco import MaskAP, box_ap, mask_ap
from evaluation.densepose import DensePoseScores, densepose_scores, split_iuv
from evaluation.panoptic import (
    ClassPQ,
    PQResult,
    PQStat,
    VPQResult,
    pq,
    pq_stats,
    summarize,
    vpq,
)
from evaluation.temporal import (
    backward_flow,
    occlusion_mask,
    warp,
    warping_error,
    warping_errors,
)
from evaluation.tracking import id_switch_events, id_switches

__all__ = [
    "ClassPQ",
    "DensePoseScores",
    "MaskAP",
    "PQResult",
    "PQStat",
    "VPQResult",
    "backward_flow",
    "box_ap",
    "densepose_scores",
    "id_switch_events",
    "id_switches",
    "mask_ap",
    "occlusion_mask",
    "pq",
    "pq_stats",
    "split_iuv",
    "summarize",
    "vpq",
    "warp",
    "warping_error",
    "warping_errors",
]

"""Offline evaluation metrics (pure numpy + pycocotools).

This package deliberately depends on nothing else in FrameGraph (no ``pipeline``, ``stages`` or
``models`` imports) so it can be used on saved outputs without building a pipeline.

Modules:
    panoptic: Panoptic Quality (PQ/SQ/RQ, Kirillov et al.) and Video PQ (VPQ, Kim et al.).
    tracking: CLEAR-MOT identity switches.
    coco: COCO mask AP via pycocotools.
"""

from evaluation.coco import MaskAP, mask_ap
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
from evaluation.tracking import id_switch_events, id_switches

__all__ = [
    "ClassPQ",
    "MaskAP",
    "PQResult",
    "PQStat",
    "VPQResult",
    "id_switch_events",
    "id_switches",
    "mask_ap",
    "pq",
    "pq_stats",
    "summarize",
    "vpq",
]

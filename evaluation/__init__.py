"""Offline evaluation metrics (numpy, plus pycocotools and OpenCV).

This package deliberately depends on nothing else in FrameGraph (no ``pipeline`` or ``stages``
imports, and of ``models`` only ``models.flow``, the DIS flow the runtime uses too) so it can be
used on saved outputs without building a pipeline. Nothing at run time imports it.

Modules:
    panoptic: Panoptic Quality (PQ/SQ/RQ, Kirillov et al.) and Video PQ (VPQ, Kim et al.).
    tracking: CLEAR-MOT identity switches.
    coco: COCO mask AP and box AP via pycocotools.
    densepose: DensePose part IoU, foreground IoU and UV error on IUV images (no GPS).
    temporal: Temporal warping error of a video (Lai et al.), with ``models.flow``'s DIS flow.
"""

import importlib

# Each name's module, imported on first use: the warping error, say, needs no pycocotools.
_MODULES = {
    "coco": ("MaskAP", "box_ap", "mask_ap"),
    "densepose": ("DensePoseScores", "densepose_scores", "split_iuv"),
    "panoptic": ("ClassPQ", "PQResult", "PQStat", "VPQResult", "pq", "pq_stats", "summarize",
                 "vpq"),
    "temporal": ("warping_error", "warping_errors"),
    "tracking": ("id_switch_events", "id_switches"),
}  # fmt: skip
_HOME = {name: module for module, names in _MODULES.items() for name in names}


def __getattr__(name: str):
    if name not in _HOME:
        raise AttributeError(f"module 'evaluation' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"evaluation.{_HOME[name]}"), name)
    globals()[name] = value
    return value


__all__ = [
    "ClassPQ",
    "DensePoseScores",
    "MaskAP",
    "PQResult",
    "PQStat",
    "VPQResult",
    "box_ap",
    "densepose_scores",
    "id_switch_events",
    "id_switches",
    "mask_ap",
    "pq",
    "pq_stats",
    "split_iuv",
    "summarize",
    "vpq",
    "warping_error",
    "warping_errors",
]

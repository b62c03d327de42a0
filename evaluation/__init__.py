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

import importlib

# Each name's module, imported on first use: ``evaluation.temporal`` (DIS flow, used by the
# translation and DensePose code at run time) must not pull in pycocotools.
_MODULES = {
    "coco": ("MaskAP", "box_ap", "mask_ap"),
    "densepose": ("DensePoseScores", "densepose_scores", "split_iuv"),
    "panoptic": ("ClassPQ", "PQResult", "PQStat", "VPQResult", "pq", "pq_stats", "summarize",
                 "vpq"),
    "temporal": ("backward_flow", "occlusion_mask", "warp", "warping_error", "warping_errors"),
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

"""Ground truth of a :class:`SyntheticFrame` in standard formats.

* COCO instances (one record per visible thing; ``segmentation`` is a compressed RLE from
  pycocotools, plus a ``track_id`` field as in video instance segmentation data sets).
* COCO panoptic (``segments_info`` per frame and the id-coded PNG: ``id = R + 256 G + 256² B``).
* The in-memory inputs of ``evaluation`` (mask AP, PQ / VPQ), so ground truth can be scored
  against predictions without a round trip through files.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.results import rle_json
from synthetic.categories import CATEGORIES
from synthetic.generator import SyntheticFrame


def coco_categories() -> list[dict[str, Any]]:
    """COCO ``categories`` with panoptic fields (``isthing``, ``color`` as RGB)."""
    return [
        {"id": c.id, "name": c.name, "isthing": int(c.isthing), "color": list(c.colour[::-1])}
        for c in CATEGORIES
    ]


def coco_instances(frame: SyntheticFrame, image_id: int, first_id: int) -> list[dict[str, Any]]:
    """COCO instance annotations of the visible things of a frame.

    Args:
        frame: the frame.
        image_id: COCO image id of the frame.
        first_id: annotation id of the first record (ids count up from it).

    Returns:
        One record per thing segment: ``id, image_id, category_id, track_id, segmentation (RLE),
        area, bbox (x, y, w, h), iscrowd``.
    """
    return [
        {
            "id": first_id + n,
            "image_id": image_id,
            "category_id": s.category_id,
            "track_id": s.track_id,
            "segmentation": rle_json(frame.mask(s.id)),
            "area": s.area,
            "bbox": list(s.bbox),
            "iscrowd": 0,
        }
        for n, s in enumerate(frame.things())
    ]


def panoptic_record(frame: SyntheticFrame, image_id: int, file_name: str) -> dict[str, Any]:
    """The COCO panoptic annotation of a frame (``file_name`` is its id-coded PNG)."""
    return {
        "image_id": image_id,
        "file_name": file_name,
        "segments_info": [
            {
                "id": s.id,
                "category_id": s.category_id,
                "iscrowd": 0,
                "bbox": list(s.bbox),
                "area": s.area,
            }
            for _, s in sorted(frame.segments.items())
        ],
    }


def encode_panoptic(panoptic: np.ndarray) -> np.ndarray:
    """COCO panoptic PNG pixels uint8 [H, W, 3] RGB of a segment map int [H, W] (ids < 2²⁴)."""
    ids = panoptic.astype(np.uint32)
    if ids.max(initial=0) >= 1 << 24:
        raise ValueError("segment ids must be below 2**24 for the PNG encoding")
    return np.stack([ids & 255, (ids >> 8) & 255, (ids >> 16) & 255], -1).astype(np.uint8)


def decode_panoptic(rgb: np.ndarray) -> np.ndarray:
    """Segment map int32 [H, W] of COCO panoptic PNG pixels uint8 [H, W, 3] RGB."""
    rgb = rgb.astype(np.int32)
    return rgb[..., 0] + (rgb[..., 1] << 8) + (rgb[..., 2] << 16)


def instance_ground_truth(frame: SyntheticFrame) -> list[tuple[np.ndarray, int]]:
    """``[(mask bool [H, W], category_id)]`` per visible thing: ``evaluation.mask_ap`` input."""
    return [(frame.mask(s.id), s.category_id) for s in frame.things()]


def panoptic_ground_truth(frame: SyntheticFrame) -> tuple[np.ndarray, dict[int, int]]:
    """``(segment map, {segment id: category id})``: ``evaluation.pq`` / ``vpq`` input.

    Thing segment ids carry the track id, so the same pairs serve VPQ.
    """
    return frame.panoptic, {sid: s.category_id for sid, s in frame.segments.items()}

"""Result types shared by models, renderers and sinks.

Plain dataclasses of numpy arrays. Each has ``to_json()`` giving what the JSONL
sink writes; models produce them and renderers read them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np


def rle_json(mask: np.ndarray) -> dict[str, Any]:
    """COCO compressed RLE of a bool [H, W] mask, JSON-ready (``counts`` as text).

    Returns:
        ``{"size": [H, W], "counts": str}``; ``pycocotools.mask.decode`` reads it back after
        ``counts`` is encoded to bytes.

    Raises:
        ValueError: If ``mask`` is not [H, W].
    """
    # Imported here, not at the top: only a sink writing masks needs pycocotools, and the
    # result types are imported by every stage.
    from pycocotools import mask as mask_utils

    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"masks must be [H, W], got shape {mask.shape}")
    encoded = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in encoded["size"]], "counts": encoded["counts"].decode("ascii")}


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes a [N, 4] and b [M, 4] (xyxy) -> [N, M]; boxes without area overlap nothing."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


@dataclass
class Detections:
    """Objects found in one frame.

    Attributes:
        boxes: float32 [N, 4], xyxy, pixels of the frame.
        scores: float32 [N], confidence in [0, 1].
        class_ids: int64 [N].
        track_ids: int64 [N] or None, stable over time when a tracker ran (the ``track``
            stage); -1 for a detection on no track.
        masks: bool [N, H, W] full-frame masks, or None.
        landmarks: float32 [N, K, 2] pixel coordinates, or None.
        class_names: optional names indexed by class id.
    """

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    track_ids: np.ndarray | None = None
    masks: np.ndarray | None = None
    landmarks: np.ndarray | None = None
    class_names: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        n = len(self.boxes)
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(n)
        self.class_ids = np.asarray(self.class_ids, dtype=np.int64).reshape(n)
        if self.track_ids is not None:
            self.track_ids = np.asarray(self.track_ids, dtype=np.int64).reshape(n)

    def __len__(self) -> int:
        return len(self.boxes)

    @classmethod
    def empty(cls) -> Detections:
        """No objects."""
        return cls(np.zeros((0, 4)), np.zeros(0), np.zeros(0))

    def label(self, i: int) -> str:
        """Human-readable class of object ``i``."""
        cid = int(self.class_ids[i])
        return self.class_names[cid] if cid < len(self.class_names) else str(cid)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "boxes": np.round(self.boxes.astype(float), 2).tolist(),
            "scores": np.round(self.scores.astype(float), 4).tolist(),
            "classes": [self.label(i) for i in range(len(self))],
        }
        if self.track_ids is not None:
            out["track_ids"] = self.track_ids.tolist()
        if self.landmarks is not None:
            out["landmarks"] = np.round(self.landmarks.astype(float), 2).tolist()
        if self.masks is not None:
            out["masks"] = [rle_json(m) for m in self.masks]
        return out


@dataclass
class PanopticSegmentation:
    """Things and stuff of one frame.

    Attributes:
        segment_map: int32 [H, W], segment id per pixel (0 = void).
        segments: segment id -> {"class": int, "is_thing": bool, "track_id": int | None,
            "area": int}.
    """

    segment_map: np.ndarray
    segments: dict[int, dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return {
            "segments": {str(k): v for k, v in self.segments.items()},
            "rle": {str(k): rle_json(self.segment_map == k) for k in self.segments},
        }


@dataclass
class DensePoseResult:
    """Per person: box and the body-part index I plus U, V over the box.

    Attributes:
        boxes: float32 [N, 4], xyxy pixels.
        parts: list of N uint8 [h_i, w_i] part indices 0..24 (0 = background).
        uv: list of N float32 [2, h_i, w_i], U and V in [0, 1].
        scores: float32 [N] detection scores, or None; lists are best first.
        track_ids: int64 [N] or None: each person's track (the ``track`` stage), -1 on none.
    """

    boxes: np.ndarray
    parts: list[np.ndarray]
    uv: list[np.ndarray]
    scores: np.ndarray | None = None
    track_ids: np.ndarray | None = None

    def to_iuv_image(self, height: int, width: int) -> np.ndarray:
        """Paste every person into one uint8 [H, W, 3] IUV image (I, U*255, V*255).

        Where people overlap, the earlier one in the lists (the higher-scoring one) wins, and
        only a person's own pixels (I > 0) are written, so a box's background never hides
        somebody else.
        """
        import cv2

        iuv = np.zeros((height, width, 3), np.uint8)
        order = list(zip(self.boxes, self.parts, self.uv, strict=True))
        for box, part, uv in reversed(order):  # best last: it is painted over the others
            x0, y0, x1, y1 = np.round(box).astype(int)
            x0, y0 = max(x0, 0), max(y0, 0)
            x1, y1 = min(x1, width), min(y1, height)
            if x1 <= x0 or y1 <= y0:
                continue
            size = (x1 - x0, y1 - y0)
            i = cv2.resize(part, size, interpolation=cv2.INTER_NEAREST)
            u = cv2.resize(uv[0], size, interpolation=cv2.INTER_LINEAR)
            v = cv2.resize(uv[1], size, interpolation=cv2.INTER_LINEAR)
            fg = i > 0
            region = iuv[y0:y1, x0:x1]
            region[fg] = np.stack([i, u * 255, v * 255], -1)[fg].astype(np.uint8)
        return iuv

    def to_json(self) -> dict[str, Any]:
        """Boxes, scores and each person's quantised IUV over its box (detectron2's
        (I, U*255, V*255) uint8 layout) as a base64 PNG."""
        import base64

        import cv2

        pngs = []
        for part, uv in zip(self.parts, self.uv, strict=True):
            iuv = np.dstack([part, np.clip(np.rint(np.moveaxis(uv, 0, -1) * 255), 0, 255)])
            ok, data = cv2.imencode(".png", iuv.astype(np.uint8))
            pngs.append(base64.b64encode(data.tobytes()).decode("ascii") if ok else None)
        out: dict[str, Any] = {"boxes": np.round(self.boxes.astype(float), 2).tolist()}
        if self.scores is not None:
            out["scores"] = np.round(self.scores.astype(float), 4).tolist()
        if self.track_ids is not None:
            out["track_ids"] = np.asarray(self.track_ids).tolist()
        out["iuv_png"] = pngs
        return out


@dataclass(frozen=True)
class Event:
    """Something a tracked object did at one frame: entered or left a zone, crossed a line.

    Attributes:
        kind: ``enter``, ``leave`` or ``cross``.
        source: the frame's source id.
        pts_s: the frame's time in its source's own clock, in seconds.
        wall_time: when the frame was captured, UNIX seconds.
        frame_index: the frame's index in its source.
        track_id: the object's track (the ``track`` stage's id).
        label: the object's class name.
        where: the zone's or line's name.
        direction: for ``cross``: ``in`` or ``out`` (the line's own sides); else None.
        dwell_s: for ``leave``: the seconds of source time it spent in the zone; else None.
        snapshot: a picture of the frame, when one was asked for (its path); else None.
    """

    kind: str
    source: str
    pts_s: float
    wall_time: float
    frame_index: int
    track_id: int
    label: str
    where: str
    direction: str | None = None
    dwell_s: float | None = None
    snapshot: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Every field, None ones left out."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclass
class Analytics:
    """What zones and lines saw at one frame (the ``zones`` stage's result).

    Attributes:
        events: what happened at this frame, in the order it was found.
        occupancy: zone name -> tracks inside it now.
        line_counts: line name -> direction (``in`` / ``out``) -> label -> crossings so far
            (per source, since it started).
    """

    events: list[Event] = field(default_factory=list)
    occupancy: dict[str, int] = field(default_factory=dict)
    line_counts: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"events": [e.to_json() for e in self.events], "occupancy": self.occupancy,
                "line_counts": self.line_counts}  # fmt: skip


def frame_events(results: dict[str, Any]) -> list[Event]:
    """Every event among a frame's results (of each ``Analytics`` in it, in stage order)."""
    return [e for r in results.values() if isinstance(r, Analytics) for e in r.events]

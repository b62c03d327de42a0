"""Annotators: one verb, ``annotate(image, result) -> image``, drawing in place on
an image the caller owns."""

from __future__ import annotations

import cv2
import numpy as np

from pipeline.results import Detections

PALETTE = np.array(
    [(56, 56, 255), (151, 157, 255), (31, 112, 255), (29, 178, 255), (49, 210, 207),
     (10, 249, 72), (23, 204, 146), (134, 219, 61), (52, 147, 26), (187, 212, 0),
     (168, 153, 44), (255, 194, 0), (147, 69, 52), (255, 115, 100), (236, 24, 0),
     (255, 56, 132), (133, 0, 82), (255, 56, 203), (200, 149, 255), (199, 55, 255)],
    dtype=np.uint8,
)  # fmt: skip
"""BGR colours, indexed by track id (or class id when untracked)."""


def colour(i: int) -> tuple[int, int, int]:
    """Stable BGR colour for an id."""
    b, g, r = PALETTE[int(i) % len(PALETTE)]
    return int(b), int(g), int(r)


class DetectionAnnotator:
    """Boxes, labels with scores, optional masks (alpha blended) and landmarks.

    Args:
        thickness: box line width in pixels.
        mask_alpha: opacity of instance masks.
    """

    def __init__(self, thickness: int = 2, mask_alpha: float = 0.45) -> None:
        self.thickness = thickness
        self.mask_alpha = mask_alpha

    def annotate(self, image: np.ndarray, detections: Detections) -> np.ndarray:
        ids = detections.track_ids if detections.track_ids is not None else detections.class_ids
        if detections.masks is not None and len(detections):
            overlay = image.copy()
            for mask, i in zip(detections.masks, ids, strict=True):
                overlay[mask] = colour(i)
            cv2.addWeighted(overlay, self.mask_alpha, image, 1 - self.mask_alpha, 0, dst=image)
        for n, (box, i) in enumerate(zip(detections.boxes.astype(int), ids, strict=True)):
            x0, y0, x1, y1 = (int(v) for v in box)
            c = colour(i)
            cv2.rectangle(image, (x0, y0), (x1, y1), c, self.thickness)
            label = f"{detections.label(n)} {detections.scores[n]:.2f}"
            if detections.track_ids is not None:
                label = f"#{int(detections.track_ids[n])} {label}"
            (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
            cv2.rectangle(image, (x0, max(y0 - th - 6, 0)), (x0 + tw + 4, max(y0, th + 6)), c, -1)
            cv2.putText(image, label, (x0 + 2, max(y0 - 4, th + 2)), cv2.FONT_HERSHEY_SIMPLEX,
                        0.5, (255, 255, 255), 1, cv2.LINE_AA)  # fmt: skip
            if detections.landmarks is not None:
                for x, y in detections.landmarks[n].astype(int):
                    cv2.circle(image, (int(x), int(y)), 2, (0, 255, 255), -1)
        return image

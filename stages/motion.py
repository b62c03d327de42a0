"""Moving-object detection by background subtraction (OpenCV MOG2).

A model-free detector: it finds what moves, per source, and reports boxes as
``Detections``. It needs no weights, so it drives the default job and the
runtime tests on real video.
"""

from __future__ import annotations

import cv2
import numpy as np

from pipeline.config import register
from pipeline.frame import Frame
from pipeline.results import Detections
from pipeline.stage import Stage


@register("motion")
class MotionDetector(Stage):
    """Boxes around moving regions.

    Args:
        min_area: smallest box kept, as a fraction of the frame area.
        scale: work on a frame downscaled by this factor (speed).
        history: frames the background model remembers.
        threshold: MOG2 variance threshold (higher = less sensitive).
    """

    stateful = True
    produces = (Detections,)

    def __init__(
        self,
        min_area: float = 0.001,
        scale: float = 0.5,
        history: int = 200,
        threshold: float = 32.0,
    ) -> None:
        self.min_area = min_area
        self.scale = scale
        self.history = history
        self.threshold = threshold
        self._models: dict[str, cv2.BackgroundSubtractor] = {}
        self._kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))

    def _model(self, source_id: str) -> tuple[cv2.BackgroundSubtractor, bool]:
        """The source's background model, and whether it has seen a frame before."""
        if source_id in self._models:
            return self._models[source_id], True
        model = cv2.createBackgroundSubtractorMOG2(
            history=self.history, varThreshold=self.threshold, detectShadows=False
        )
        self._models[source_id] = model
        return model, False

    def on_source_end(self, source_id: str) -> None:
        self._models.pop(source_id, None)

    def on_gap(self, source_id: str, missing: int) -> None:
        # A long gap means the scene may have changed: learn it anew.
        if missing > self.history // 4:
            self._models.pop(source_id, None)

    def process(self, frame: Frame) -> Frame:
        small = cv2.resize(
            frame.image, None, fx=self.scale, fy=self.scale, interpolation=cv2.INTER_AREA
        )
        model, warm = self._model(frame.source_id)
        mask = model.apply(small)
        if not warm:  # the first frame is all "new": nothing has moved yet
            mask[:] = 0
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, self._kernel)
        mask = cv2.dilate(mask, self._kernel, iterations=2)
        count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        min_pixels = self.min_area * mask.size
        boxes, scores = [], []
        for x, y, w, h, area in stats[1:count]:
            if w * h < min_pixels:
                continue
            boxes.append(np.array([x, y, x + w, y + h], np.float32) / self.scale)
            scores.append(min(area / (w * h), 1.0))
        frame.results[self.name] = Detections(
            np.array(boxes).reshape(-1, 4),
            np.array(scores),
            np.zeros(len(boxes)),
            class_names=("motion",),
        )
        return frame

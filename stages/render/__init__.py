"""Rendering: annotators per result type, and the ``draw`` stage that applies them."""

from __future__ import annotations

import numpy as np

from pipeline.config import register
from pipeline.frame import Frame
from pipeline.results import Detections
from pipeline.stage import Stage
from stages.render import anonymize  # noqa: F401  (registers)
from stages.render.annotators import DetectionAnnotator


@register("draw")
class Draw(Stage):
    """Draws every result it has an annotator for onto a copy of the frame.

    Args:
        results: names of the stages whose results to draw (None = all).
        thickness: line width for boxes.
    """

    def __init__(self, results: list[str] | None = None, thickness: int = 2) -> None:
        self.only = results
        self.annotators = {Detections: DetectionAnnotator(thickness=thickness)}

    def process(self, frame: Frame) -> Frame:
        image: np.ndarray | None = None
        for name, result in frame.results.items():
            annotator = self.annotators.get(type(result))
            if annotator is None or (self.only is not None and name not in self.only):
                continue
            if image is None:
                image = frame.image.copy()  # the source image is shared by branches
            annotator.annotate(image, result)
        if image is not None:
            frame.image = image
        return frame

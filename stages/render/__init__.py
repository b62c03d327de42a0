"""Rendering: annotators per result type, and the ``draw`` stage that applies them."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from pipeline.config import register
from pipeline.frame import Frame
from pipeline.results import DensePoseResult, Detections, PanopticSegmentation
from pipeline.stage import References, Stage
from stages.render import anonymize  # noqa: F401  (registers)
from stages.render.annotators import (
    DetectionAnnotator,
    IUVAnnotator,
    IUVMode,
    PanopticAnnotator,
    ZoneAnnotator,
)
from stages.zones import ZoneAnalytics


@register("draw")
class Draw(Stage):
    """Draws every result it has an annotator for onto a copy of the frame.

    Detections get boxes, labels, masks and landmarks; panoptic segmentations a
    colour per segment; DensePose results their parts or U, V coordinates; the ``zones``
    stage's results its zones (shaded, with their occupancy) and lines (an arrow to their
    ``in`` side, their in / out counts), drawn under everything else.

    Args:
        results: names of the stages whose results to draw (None = all).
        thickness: line width for boxes.
        panoptic_alpha: opacity of panoptic segment colours.
        contours: draw white lines on panoptic segment borders.
        stuff_colours: BGR colour per panoptic stuff class id (others get a stable one).
        iuv_mode: how DensePose results are shown: "parts", "u", "v" or "contours".
        iuv_alpha: opacity of the DensePose colours or lines.
        iuv_boxes: also draw each DensePose person's box and score.
        zone_alpha: opacity of an occupied zone's shading (an empty one's is a third).
    """

    references: ClassVar[References] = {"results": ()}

    def __init__(
        self,
        results: list[str] | None = None,
        thickness: int = 2,
        panoptic_alpha: float = 0.5,
        contours: bool = True,
        stuff_colours: dict[int, tuple[int, int, int]] | None = None,
        iuv_mode: IUVMode = "parts",
        iuv_alpha: float = 0.7,
        iuv_boxes: bool = True,
        zone_alpha: float = 0.35,
    ) -> None:
        self.results = results
        self.annotators = {
            Detections: DetectionAnnotator(thickness=thickness),
            PanopticSegmentation: PanopticAnnotator(panoptic_alpha, contours, stuff_colours),
            DensePoseResult: IUVAnnotator(iuv_mode, iuv_alpha, iuv_boxes),
            ZoneAnalytics: ZoneAnnotator(thickness, zone_alpha),
        }

    def process(self, frame: Frame) -> Frame:
        image: np.ndarray | None = None
        # zones and lines first: the objects in them are drawn over their shading
        results = sorted(frame.results.items(), key=lambda r: not isinstance(r[1], ZoneAnalytics))
        for name, result in results:
            annotator = self.annotators.get(type(result))
            if annotator is None or (self.results is not None and name not in self.results):
                continue
            if image is None:
                image = frame.image.copy()  # the source image is shared by branches
            annotator.annotate(image, result)
        if image is not None:
            frame.image = image
        return frame

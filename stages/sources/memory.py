"""Frames already in memory: for benchmarks and programs that hand the graph their own
arrays (the run leaves decoding out)."""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction

import numpy as np

from pipeline.frame import Frame
from pipeline.stage import Source


class MemorySource(Source):
    """Yields the given BGR uint8 [H, W, 3] images in order, as frames of one source.

    Args:
        images: the frames.
        fps: their rate (PTS step 1/fps).
        source_id: name in results and metrics.
    """

    def __init__(self, images: list[np.ndarray], fps: int = 25, source_id: str = "memory") -> None:
        self.images, self.fps, self.source_id = images, fps, source_id

    def frames(self) -> Iterator[Frame]:
        for i, image in enumerate(self.images):
            yield Frame(image, i, Fraction(1, self.fps), i, self.source_id)

    def expected_frames(self) -> int:
        return len(self.images)

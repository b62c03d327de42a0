"""A folder or glob of still images, played as a video."""

from __future__ import annotations

import glob
import logging
import threading
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import cv2

from pipeline.config import register
from pipeline.errors import SourceError
from pipeline.frame import Frame
from pipeline.stage import Source
from stages.sources.pacing import Pacer

log = logging.getLogger("framegraph")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


@register("images")
class ImageFolderSource(Source):
    """Reads images in name order from a folder or a glob pattern.

    Args:
        path: a folder (its image files) or a glob such as ``shots/*.png``.
        fps: frame rate assigned to the sequence (PTS step 1/fps).
        realtime: pace at ``fps`` like a camera.
        source_id: name in results and metrics.
    """

    def __init__(
        self, path: str, fps: float = 30.0, realtime: bool = False, source_id: str | None = None
    ) -> None:
        self.pattern = path
        self.fps = Fraction(fps).limit_denominator(1001)
        self.live = realtime
        self.source_id = source_id or Path(path.split("*")[0] or ".").name or "images"
        self._files: list[Path] = []
        self._stop = threading.Event()

    def open(self) -> None:
        folder = Path(self.pattern)
        if folder.is_dir():
            files = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
        else:
            files = [Path(p) for p in glob.glob(self.pattern)]
            files = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
        if not files:
            raise SourceError(f"no images found at {self.pattern}")
        self._files = sorted(files)

    def expected_frames(self) -> int | None:
        return len(self._files)

    def request_stop(self) -> None:
        self._stop.set()

    def frames(self) -> Iterator[Frame]:
        time_base = Fraction(1) / self.fps
        pacer = Pacer(self._stop)
        for index, path in enumerate(self._files):
            if self.live and not pacer.wait(index * float(time_base)):
                return
            if self._stop.is_set():
                return
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                log.warning("skipped unreadable image %s", path)
                continue
            yield Frame(image, index, time_base, index, self.source_id)

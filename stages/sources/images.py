"""A folder or glob of still images, played as a video."""

from __future__ import annotations

import glob
import logging
import re
import threading
import warnings
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import cv2
from PIL import Image, UnidentifiedImageError

from pipeline.config import MAX_PIXELS, register
from pipeline.errors import SourceError
from pipeline.frame import Frame
from pipeline.stage import Source
from stages.sources.av_input import check_pixels
from stages.sources.pacing import Pacer

log = logging.getLogger("framegraph")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
# Pillow warns (on stderr) about images over 89 M pixels when it opens them; the sizes are
# checked here against max_pixels, so its warning would only repeat the error as noise.
# A filter set once: catch_warnings() around each open is not thread-safe.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


@register("images")
class ImageFolderSource(Source):
    """Reads images in name order from a folder or a glob pattern.

    Each image's size is read from its header before it is decoded: one over
    ``max_pixels`` is an input error (a few-kilobyte PNG can declare 16384x16384, which
    OpenCV would allocate 800 MB for before finding the data missing).

    Args:
        path: a folder (its image files) or a glob such as ``shots/*.png``.
        fps: frame rate assigned to the sequence (PTS step 1/fps).
        realtime: pace at ``fps`` like a camera.
        source_id: name in results and metrics.
        max_pixels: the largest image accepted, width x height (None: no limit).
    """

    def __init__(
        self,
        path: str,
        fps: float = 30.0,
        realtime: bool = False,
        source_id: str | None = None,
        max_pixels: int | None = MAX_PIXELS,
    ) -> None:
        self.pattern = path
        self.max_pixels = max_pixels
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
        self._header_ok(self._files[0])  # a too large first image fails before the graph runs

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
            image = cv2.imread(str(path), cv2.IMREAD_COLOR) if self._header_ok(path) else None
            if image is None:
                log.warning("skipped unreadable image %s", path)
                continue
            check_pixels(image.shape[1], image.shape[0], self.max_pixels, str(path))
            yield Frame(image, index, time_base, index, self.source_id)

    def _header_ok(self, path: Path) -> bool:
        """Whether the image may be decoded: the size in its header is within ``max_pixels``
        (read by Pillow, which reads no pixels to open it); False if the header cannot be
        read, so nothing unchecked is decoded. Always True without a limit.

        Raises:
            SourceError: the image is larger than ``max_pixels``.
        """
        if self.max_pixels is None:
            return True
        try:
            with Image.open(path) as header:
                width, height = header.size
        except Image.DecompressionBombError as error:
            # Pillow refuses over 2 * MAX_IMAGE_PIXELS (~179 M) before the size can be asked
            # for; its message holds the count.
            found = re.search(r"\((\d+) pixels\)", str(error))
            pixels = int(found.group(1)) if found else None
            if pixels is None or pixels > self.max_pixels:
                raise SourceError(f"{path}: declares {pixels or 'over 179 M'} pixels, over "
                                  f"max_pixels={self.max_pixels}") from None  # fmt: skip
            return True  # a limit raised past Pillow's: the decoded shape is checked
        except (UnidentifiedImageError, OSError, ValueError):
            return False
        check_pixels(width, height, self.max_pixels, str(path))
        return True

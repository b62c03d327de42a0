"""Live frames for the service's web page: ``kind: web`` keeps each source's newest annotated
frame where the page's viewers read it.

The sink only swaps a reference and wakes the viewers, so a viewer that is slow, stalled or
gone never slows the graph: each viewer takes the newest frame when it is ready for one and
skips what it missed. The MJPEG view encodes a frame once, however many viewers watch it.
"""

from __future__ import annotations

import threading

import cv2
import numpy as np

from pipeline.config import register
from pipeline.frame import Frame
from pipeline.stage import Sink


class LiveFeed:
    """One source's newest frame (BGR uint8 [H, W, 3]), numbered, and its JPEG once asked."""

    def __init__(self, source_id: str, quality: int = 80) -> None:
        self.source_id, self.quality = source_id, quality
        self.image: np.ndarray | None = None
        self.number = 0  # frames published so far
        self.ended = False
        self._cond = threading.Condition()
        self._jpeg: tuple[int, bytes] = (0, b"")
        self._jpeg_lock = threading.Lock()

    def publish(self, image: np.ndarray) -> None:
        with self._cond:
            self.image, self.number = image, self.number + 1
            self._cond.notify_all()

    def end(self) -> None:
        with self._cond:
            self.ended = True
            self._cond.notify_all()

    def wait_newer(self, number: int, timeout: float) -> int:
        """Waits up to ``timeout`` s for a frame after frame ``number``; the newest number."""
        with self._cond:
            self._cond.wait_for(lambda: self.number > number or self.ended, timeout)
            return self.number

    def jpeg(self) -> tuple[int, bytes]:
        """(frame number, JPEG bytes) of the newest frame, encoded once per frame."""
        with self._jpeg_lock:
            image, number = self.image, self.number
            if image is not None and self._jpeg[0] != number:
                ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
                if ok:
                    self._jpeg = (number, data.tobytes())
            return self._jpeg


class LiveHub:
    """The feeds of every source, by source id (shared by the sink and the web app)."""

    def __init__(self, quality: int = 80) -> None:
        self.quality = quality
        self.feeds: dict[str, LiveFeed] = {}
        self._lock = threading.Lock()

    def feed(self, source_id: str) -> LiveFeed:
        with self._lock:
            found = self.feeds.get(source_id)
            if found is None or found.ended:
                found = self.feeds[source_id] = LiveFeed(source_id, self.quality)
            return found

    def end(self, source_id: str) -> None:
        with self._lock:
            found = self.feeds.pop(source_id, None)
        if found is not None:
            found.end()


@register("web")
class WebSink(Sink):
    """Hands each source's frames to the web page's viewers (``python run.py --api``).

    Args:
        quality: JPEG quality of the MJPEG view (1-100).
    """

    def __init__(self, quality: int = 80) -> None:
        self.hub = LiveHub(quality)

    def write(self, frame: Frame) -> None:
        self.hub.feed(frame.source_id).publish(frame.image)

    def on_source_end(self, source_id: str) -> None:
        self.hub.end(source_id)

    def close(self) -> None:
        for source_id in list(self.hub.feeds):
            self.hub.end(source_id)

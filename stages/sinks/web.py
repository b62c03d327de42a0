"""Live frames for the service's web page: ``kind: web`` keeps each source's newest annotated
frame where the page's viewers read it, and the recent events and counts of the zones and
lines its frames carry (``GET /api/events``, the tiles' counts).

The sink only swaps a reference and wakes the viewers, so a viewer that is slow, stalled or
gone never slows the graph: each viewer takes the newest frame when it is ready for one and
skips what it missed. The MJPEG view encodes a frame once, however many viewers watch it.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

import cv2
import numpy as np

from pipeline.config import register
from pipeline.frame import Frame
from pipeline.results import Analytics, Event
from pipeline.stage import Sink

RECENT_EVENTS = 1000
"""Events a hub keeps for ``GET /api/events`` (the oldest go first)."""


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
    """The feeds of every source, by source id (shared by the sink and the web app), and
    the events and counts of zones and lines seen in their frames."""

    def __init__(self, quality: int = 80) -> None:
        self.quality = quality
        self.feeds: dict[str, LiveFeed] = {}
        self.events: deque[Event] = deque(maxlen=RECENT_EVENTS)
        self.counts: dict[str, dict[str, Any]] = {}
        """Per source: the newest ``occupancy`` and ``line_counts`` of each zones stage."""
        self._lock = threading.Lock()

    def note(self, source_id: str, found: list[Analytics]) -> None:
        """Keeps a frame's events and its newest counts (occupancy and line counts)."""
        with self._lock:
            for analytics in found:
                self.events.extend(analytics.events)
            self.counts[source_id] = {
                "occupancy": {k: v for a in found for k, v in a.occupancy.items()},
                "line_counts": {k: v for a in found for k, v in a.line_counts.items()},
            }

    def recent_events(
        self, since: float | None = None, limit: int = 100, source: str | None = None
    ) -> list[Event]:
        """The newest ``limit`` events kept (oldest first), of ``source`` only when given,
        captured after ``since`` (UNIX seconds) when given."""
        with self._lock:
            kept = list(self.events)
        chosen = [e for e in kept if (source is None or e.source == source)
                  and (since is None or e.wall_time > since)]  # fmt: skip
        return chosen[-limit:] if limit > 0 else []

    def feed(self, source_id: str) -> LiveFeed:
        with self._lock:
            found = self.feeds.get(source_id)
            if found is None or found.ended:
                found = self.feeds[source_id] = LiveFeed(source_id, self.quality)
            return found

    def end(self, source_id: str) -> None:
        with self._lock:
            found = self.feeds.pop(source_id, None)
            self.counts.pop(source_id, None)  # a stream added again starts from nothing
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
        found = [r for r in frame.results.values() if isinstance(r, Analytics)]
        if found:
            self.hub.note(frame.source_id, found)
        self.hub.feed(frame.source_id).publish(frame.image)

    def on_source_end(self, source_id: str) -> None:
        self.hub.end(source_id)

    def close(self) -> None:
        for source_id in list(self.hub.feeds):
            self.hub.end(source_id)

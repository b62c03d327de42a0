"""A stage for the tests of events in the service: ``kind: test_events`` gives every frame
an ``Analytics`` with a line crossing every few frames (a module of its own, imported under
one name, so the kind is registered once)."""

from __future__ import annotations

import time

from pipeline.config import register
from pipeline.frame import Frame
from pipeline.results import Analytics, Event
from pipeline.stage import Stage

EVERY = 5
"""The test stage's event: a crossing of line ``door`` every 5th frame of each source."""


@register("test_events")
class CrossingsEveryFewFrames(Stage):
    """Gives every frame an ``Analytics``: a crossing of ``door`` by a new track every
    ``EVERY`` frames (``in`` then ``out`` in turn), the counts so far and one zone."""

    def __init__(self) -> None:
        self.crossed: dict[str, int] = {}

    def process(self, frame: Frame) -> Frame | None:
        events = []
        if frame.index % EVERY == 0:
            n = self.crossed[frame.source_id] = self.crossed.get(frame.source_id, 0) + 1
            events.append(Event(
                "cross", frame.source_id, frame.index / 25, time.time(), frame.index, n,
                "person", "door", direction="in" if n % 2 else "out",
            ))  # fmt: skip
        n = self.crossed.get(frame.source_id, 0)
        counts = {"door": {"in": {"person": (n + 1) // 2}, "out": {"person": n // 2}}}
        frame.results["zones"] = Analytics(events, {"lot": frame.index % 3}, counts)
        return frame

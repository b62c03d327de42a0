"""The unit that flows through the graph."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np


@dataclass
class Frame:
    """One video frame and everything the graph has learnt about it.

    Identity is ``(source_id, index)``; time is ``pts * time_base`` seconds in the
    source's own clock. The image is shared between fan-out branches: a stage that
    changes pixels must assign a new array to ``image`` instead of writing into it.

    Attributes:
        image: uint8 [H, W, 3], BGR.
        pts: presentation timestamp in ``time_base`` units (source PTS, or
            monotonic capture time for live sources that have none).
        time_base: seconds per ``pts`` tick.
        index: 0-based position in the source's output, counting dropped frames,
            so a gap in ``index`` means frames were dropped upstream.
        source_id: name of the source that produced the frame.
        capture_time: ``time.monotonic()`` when the source produced it; the
            end-to-end latency is measured from here.
        results: model outputs keyed by the producing stage's name.
    """

    image: np.ndarray
    pts: int
    time_base: Fraction
    index: int
    source_id: str
    capture_time: float = field(default_factory=time.monotonic)
    results: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, int]:
        """``(source_id, index)``: the identity joins match on."""
        return (self.source_id, self.index)

    @property
    def time(self) -> float:
        """Presentation time in seconds."""
        return float(self.pts * self.time_base)

    def branch_copy(self) -> Frame:
        """A copy for one fan-out branch: same image array, its own results dict."""
        return Frame(
            image=self.image,
            pts=self.pts,
            time_base=self.time_base,
            index=self.index,
            source_id=self.source_id,
            capture_time=self.capture_time,
            results=dict(self.results),
        )


@dataclass(frozen=True)
class EndOfStream:
    """Control item: the upstream node named ``sender`` will send nothing more."""

    sender: str


@dataclass(frozen=True)
class SourceEnded:
    """Control item: the source ``source_id`` (a ``Frame.source_id``) has ended or was
    removed; it follows that source's last frame down every edge, so each stage has seen
    all of the source's frames when it arrives (``Stage.on_source_end``)."""

    source_id: str

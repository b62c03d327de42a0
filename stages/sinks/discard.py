"""Discards frames (benchmarks, or runs that only want metrics or events).

Named ``discard``, not ``null``: YAML reads a bare ``null`` as nothing."""

from __future__ import annotations

from pipeline.config import register
from pipeline.frame import Frame
from pipeline.stage import Sink


@register("discard")
class DiscardSink(Sink):
    """Accepts every frame and keeps nothing."""

    def write(self, frame: Frame) -> None:
        pass

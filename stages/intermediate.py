"""What a model stage's parts hand each other inside ``frame.results[stage name]``."""

from __future__ import annotations

from typing import TypeVar

from pipeline.errors import ConfigError
from pipeline.frame import Frame

T = TypeVar("T")


def intermediate(frame: Frame, key: str, kind: type[T], stage: str) -> T:
    """``frame.results[key]``, which must be a ``kind`` (a config error otherwise: the graph
    wires ``stage`` to the wrong upstream stage)."""
    value = frame.results.get(key)
    if not isinstance(value, kind):
        raise ConfigError(f"stage {stage!r}: no {kind.__name__} from stage {key!r} on the frame")
    return value

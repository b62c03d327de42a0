"""What every event output shares: it reads the frame's ``Analytics`` and handles each of
its events, and it writes an event as the same JSON everywhere."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from pipeline.frame import Frame
from pipeline.results import Analytics, Event, frame_events
from pipeline.stage import Sink


def _plain(value: Any) -> Any:
    # A stage may leave numpy scalars in an event (a track id read out of an int64 array);
    # JSON has no such type, so they are written as the Python number they hold.
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def event_text(payload: Event | list[Event]) -> str:
    """An event (``Event.to_json()``), or a list of them (a JSON array), as one line of
    JSON text."""
    data = [e.to_json() for e in payload] if isinstance(payload, list) else payload.to_json()
    return json.dumps(data, default=_plain)


class EventSink(Sink):
    """An output of events: ``write`` hands each event among the frame's results (every
    ``Analytics``, in stage order) to ``emit``; frames without events cost nothing more."""

    consumes = (Analytics,)

    def write(self, frame: Frame) -> None:
        for event in frame_events(frame.results):
            self.emit(event)

    def emit(self, event: Event) -> None:
        """Handle one event."""
        raise NotImplementedError

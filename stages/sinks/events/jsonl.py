"""Events as JSON Lines: one line per event, in the order the graph found them."""

from __future__ import annotations

from typing import IO

from pipeline.config import register
from pipeline.results import Event
from stages.sinks.events.base import EventSink, event_text
from stages.sinks.jsonl import close_lines, open_lines


@register("event_log")
class EventLogSink(EventSink):
    """Appends every event as a line of JSON (``Event.to_json()``) to a file.

    Each line is flushed as it is written: a reader can follow the file live, and a killed
    process loses no event it had logged (the line is in the operating system's hands).
    A path holding ``{source}`` gives one file per source (``pipeline.per_source``).

    Args:
        path: output file (``-`` for standard output).
        append: add to an existing file instead of starting it afresh.
    """

    def __init__(self, path: str, append: bool = False) -> None:
        self.path = path
        self.append = append
        self.events = 0
        self._file: IO[str] | None = None
        self._opened = False

    def open(self) -> None:
        self._file = open_lines(self.path, self.append)
        self._opened = self.path != "-"

    def written(self) -> list[str]:
        return [self.path] if self._opened else []

    def emit(self, event: Event) -> None:
        self._file.write(event_text(event) + "\n")  # type: ignore[union-attr]
        self._file.flush()  # type: ignore[union-attr]
        self.events += 1

    def status(self) -> dict[str, int]:
        return {"events": self.events}

    def close(self) -> None:
        close_lines(self._file, self.path)
        self._file = None

"""Results as JSON Lines: one line per frame with every result that has ``to_json``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import IO

from pipeline.config import register
from pipeline.errors import SinkError
from pipeline.frame import Frame
from pipeline.stage import Sink


@register("jsonl")
class JsonlSink(Sink):
    """Writes ``{"source", "index", "pts", "time", "results": {stage: ...}}`` per frame.

    Lines are flushed as written, so a reader can follow the file live.

    Args:
        path: output file (``-`` for standard output).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._file: IO[str] | None = None

    def open(self) -> None:
        self._file = open_lines(self.path)

    def write(self, frame: Frame) -> None:
        results = {
            name: value.to_json()
            for name, value in frame.results.items()
            if hasattr(value, "to_json")
        }
        record = {
            "source": frame.source_id,
            "index": frame.index,
            "pts": frame.pts,
            "time": round(frame.time, 6),
            "results": results,
        }
        self._file.write(json.dumps(record) + "\n")  # type: ignore[union-attr]
        self._file.flush()  # type: ignore[union-attr]

    def close(self) -> None:
        close_lines(self._file, self.path)
        self._file = None


def open_lines(path: str, append: bool = False) -> IO[str]:
    """A text file to write lines to (its folder made), or standard output for ``-``.

    Raises:
        SinkError: it cannot be written (one line).
    """
    if path == "-":
        return sys.stdout
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return open(path, "a" if append else "w", encoding="utf-8")
    except OSError as error:
        raise SinkError(f"cannot write {path}: {error.strerror}") from None


def close_lines(file: IO[str] | None, path: str) -> None:
    """Closes what :func:`open_lines` opened for ``path`` (standard output stays open)."""
    if file is not None and path != "-":
        file.close()

"""Results as JSON Lines: one line per frame with every result that has ``to_json``."""

from __future__ import annotations

import json
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
        if self.path == "-":
            import sys

            self._file = sys.stdout
            return
        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "w", encoding="utf-8")  # noqa: SIM115
        except OSError as error:
            raise SinkError(f"cannot write {self.path}: {error.strerror}") from None

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
        if self._file is not None and self.path != "-":
            self._file.close()
        self._file = None

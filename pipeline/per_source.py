"""One output per source: a sink whose path or URL holds ``{source}``.

``path: out/{source}.mp4`` (likewise an RTSP URL, a JSONL path) makes one sink of that kind
per source id: it is built and opened at the source's first frame, gets exactly that source's
frames, and is closed (its file finalised) when the source ends, so a finished camera's file
is complete while the others still record. Names are made safe for paths and URLs first.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from typing import Any

from pipeline.frame import Frame
from pipeline.stage import Sink

log = logging.getLogger("framegraph")

PLACEHOLDER = "{source}"


def has_placeholder(args: dict[str, Any]) -> bool:
    """A sink's arguments name ``{source}`` somewhere (then it becomes per source)."""
    return any(isinstance(v, str) and PLACEHOLDER in v for v in args.values())


def safe_name(source_id: str) -> str:
    """``source_id`` as a path segment or URL path: letters, digits, ``._-``, others ``_``."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", source_id).strip("._") or "source"


class PerSource(Sink):
    """A sink per source id, made by ``make(args)`` from ``args`` with ``{source}`` filled in.

    Args:
        kind: the inner sinks' kind (shown in metrics).
        args: the inner sink's arguments, some holding ``{source}``.
        make: builds an inner sink from its arguments (raises ConfigError on bad ones).
    """

    def __init__(self, kind: str, args: dict[str, Any], make: Callable[[dict], Sink]) -> None:
        self.kind = kind  # type: ignore[misc]
        self.args, self.make = args, make
        self.outputs: dict[str, Sink] = {}
        self.finished: list[str] = []  # in the order they were finalised
        self.left_at_close: list[str] = []  # still open when the graph closed
        self._written: dict[str, list[str]] = {}  # files of each finished source's sink
        self._lock = threading.Lock()
        make(self._args_for("check"))  # a mistake in the arguments fails when the graph is built

    def _args_for(self, source_id: str) -> dict[str, Any]:
        name = safe_name(source_id)
        return {k: v.replace(PLACEHOLDER, name) if isinstance(v, str) else v
                for k, v in self.args.items()}  # fmt: skip

    def outputs_of(self, source_id: str) -> list[str]:
        """Where ``source_id``'s output goes: the files its sink opened (``Sink.written``:
        their real names, kept after it finished), else its ``path`` / ``url`` with
        ``{source}`` filled."""
        with self._lock:
            sink = self.outputs.get(source_id)
            written = sink.written() if sink is not None else self._written.get(source_id)
        if written:
            return list(written)
        filled = self._args_for(source_id)
        return [filled[k] for k in ("path", "url")
                if isinstance(self.args.get(k), str) and PLACEHOLDER in self.args[k]]  # fmt: skip

    def write(self, frame: Frame) -> None:
        sink = self.outputs.get(frame.source_id)
        if sink is None:
            sink = self.make(self._args_for(frame.source_id))
            sink.name = f"{self.name}[{frame.source_id}]"
            sink.open()
            with self._lock:
                self.outputs[frame.source_id] = sink
        sink.write(frame)

    def on_source_end(self, source_id: str) -> None:
        with self._lock:
            sink = self.outputs.pop(source_id, None)
            if sink is not None:
                self._written[source_id] = sink.written()
        if sink is not None:
            sink.close()
            self.finished.append(source_id)

    def close(self) -> None:
        with self._lock:
            remaining, self.outputs = self.outputs, {}
            self._written.update({name: sink.written() for name, sink in remaining.items()})
        errors = []
        for source_id, sink in remaining.items():
            try:
                sink.close()
                self.finished.append(source_id)
                self.left_at_close.append(source_id)
            except Exception as error:  # close every output before reporting
                errors.append(error)
        if errors:
            raise errors[0]

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {"open": sorted(self.outputs), "finished": len(self.finished)}

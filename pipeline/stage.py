"""The stage contract: what every graph node implements.

A stage declares its contract where it is defined (class attributes), not at
run time: which result keys it reads (``consumes``) and writes (``produces``,
by default its own node name), and whether it keeps per-source state.

Life cycle, all called by the graph: ``open()`` once on the main thread, then
``process(frame)`` for every frame on the stage's own worker thread (frames of
one source arrive in order), then ``close()`` once, always, even after errors
or Ctrl-C. Sinks must leave a finalised, playable output in ``close()``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

from pipeline.frame import Frame


class Stage:
    """A processing node: one frame in, the same frame (with results) out.

    Subclasses are constructed from YAML: the constructor's keyword arguments are
    the config keys (see ``pipeline.config``).
    """

    kind: ClassVar[str] = ""
    """Name used for ``kind:`` in configs; set by ``pipeline.config.register``."""
    consumes: ClassVar[tuple[type, ...]] = ()
    """Result types (from ``pipeline.results``) this stage reads from upstream."""
    produces: ClassVar[tuple[type, ...]] = ()
    """Result types it stores under ``frame.results[self.name]``."""
    stateful: ClassVar[bool] = False
    """Keeps state per source (sees frames of one source in order)."""

    name: str = ""
    """Node name in the graph, set by the graph; results are stored under it."""

    def open(self) -> None:
        """Acquire resources (models, devices, files). Runs before any frame."""

    def process(self, frame: Frame) -> Frame | None:
        """Handle one frame; return it (usually with ``frame.results[self.name]``
        set) or None to drop it from the graph."""
        return frame

    def on_gap(self, source_id: str, missing: int) -> None:
        """Told before ``process`` when ``missing`` frames of ``source_id`` were
        dropped upstream; stateful stages reset or force a keyframe here."""

    def close(self) -> None:
        """Release resources. Always called once, also after errors."""

    def status(self) -> dict[str, Any]:
        """Extra live state for metrics (e.g. a stream's connection state)."""
        return {}


class Source(Stage):
    """A node that produces frames; the graph pulls ``frames()`` on its own thread.

    ``live`` sources (cameras, streams, paced files) produce at their own rate
    whatever the graph does; the edges after them default to policy ``latest``.
    """

    live: bool = False

    def frames(self) -> Iterator[Frame]:
        """Yield frames until the input ends; raise SourceError if it cannot be read."""
        raise NotImplementedError

    def expected_frames(self) -> int | None:
        """How many frames the source will produce, if known (for progress bars)."""
        return None

    def request_stop(self) -> None:
        """Ask ``frames()`` to end soon; called from another thread."""


class Sink(Stage):
    """A terminal node: writes frames somewhere."""

    def write(self, frame: Frame) -> None:
        """Write one frame."""
        raise NotImplementedError

    def process(self, frame: Frame) -> Frame | None:
        self.write(frame)
        return frame

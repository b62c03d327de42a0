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

from collections.abc import Callable, Iterator
from typing import Any, ClassVar

from pipeline.frame import Frame

References = dict[str, tuple[type, ...]]
"""A stage's references: config key -> result types the named stage must produce."""


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
    references: ClassVar[References] = {}
    """Constructor arguments that name upstream stages whose results this stage reads:
    config key -> the result types the named stage must produce (empty: any result). The
    stage keeps each value (a name, a list of names, or None) under the same attribute
    name, and the graph checks every name before the first frame."""
    options_type: ClassVar[type | None] = None
    """A pydantic model whose fields are config keys of this stage too, passed to the
    constructor as keyword arguments (``**options``) when the config sets them."""
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

    def on_source_end(self, source_id: str) -> None:
        """Told after the last frame of ``source_id`` (the source ended or was removed while
        the graph runs on): free its per-source state, finalise its own outputs."""

    def close(self) -> None:
        """Release resources. Always called once, also after errors."""

    def status(self) -> dict[str, Any]:
        """Extra live state for metrics (e.g. a stream's connection state)."""
        return {}

    batch_size: int = 1
    """The most frames the graph hands ``process_batch`` at once (1: ``process`` per frame)."""
    batch_wait: float = 0.0
    """Seconds the graph waits for a batch to fill once it has a frame (0: what is queued)."""

    def process_batch(self, frames: list[Frame]) -> list[Frame | None]:
        """Handle up to ``batch_size`` frames at once (from one source or several, each
        source's in order); returns one output per frame, as ``process`` would."""
        return [self.process(frame) for frame in frames]

    def parts(self) -> list[Part]:
        """The steps the graph runs in place of this stage, each on its own thread, so that
        they overlap (a model's preprocessing, network and postprocessing). Every step
        rewrites ``frame.results[self.name]``; the last leaves the stage's result. Configs,
        references and the metrics table see one stage. Empty (the default): the stage's
        own ``process`` runs."""
        return []


class Part(Stage):
    """One step of a stage that runs as several (see :meth:`Stage.parts`).

    Args:
        label: the step's name, shown as a sub-row of its stage in metrics ("pre", "net").
        step: what it does to a frame (a method of the stage it is part of).
        stateful: it keeps per-source state (then it runs on one thread).
        produces: the result types it leaves under the stage's name.
        owner: the stage whose ``open``, ``close``, ``on_gap`` and ``status`` this step
            carries (exactly one step of a stage does).
        finisher: the stage whose ``on_source_end`` this step carries: the last step's, so
            the earlier steps' frames of that source have all passed.
        batch_step: what it does to several frames at once, when it batches.
        batch_size: the most frames ``batch_step`` takes.
        batch_wait: seconds to wait for a batch to fill.
    """

    def __init__(
        self,
        label: str,
        step: Callable[[Frame], Frame | None],
        stateful: bool = False,
        produces: tuple[type, ...] = (),
        owner: Stage | None = None,
        finisher: Stage | None = None,
        batch_step: Callable[[list[Frame]], list[Frame | None]] | None = None,
        batch_size: int = 1,
        batch_wait: float = 0.0,
    ) -> None:
        self.label, self.step, self.owner, self.finisher = label, step, owner, finisher
        self.stateful, self.produces = stateful, produces  # type: ignore[misc]
        self.batch_step = batch_step
        self.batch_size = batch_size if batch_step is not None else 1
        self.batch_wait = batch_wait

    def process_batch(self, frames: list[Frame]) -> list[Frame | None]:
        if self.batch_step is None:
            return super().process_batch(frames)
        return self.batch_step(frames)

    def open(self) -> None:
        if self.owner is not None:
            self.owner.open()

    def process(self, frame: Frame) -> Frame | None:
        return self.step(frame)

    def on_gap(self, source_id: str, missing: int) -> None:
        if self.owner is not None:
            self.owner.on_gap(source_id, missing)

    def on_source_end(self, source_id: str) -> None:
        if self.finisher is not None:
            self.finisher.on_source_end(source_id)

    def close(self) -> None:
        if self.owner is not None:
            self.owner.close()

    def status(self) -> dict[str, Any]:
        return self.owner.status() if self.owner is not None else {}


class Source(Stage):
    """A node that produces frames; the graph pulls ``frames()`` on its own thread.

    ``live`` sources (cameras, streams, paced files) produce at their own rate
    whatever the graph does; the edges after them default to policy ``latest``. The graph
    reads ``live`` again once the sources have opened (a network stream learns there
    whether it is live or a finite recording).
    """

    live: bool = False
    drops_itself: bool = False
    """It keeps the newest frames of each live input itself (a group of cameras): the edge
    after it blocks instead of keeping only the newest frame of all inputs together."""

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

    per_source: ClassVar[bool] = True
    """Arguments naming ``{source}`` make one sink per source (``pipeline.per_source``);
    False for a sink that fills ``{source}`` itself, per frame or event."""

    def write(self, frame: Frame) -> None:
        """Write one frame."""
        raise NotImplementedError

    def written(self) -> list[str]:
        """The files this sink has opened, as they are named on disk (a sink that picks its
        own names, e.g. to never overwrite, says so here); empty for a sink writing no
        file or before its first."""
        return []

    def process(self, frame: Frame) -> Frame | None:
        self.write(frame)
        return frame

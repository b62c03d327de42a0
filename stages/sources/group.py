"""Many inputs as one source node: ``kind: sources``, the graph's cameras.

Each input (any source kind: file, camera, stream, images, synthetic, scene) runs on a thread
of its own with its own reconnects, pacing and timestamps, and waits in a small queue of its
own; the group hands the graph one frame per input in turn (round robin), so a fast or bursty
input cannot starve a slow one, and a stalled one holds up nobody. A live input's queue keeps
only its newest frames (the oldest drop, counted per input); a file's queue waits for its
turn, so no file frame is lost. Frames carry their input's name as ``source_id``; when an
input ends (or is removed) a :class:`~pipeline.frame.SourceEnded` follows its last frame
down the graph, so per-source outputs are finalised and per-source state freed then.

An input that fails while running (a corrupt file, a stream that gives up) ends alone: the
others go on, and the run reports the first such error once every input has finished.
Inputs can be added and removed while the graph runs (:meth:`SourceGroup.add_source`,
:meth:`SourceGroup.remove_source`).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Iterator
from typing import Any

from pipeline.config import MAX_PIXELS, STAGE_KINDS, build_stage, register, stage_parameters
from pipeline.errors import ConfigError, FrameGraphError, StageError
from pipeline.frame import Frame, SourceEnded
from pipeline.stage import Source
from stages.sources.urls import redact

log = logging.getLogger("framegraph")
CLOSE_WAIT_S = 10.0
"""How long closing the group waits for each input's thread to leave its read."""


class _Input:
    """One input of the group: its source, queue and thread."""

    def __init__(self, name: str, source: Source, capacity: int, origin: str = "") -> None:
        self.name, self.source, self.capacity = name, source, capacity
        self.origin = origin  # what it reads, redacted (no credentials)
        self.queue: deque[Frame] = deque()
        self.thread: threading.Thread | None = None
        self.ended = False  # its thread finished (or it was removed)
        self.announced = False  # its SourceEnded went out
        self.closed = False  # its source was closed (by its own thread, once done reading)
        self.removed = False
        self.error: FrameGraphError | None = None
        self.frames = 0
        self.drops = 0

    @property
    def live(self) -> bool:
        return bool(getattr(self.source, "live", False))

    def state(self) -> str:
        if self.removed:
            return "removed"
        if self.ended:
            return "failed" if self.error is not None else "ended"
        status = self.source.status()  # a stream's connection state, else running
        return str(status.get("connection", status.get("state", "running")))


@register("sources")
class SourceGroup(Source):
    """Several inputs as one source, fairly interleaved.

    Args:
        sources: the inputs: a list of ``--source`` values (``[NAME=]INPUT``: a file, a
            folder or glob of images, a camera index, a stream URL, ``synthetic``), or a
            mapping name -> such an input or a source entry (``kind`` and that kind's keys, as
            a source stage in a config). The name becomes its frames' ``source_id``.
        queue: frames an input may hold while waiting for its turn (live inputs drop their
            oldest beyond it).
        keep_open: keep running after every input has ended (a service adds inputs later);
            the group then ends when the graph stops.
        max_pixels: the largest frame an input accepts (width x height), for every input
            whose kind has the limit and whose entry does not set its own (None: no limit).
    """

    drops_itself = True

    def __init__(
        self,
        sources: list[str] | dict[str, str | dict[str, Any]] | None = None,
        queue: int = 2,
        keep_open: bool = False,
        max_pixels: int | None = MAX_PIXELS,
    ) -> None:
        if queue < 1:
            raise ConfigError("sources: queue must be >= 1")
        if not sources and not keep_open:
            raise ConfigError("sources: give at least one input (or keep_open: true)")
        self.capacity, self.keep_open = queue, keep_open
        self.max_pixels = max_pixels
        self.inputs: dict[str, _Input] = {}
        for name, entry in _entries(sources).items():
            self.inputs[name] = self._build(name, entry)
        self._retired: list[_Input] = []  # forgotten or replaced: still to announce and close
        self._cond = threading.Condition()
        self._running = False
        self._stopping = False

    def _build(self, name: str, entry: str | dict[str, Any]) -> _Input:
        from stages.sources import input_of, source_args_for  # the package imports this module

        where = redact(input_of(entry))  # a --source string is shown as the user wrote it
        if isinstance(entry, str):
            try:
                entry = source_args_for(entry)
            except ValueError as error:
                raise ConfigError(f"sources: {name}: {error}") from None
        if not isinstance(entry, dict) or "kind" not in entry:
            raise ConfigError(f"sources: {name}: expected a source entry with a 'kind'")
        args = {k: v for k, v in entry.items() if k != "kind"}
        args.setdefault("source_id", name)
        kind = entry["kind"]  # an unknown one is named by build_stage
        if kind in STAGE_KINDS and "max_pixels" in stage_parameters(kind):
            args.setdefault("max_pixels", self.max_pixels)
        source = build_stage(entry["kind"], args, f"sources: {name}")
        if not isinstance(source, Source):
            raise ConfigError(f"sources: {name}: {entry['kind']!r} is not a source kind")
        source.name = name
        return _Input(name, source, self.capacity, where)

    @property
    def live(self) -> bool:  # type: ignore[override]
        """Any of its inputs is live (a stream knows once it has opened)."""
        return any(i.live for i in list(self.inputs.values()))

    # ---- life cycle ---------------------------------------------------
    def open(self) -> None:
        opened = []
        try:
            for item in self.inputs.values():
                item.source.open()
                opened.append(item)
        except BaseException:
            for item in opened:
                item.source.close()
            raise

    def close(self) -> None:
        self.request_stop()
        for item in [*self._retired, *self.inputs.values()]:
            if item.thread is None:  # never started: nobody reads it
                self._close(item)
                continue
            item.thread.join(CLOSE_WAIT_S)
            if item.thread.is_alive():  # closing under a read would crash the decoder
                log.warning("sources: %s is still reading; left open", item.name)

    @staticmethod
    def _close(item: _Input) -> None:
        if item.closed:
            return
        item.closed = True
        try:
            item.source.close()
        except Exception as error:  # one input's close must not hide the others'
            log.error("sources: closing %s: %s", item.name, error)

    def expected_frames(self) -> int | None:
        counts = [i.source.expected_frames() for i in self.inputs.values()]
        return None if self.keep_open or None in counts else sum(counts)  # type: ignore[arg-type]

    def request_stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for item in list(self.inputs.values()):
            item.source.request_stop()

    def status(self) -> dict[str, Any]:
        with self._cond:
            return {
                "inputs": {
                    name: {
                        "frames": i.frames,
                        "drops": i.drops,
                        "state": i.state(),
                        "url": i.origin,
                    }
                    for name, i in self.inputs.items()
                }
            }

    # ---- inputs while running ------------------------------------------
    def add_source(self, name: str, entry: str | dict[str, Any]) -> None:
        """Opens a new input (an input string as ``--source`` takes, or a source entry) and
        starts it (its frames join the round robin).

        Raises:
            ConfigError: the name is taken or the entry is wrong.
            FrameGraphError: the input cannot be opened (missing file, ...).
        """
        with self._cond:
            if name in self.inputs and not self.inputs[name].ended:
                raise ConfigError(f"sources: an input named {name!r} is running")
        item = self._build(name, entry)
        item.source.open()
        with self._cond:
            old = self.inputs.get(name)
            if old is not None:  # closed with the group (its thread may still be reading)
                self._retired.append(old)
            self.inputs[name] = item
            if self._running:
                self._start(item)
            self._cond.notify_all()

    def remove_source(self, name: str) -> None:
        """Ends an input now: what it has queued still goes out, then its end marker
        (its outputs are finalised downstream); a read it is stuck in is abandoned. An input
        that has already ended is forgotten (no longer listed).

        Raises:
            ConfigError: no input has that name.
        """
        with self._cond:
            item = self.inputs.get(name)
            if item is None:
                raise ConfigError(f"sources: no input named {name!r} (inputs: {list(self.inputs)})")
            if item.ended:  # already over: forgotten (its end went out or will)
                self._retired.append(item)
                del self.inputs[name]
                return
            item.removed = item.ended = True
            self._cond.notify_all()
        item.source.request_stop()

    # ---- frames -------------------------------------------------------
    def _start(self, item: _Input) -> None:
        item.thread = threading.Thread(
            target=self._pump, args=(item,), name=f"source-{item.name}", daemon=True
        )
        item.thread.start()

    def _pump(self, item: _Input) -> None:
        """The input's thread: its frames into its queue."""
        try:
            for frame in item.source.frames():
                with self._cond:
                    if item.removed:
                        break
                    if item.live:
                        while len(item.queue) >= item.capacity:
                            item.queue.popleft()
                            item.drops += 1
                    else:
                        while len(item.queue) >= item.capacity and not (
                            item.removed or self._stopping
                        ):
                            self._cond.wait()
                    item.queue.append(frame)
                    item.frames += 1
                    self._cond.notify_all()
        except FrameGraphError as error:
            item.error = error
        except Exception as error:
            log.debug("input %s failed", item.name, exc_info=True)
            item.error = StageError(f"source {item.name!r} failed: {error}")
        finally:
            if item.error is not None:
                log.error("sources: %s ended: %s (the other inputs go on)", item.name, item.error)
            self._close(item)  # its own thread: no read can be under way
            with self._cond:
                item.ended = True
                self._cond.notify_all()

    def frames(self) -> Iterator[Frame | SourceEnded]:  # type: ignore[override]
        with self._cond:
            self._running = True
            for item in self.inputs.values():
                self._start(item)
        turn = 0
        while True:
            with self._cond:
                out, turn = self._next(turn)
                if out is None:
                    done = all(i.announced for i in self.inputs.values())
                    if done and (self._stopping or not self.keep_open):
                        break
                    self._cond.wait(0.5)
                    continue
            yield out
        failed = [i.error for i in self.inputs.values() if i.error is not None]
        if failed and not self._stopping:
            raise failed[0]

    def _next(self, turn: int) -> tuple[Frame | SourceEnded | None, int]:
        """The next item in round-robin order (under the lock): a queued frame of the input
        whose turn it is, or the end of an input that has ended with nothing queued."""
        self._retired = [i for i in self._retired if not (i.announced and i.closed)]
        items = [i for i in self._retired if not i.announced] + list(self.inputs.values())
        for k in range(len(items)):
            item = items[(turn + k) % len(items)]
            if item.queue:
                frame = item.queue.popleft()
                self._cond.notify_all()  # room for its thread
                return frame, (turn + k + 1) % len(items)
            if item.ended and not item.announced:
                item.announced = True
                return SourceEnded(item.name), (turn + k + 1) % len(items)
        return None, turn

    def end_input(self, source_id: str) -> None:
        """Stops one input (the graph's ``max_frames`` reached for it); quietly ignores
        an input that already ended."""
        with self._cond:
            item = self.inputs.get(source_id)
        if item is not None and not item.ended:
            self.remove_source(source_id)


def _entries(sources: list[str] | dict[str, Any] | None) -> dict[str, str | dict[str, Any]]:
    """The group's ``sources`` as name -> ``--source`` string or source entry."""
    from stages.sources import named_sources

    if isinstance(sources, list):
        try:
            return dict(named_sources(sources))
        except ValueError as error:
            raise ConfigError(f"sources: {error}") from None
    return dict(sources or {})

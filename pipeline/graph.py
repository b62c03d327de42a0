"""The stage graph: nodes, their edges, one worker thread each, and shutdown.

Shutdown has two speeds. ``stop()`` (first Ctrl-C, end of ``max_frames``, a
fatal error) asks the sources to end; they send end of stream, every stage
finishes what is queued, and sinks finalise: nothing already decoded is lost
(every frame a source returned, including one it was reading when the stop
came, reaches the sinks). A source stuck in a blocking read is given
``stop_grace`` seconds, then its end of stream is sent for it (a frame that read
returns later is discarded); a source waiting for room downstream is draining,
not stuck, and is never cut off. ``abort()`` (second Ctrl-C) closes every edge
so workers exit at once; sinks are still closed, so files stay playable.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

from pipeline.edges import QUEUE_BYTES, Edge, EdgeClosed, Policy
from pipeline.errors import ConfigError, FrameGraphError, StageError
from pipeline.frame import EndOfStream, Frame, SourceEnded
from pipeline.join import Joiner
from pipeline.metrics import Metrics, StageMetrics
from pipeline.stage import Sink, Source, Stage
from pipeline.wiring import check_needs, did_you_mean, expand_parts

log = logging.getLogger("framegraph")

ErrorPolicy = Literal["skip", "stop"]
_FAILED = object()
"""What ``_process`` returns for a frame its stage raised on (already counted)."""


@dataclass
class NodeSpec:
    """How one stage sits in the graph.

    Attributes:
        name: unique node name; the stage's results are stored under it.
        stage: the stage object.
        inputs: upstream node names (empty for sources).
        capacity: frames the inbound edge holds.
        policy: inbound edge policy; None = ``latest`` when fed directly by a
            live source, else ``block``.
        max_bytes: image bytes the inbound edge holds (None: only ``capacity`` bounds it).
        on_error: what an exception in ``process`` does: drop that frame
            (``skip``) or end the run (``stop``). FrameGraphError always stops.
        max_errors_in_a_row: under ``skip``, exceptions on this many frames in a row
            end the run anyway (every frame failing is a broken stage, not a bad frame);
            None: never.
        join: with several inputs, join them by frame id (True) or pass frames
            through as they come (False, e.g. several sources into one model).
        workers: threads running this stage on different frames at once; only
            for stateless stages with one input. Output order is kept. For a stage
            that runs as parts, each stateless part gets them.
        part_of: set by the graph on the nodes of a stage that runs as parts (see
            ``Stage.parts``): that stage's name, under which the parts' results go.
    """

    name: str
    stage: Stage
    inputs: list[str] = field(default_factory=list)
    capacity: int = 8
    policy: Policy | None = None
    max_bytes: int | None = QUEUE_BYTES
    on_error: ErrorPolicy = "skip"
    max_errors_in_a_row: int | None = 25
    join: bool = True
    workers: int = 1
    part_of: str | None = None


class _Ordered:
    """Shared state of a stage's parallel workers: frames are numbered as they are
    taken from the inbound edge and leave strictly in that order."""

    def __init__(self, workers: int, inputs: list[str]) -> None:
        self.take_lock = threading.Lock()  # taking an item and numbering it is one step
        self.emit_lock = threading.Lock()
        self.waiting_for = set(inputs)
        self.taken = 0
        self.next_out = 0
        self.done: dict[int, Frame | None] = {}
        self.active = workers


class _Node:
    def __init__(self, spec: NodeSpec) -> None:
        self.spec = spec
        self.name = spec.name
        self.stage = spec.stage
        self.stage.name = spec.part_of or spec.name
        self.inbound: Edge | None = None
        self.outputs: list[Edge] = []
        self.metrics: StageMetrics | None = None
        self.threads: list[threading.Thread] = []
        self.live = False
        self.failed = False
        self.errors_in_a_row = 0  # under the GIL; parallel workers may miscount by one
        self._eos_sent = False
        self._eos_lock = threading.Lock()
        self.reading = False
        """A source inside its read (not waiting for room downstream): set by the source
        before each read, cleared (and checked by the cut-off) under ``_eos_lock``."""

    @property
    def is_source(self) -> bool:
        return isinstance(self.stage, Source)

    @property
    def busy(self) -> bool:
        return any(t.is_alive() for t in self.threads)

    def send_eos(self) -> None:
        """Send end of stream downstream, once."""
        with self._eos_lock:
            if self._eos_sent:
                return
            self._eos_sent = True
        for edge in self.outputs:
            edge.put(self.name, EndOfStream(self.name))

    def cut_off_read(self) -> None:
        """Send end of stream for a source stuck in a read (not one emitting a frame)."""
        with self._eos_lock:
            if not self.reading or self._eos_sent:
                return
            self._eos_sent = True
        for edge in self.outputs:
            edge.put(self.name, EndOfStream(self.name))

    def read_done(self) -> bool:
        """A source's read returned: True if its frame may still be emitted (it was not
        cut off meanwhile)."""
        with self._eos_lock:
            self.reading = False
            return not self._eos_sent


@dataclass
class RunReport:
    """How a run ended."""

    metrics: Metrics
    error: FrameGraphError | None = None
    interrupted: bool = False


class Graph:
    """A validated DAG of stages, ready to run once.

    Args:
        specs: the nodes, sources included, in any order.
        join_timeout: seconds a join waits for a missing branch on live input.
        max_frames: stop the sources after this many frames each (None = all).
        stop_grace: seconds a stopping source may take before its end of stream
            is sent for it.

    Raises:
        ConfigError: duplicate names, unknown inputs, cycles, a source with
            inputs, a stage without inputs, or a stage whose needed result type
            no upstream stage produces.
    """

    def __init__(
        self,
        specs: list[NodeSpec],
        join_timeout: float = 1.0,
        max_frames: int | None = None,
        stop_grace: float = 2.0,
    ) -> None:
        self.join_timeout = join_timeout
        self.max_frames = max_frames
        self.stop_grace = stop_grace
        self.metrics = Metrics()
        self.nodes: dict[str, _Node] = {}
        names = [spec.name for spec in specs]
        if len(set(names)) < len(names):
            twice = next(name for name in names if names.count(name) > 1)
            raise ConfigError(f"two stages are named {twice!r}")
        specs, self.owners = expand_parts(specs)
        for spec in specs:
            if spec.name in self.nodes:
                raise ConfigError(f"two stages are named {spec.name!r}")
            self.nodes[spec.name] = _Node(spec)
        self.order = self._topological_order()
        self._wire()
        self._error: FrameGraphError | None = None
        self._error_lock = threading.Lock()
        self._stopping = threading.Event()
        self._stop_requested_at: float | None = None
        self._aborted = False
        self.interrupted = False
        self.ready = threading.Event()
        """Set once every stage has opened (models loaded) and frames flow."""

    # ---- construction -------------------------------------------------
    def _topological_order(self) -> list[_Node]:
        for node in self.nodes.values():
            for up in node.spec.inputs:
                if up not in self.nodes:
                    raise ConfigError(
                        f"stage {node.spec.part_of or node.name!r}: inputs: {up!r} is not a "
                        f"stage{did_you_mean(up, self.stage_names)}"
                    )
            if node.is_source and node.spec.inputs:
                raise ConfigError(f"source {node.name!r} cannot have inputs")
            if not node.is_source and not node.spec.inputs:
                raise ConfigError(f"stage {node.name!r} has no inputs")
            if node.spec.workers < 1:
                raise ConfigError(f"stage {node.name!r}: workers must be >= 1")
            batched = not node.is_source and node.stage.batch_size > 1
            if batched and (node.spec.workers > 1 or (len(node.spec.inputs) > 1
                                                      and node.spec.join)):  # fmt: skip
                raise ConfigError(
                    f"stage {node.spec.part_of or node.name!r}: batch runs on one thread, "
                    "without workers or a join"
                )
            if node.spec.workers > 1 and (
                node.is_source or node.stage.stateful or isinstance(node.stage, Sink)
                or len(node.spec.inputs) > 1
            ):  # fmt: skip
                raise ConfigError(
                    f"stage {node.name!r}: several workers need a stateless stage with one input"
                )
        order: list[_Node] = []
        state: dict[str, int] = {}

        def visit(node: _Node) -> None:
            if state.get(node.name) == 2:
                return
            if state.get(node.name) == 1:
                raise ConfigError(f"the graph has a cycle through {node.name!r}")
            state[node.name] = 1
            for up in node.spec.inputs:
                visit(self.nodes[up])
            state[node.name] = 2
            order.append(node)

        for node in self.nodes.values():
            visit(node)
        if not any(n.is_source for n in order):
            raise ConfigError("the graph has no source")
        if all(n.is_source for n in order):
            raise ConfigError("the graph has no stage after its sources")
        return order

    def _wire(self) -> None:
        # per node: every stage at or before it -> the result types that stage produces
        upstream_of: dict[str, dict[str, set[type]]] = {}
        for node in self.order:
            ups = [self.nodes[u] for u in node.spec.inputs]
            upstream: dict[str, set[type]] = {}
            for up in ups:
                for name, kinds in upstream_of[up.name].items():
                    upstream.setdefault(name, set()).update(kinds)
            owner = self.owners.get(node.spec.part_of or "")
            if owner is not None and not set(node.spec.inputs) & self._part_names(owner):
                check_needs(owner.name, owner, upstream)  # at its first part: the stage's needs
            check_needs(node.name, node.stage, upstream)
            key = node.spec.part_of or node.name  # where the node's results go
            upstream_of[node.name] = {**upstream, key: set(node.stage.produces)}
            if not node.is_source:
                policy = node.spec.policy or Policy.BLOCK
                node.inbound = Edge(node.name, node.spec.capacity, policy, node.spec.max_bytes)
                for up in ups:
                    up.outputs.append(node.inbound)
            node.metrics = self.metrics.add_stage(
                node.name, node.stage.kind, node.inbound, node.stage.status, node.spec.part_of
            )
        self._settle_live()

    def _settle_live(self) -> None:
        """Which nodes see live input, and the default policy of each edge: ``latest`` right
        after a live source, else ``block``. Again once the sources have opened, since a
        network stream knows whether it is live or a finite recording only then."""
        for node in self.order:
            ups = [self.nodes[u] for u in node.spec.inputs]
            live_source = node.is_source and bool(getattr(node.stage, "live", False))
            node.live = live_source or any(u.live for u in ups)
            if node.inbound is not None and node.spec.policy is None:
                fed_by_live_source = any(
                    u.is_source and u.live and not u.stage.drops_itself  # type: ignore[attr-defined]
                    for u in ups
                )
                node.inbound.set_policy(Policy.LATEST if fed_by_live_source else Policy.BLOCK)

    @property
    def stage_names(self) -> list[str]:
        """The stages as configs name them (a stage that runs as parts once)."""
        return [n for n in self.nodes if self.nodes[n].spec.part_of is None] + list(self.owners)

    def _part_names(self, owner: Stage) -> set[str]:
        return {n.name for n in self.order if n.spec.part_of == owner.name}

    @property
    def sources(self) -> list[Source]:
        return [n.stage for n in self.order if n.is_source]  # type: ignore[misc]

    @property
    def live(self) -> bool:
        """True when any source is live."""
        return any(n.live for n in self.order if n.is_source)

    def expected_frames(self) -> int | None:
        """Frames the sources will produce in all, if every source knows."""
        counts = [s.expected_frames() for s in self.sources]
        if any(c is None for c in counts):
            return None
        if self.max_frames is not None:
            counts = [min(c, self.max_frames) for c in counts]  # type: ignore[type-var]
        return sum(counts)  # type: ignore[arg-type]

    # ---- control ------------------------------------------------------
    def add_source(self, name: str, entry: str | dict) -> None:
        """Adds an input while the graph runs: ``entry`` is an input as ``--source`` takes
        it or a source entry (``kind`` and its keys), ``name`` its source id; per-source
        outputs open at its first frame.

        Raises:
            ConfigError: the graph has no source group (``kind: sources``), the name is
                taken, or the entry is wrong.
            FrameGraphError: the input cannot be opened.
        """
        self.source_group().add_source(name, entry)

    def remove_source(self, name: str) -> None:
        """Ends an input while the graph runs: its queued frames still go out, then its
        per-source outputs are finalised and the stages free its state.

        Raises:
            ConfigError: no source group, or no input of that name (one that has already
                ended is forgotten).
        """
        self.source_group().remove_source(name)

    def source_group(self) -> Any:  # a stages.sources.group.SourceGroup (pipeline knows none)
        """The graph's source group (``kind: sources``), whose inputs can change.

        Raises:
            ConfigError: the graph has none.
        """
        for node in self.order:
            if node.is_source and hasattr(node.stage, "add_source"):
                return node.stage
        raise ConfigError("this graph has no source group (kind: sources) to add inputs to")

    def stop(self) -> None:
        """Graceful stop: sources end, queued frames drain, sinks finalise."""
        if self._stopping.is_set():
            return
        self._stop_requested_at = time.monotonic()
        self._stopping.set()
        for node in self.order:
            if node.is_source:
                node.stage.request_stop()  # type: ignore[attr-defined]

    def abort(self) -> None:
        """Immediate stop: every worker exits; sinks are still closed."""
        self._aborted = True
        self.stop()
        for node in self.order:
            if node.inbound is not None:
                node.inbound.close()

    def interrupt(self) -> None:
        """User asked to stop (Ctrl-C / SIGTERM): first call drains, second aborts."""
        if self.interrupted:
            self.abort()
        else:
            self.interrupted = True
            self.stop()

    def _fail(self, error: FrameGraphError) -> None:
        with self._error_lock:
            if self._error is None:
                self._error = error
        self.stop()

    # ---- running ------------------------------------------------------
    def run(self) -> RunReport:
        """Open every stage, run until all sinks saw end of stream, close all.

        Returns:
            How it ended; errors raised while opening are returned there too.
        """
        opened: list[_Node] = []
        try:
            for node in reversed(self.order):  # sinks first: fail before decoding
                opened.append(node)  # closed even if its open() fails half-way
                try:
                    node.stage.open()
                except FrameGraphError:
                    raise
                except Exception as error:
                    log.debug("opening %s failed", node.name, exc_info=True)
                    raise StageError(
                        f"opening stage {node.name!r} failed: {type(error).__name__}: {error}"
                    ) from error
            self._settle_live()
            self.metrics.started = time.monotonic()
            self.ready.set()
            for node in self.order:
                if node.is_source:
                    targets = [self._run_source]
                elif node.spec.workers > 1:
                    ordered = _Ordered(node.spec.workers, node.spec.inputs)
                    targets = [partial(self._run_worker, ordered=ordered)] * node.spec.workers
                elif node.stage.batch_size > 1:
                    targets = [self._run_batched]
                else:
                    targets = [self._run_stage]
                for i, target in enumerate(targets):
                    thread = threading.Thread(
                        target=target, args=(node,), name=f"stage-{node.name}-{i}", daemon=True
                    )
                    node.threads.append(thread)
                    thread.start()
            self._wait()
        except FrameGraphError as error:
            self._fail(error)
        finally:
            self.metrics.finished = time.monotonic()
            for node in opened:
                if node.busy:
                    log.warning("stage %s is still busy; not closing it", node.name)
                    continue
                try:
                    node.stage.close()
                except FrameGraphError as error:
                    self._fail(error)
                except Exception as error:  # a failed close must not hide the others
                    log.error("closing stage %s failed: %s", node.name, error)
                    self._fail(StageError(f"closing stage {node.name!r} failed: {error}"))
        return RunReport(self.metrics, self._error, self.interrupted)

    def _wait(self) -> None:
        for node in self.order:
            if node.is_source:
                continue
            for thread in node.threads:
                while thread.is_alive():
                    thread.join(0.25)
                    self._enforce_stop_grace()
        for node in self.order:
            if node.is_source:
                node.threads[0].join(self.stop_grace)

    def _enforce_stop_grace(self) -> None:
        started = self._stop_requested_at
        if started is None or time.monotonic() - started < self.stop_grace:
            return
        for node in self.order:
            if node.is_source and node.busy:
                node.cut_off_read()  # a source blocked on a full edge is draining: not cut off

    def _emit(self, node: _Node, frame: Frame) -> None:
        if not node.outputs:
            self.metrics.record_output(node.name, frame.capture_time, frame.source_id)
            return
        copies = [frame] + [frame.branch_copy() for _ in node.outputs[1:]]
        for edge, payload in zip(node.outputs, copies, strict=True):
            edge.put(node.name, payload)

    def _pass_source_end(self, node: _Node, marker: SourceEnded) -> None:
        """The last frame of ``marker.source_id`` went through ``node``: the stage frees
        that source's state (a sink finalises its output), and the marker goes on."""
        try:
            node.stage.on_source_end(marker.source_id)
        except FrameGraphError as error:
            self._fail(error)
        except Exception as error:  # one source's clean-up must not end the others
            log.error("stage %r at the end of source %s: %s: %s", node.name,
                      marker.source_id, type(error).__name__, error)  # fmt: skip
        for edge in node.outputs:
            edge.put(node.name, marker)

    def _run_source(self, node: _Node) -> None:
        source: Source = node.stage  # type: ignore[assignment]
        metrics = node.metrics
        counts: dict[str, int] = {}  # frames per source id, for max_frames
        try:
            frames = iter(source.frames())
            while not self._stopping.is_set():
                t0 = time.monotonic()
                node.reading = True
                try:
                    frame = next(frames, None)
                finally:
                    emit = node.read_done()
                if frame is None or not emit:  # a frame read after the cut-off is dropped
                    break
                if isinstance(frame, SourceEnded):  # one of a source group's inputs ended
                    self._pass_source_end(node, frame)
                    continue
                count = counts.get(frame.source_id, 0)
                if self.max_frames is not None and count >= self.max_frames:
                    continue  # a group's input past its limit, ending
                metrics.record(time.monotonic() - t0)  # type: ignore[union-attr]
                self._emit(node, frame)
                counts[frame.source_id] = count + 1
                if self.max_frames is not None and count + 1 >= self.max_frames:
                    end_input = getattr(source, "end_input", None)
                    if end_input is None:
                        break
                    end_input(frame.source_id)
        except FrameGraphError as error:
            self._fail(error)
        except Exception as error:
            log.debug("source %s failed", node.name, exc_info=True)
            self._fail(StageError(f"source {node.name!r} failed: {error}"))
        finally:
            node.send_eos()

    def _run_stage(self, node: _Node) -> None:
        waiting_for = set(node.spec.inputs)
        joiner = None
        if len(node.spec.inputs) > 1 and node.spec.join:
            joiner = Joiner(node.spec.inputs, self.join_timeout if node.live else None)
        last_index: dict[str, int] = {}
        ended: dict[str, int] = {}  # with a join: the inputs each source's end came from
        edge = node.inbound
        try:
            while waiting_for:
                timeout = None
                if joiner is not None and (deadline := joiner.next_deadline()) is not None:
                    timeout = max(deadline - time.monotonic(), 0.0)
                item = edge.get(timeout)  # type: ignore[union-attr]
                if item is None:
                    ready = joiner.expire(time.monotonic())  # type: ignore[union-attr]
                elif isinstance(item[1], EndOfStream):
                    waiting_for.discard(item[0])
                    ready = joiner.branch_done(item[0]) if joiner else []
                elif isinstance(item[1], SourceEnded):
                    source_id = item[1].source_id
                    ended[source_id] = ended.get(source_id, 0) + 1
                    if joiner is None or ended[source_id] == len(node.spec.inputs):
                        ended.pop(source_id)
                        last_index.pop(source_id, None)
                        self._pass_source_end(node, item[1])
                    ready = []
                elif joiner is not None:
                    ready = joiner.add(item[0], item[1], time.monotonic())
                else:
                    ready = [item[1]]
                for frame in ready:
                    self._emit_result(node, self._process(node, frame, last_index))
            for frame in joiner.drain() if joiner else []:
                self._emit_result(node, self._process(node, frame, last_index))
        except EdgeClosed:
            pass
        finally:
            if joiner is not None:
                node.metrics.partial_joins = joiner.partial  # type: ignore[union-attr]
            edge.close()  # type: ignore[union-attr]  # upstream puts stop blocking
            node.send_eos()

    def _run_batched(self, node: _Node) -> None:
        """A single-input stage with ``batch_size`` > 1: takes up to that many frames at once,
        waiting at most ``batch_wait`` seconds after the first for the rest."""
        stage, edge = node.stage, node.inbound
        assert edge is not None
        waiting_for = set(node.spec.inputs)
        last_index: dict[str, int] = {}
        try:
            while waiting_for:
                batch: list[Frame] = []
                item = edge.get()
                deadline = time.monotonic() + stage.batch_wait
                marker = None
                while item is not None:
                    if isinstance(item[1], EndOfStream):
                        waiting_for.discard(item[0])
                        if not waiting_for:
                            break
                    elif isinstance(item[1], SourceEnded):
                        marker = item[1]  # after the frames before it
                        break
                    else:
                        batch.append(item[1])
                    if len(batch) >= stage.batch_size:
                        break
                    item = edge.get(max(deadline - time.monotonic(), 0.0))
                if batch:
                    for out in self._process_batch(node, batch, last_index):
                        self._emit_result(node, out)
                if marker is not None:
                    last_index.pop(marker.source_id, None)
                    self._pass_source_end(node, marker)
        except EdgeClosed:
            pass
        finally:
            edge.close()  # upstream puts stop blocking
            node.send_eos()

    def _run_worker(self, node: _Node, ordered: _Ordered) -> None:
        """One of several threads of a stateless stage (see ``_Ordered``)."""
        edge = node.inbound
        assert edge is not None
        try:
            while True:
                with ordered.take_lock:
                    if not ordered.waiting_for:
                        break
                    item = edge.get()
                    if isinstance(item[1], EndOfStream):
                        ordered.waiting_for.discard(item[0])
                        continue
                    number = ordered.taken
                    ordered.taken += 1
                payload = item[1]  # a source's end keeps its place among the frames
                out = (
                    payload
                    if isinstance(payload, SourceEnded)
                    else self._process(node, payload, None)
                )
                with ordered.emit_lock:
                    ordered.done[number] = out
                    while ordered.next_out in ordered.done:
                        self._emit_result(node, ordered.done.pop(ordered.next_out))
                        ordered.next_out += 1
        except EdgeClosed:
            pass
        finally:
            with ordered.emit_lock:
                ordered.active -= 1
                last = ordered.active == 0
            edge.close()  # upstream puts stop blocking; the other workers stop taking
            if last:
                node.send_eos()

    def _emit_result(self, node: _Node, out: Frame | object | None) -> None:
        if out is _FAILED:
            return
        if isinstance(out, SourceEnded):
            self._pass_source_end(node, out)
            return
        if out is None:
            node.metrics.filtered += 1  # type: ignore[union-attr]
        else:
            self._emit(node, out)  # type: ignore[arg-type]

    def _process(
        self, node: _Node, frame: Frame, last_index: dict[str, int] | None
    ) -> Frame | object | None:
        """Run the stage on one frame: its output, None if the stage dropped it, or
        ``_FAILED`` if it raised (or the node already failed)."""
        return self._process_batch(node, [frame], last_index)[0]

    def _process_batch(
        self, node: _Node, frames: list[Frame], last_index: dict[str, int] | None
    ) -> list[Frame | object | None]:
        """Run the stage on frames handed over together (``process`` for one,
        ``process_batch`` for several): an output per frame as :meth:`_process` gives. An
        exception fails every frame of the call."""
        metrics: StageMetrics = node.metrics  # type: ignore[assignment]
        if node.failed or self._aborted:
            return [_FAILED] * len(frames)
        if last_index is not None:  # parallel (stateless) workers need no gap notices
            for frame in frames:
                previous = last_index.get(frame.source_id)
                if previous is not None and frame.index > previous + 1:
                    node.stage.on_gap(frame.source_id, frame.index - previous - 1)
                last_index[frame.source_id] = frame.index
        t0 = time.monotonic()
        try:
            if len(frames) == 1:
                outs = [node.stage.process(frames[0])]
            else:
                outs = node.stage.process_batch(frames)
        except FrameGraphError as error:
            metrics.errors += len(frames)
            node.failed = True
            self._fail(error)
            return [_FAILED] * len(frames)
        except Exception as error:
            metrics.errors += len(frames)
            frame = frames[0]
            where = f"stage {node.name!r} on frame {frame.source_id}#{frame.index}"
            if len(frames) > 1:
                where += f" (and {len(frames) - 1} more in its batch)"
            log.error("%s: %s: %s", where, type(error).__name__, error)
            log.debug("traceback", exc_info=True)
            node.errors_in_a_row += len(frames)
            limit = node.spec.max_errors_in_a_row
            if node.spec.on_error == "stop":
                node.failed = True
                self._fail(StageError(f"{where}: {type(error).__name__}: {error}"))
            elif limit is not None and node.errors_in_a_row >= limit:
                node.failed = True
                self._fail(StageError(f"{where}: failed on {node.errors_in_a_row} frames in a row"
                                      f" (max_errors_in_a_row); last: {type(error).__name__}:"
                                      f" {error}"))  # fmt: skip
            return [_FAILED] * len(frames)
        node.errors_in_a_row = 0
        metrics.record(time.monotonic() - t0, len(frames))
        return outs

"""Tiny stages and helpers for the runtime tests.

Stage classes are handed to tests through factory fixtures (``make_source(5)``)
so test modules need no import of this file.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from fractions import Fraction

import numpy as np
import pytest

from pipeline.frame import Frame
from pipeline.graph import Graph, RunReport
from pipeline.stage import Sink, Source, Stage
from tests.conftest import wait_until

TIME_BASE = Fraction(1, 12800)
PTS_STEP = 512  # 25 fps in a 1/12800 time base


def new_frame(index: int, source_id: str = "cam", value: int | None = None) -> Frame:
    """An 8x8x3 uint8 frame whose pixels hold ``value`` (default: index % 256)."""
    fill = index % 256 if value is None else value
    return Frame(
        image=np.full((8, 8, 3), fill, np.uint8),
        pts=index * PTS_STEP,
        time_base=TIME_BASE,
        index=index,
        source_id=source_id,
    )


class ListSource(Source):
    """Yields ``count`` frames (``None`` = forever), ``delay`` seconds apart.

    ``indices`` overrides the frame indices (to simulate upstream drops).
    """

    def __init__(
        self,
        count: int | None = 5,
        *,
        source_id: str = "cam",
        delay: float = 0.0,
        live: bool = False,
        indices: list[int] | None = None,
        fail_open: Exception | None = None,
    ) -> None:
        self.count = count
        self.source_id = source_id
        self.delay = delay
        self.live = live
        self.indices = indices
        self.fail_open = fail_open
        self.yielded = 0
        self.opened = 0
        self.closed = 0
        self.stop_requested = threading.Event()

    def open(self) -> None:
        self.opened += 1
        if self.fail_open is not None:
            raise self.fail_open

    def frames(self) -> Iterator[Frame]:
        indices = self.indices if self.indices is not None else _count_up(self.count)
        for index in indices:
            if self.stop_requested.is_set():
                return
            if self.delay:
                time.sleep(self.delay)
            self.yielded += 1
            yield new_frame(index, self.source_id)

    def expected_frames(self) -> int | None:
        return len(self.indices) if self.indices is not None else self.count

    def request_stop(self) -> None:
        self.stop_requested.set()

    def close(self) -> None:
        self.closed += 1


def _count_up(count: int | None) -> Iterator[int]:
    i = 0
    while count is None or i < count:
        yield i
        i += 1


class BlockingSource(Source):
    """Yields ``before`` frames, then blocks in a read that ignores ``request_stop``."""

    def __init__(self, before: int = 0, live: bool = False) -> None:
        self.before = before
        self.live = live
        self.release = threading.Event()
        self.blocked = threading.Event()
        self.closed = 0

    def frames(self) -> Iterator[Frame]:
        for i in range(self.before):
            yield new_frame(i)
        self.blocked.set()
        self.release.wait(30)

    def close(self) -> None:
        self.closed += 1


class RecordingSink(Sink):
    """Remembers every frame it was given; can be slow."""

    def __init__(self, delay: float = 0.0, fail_open: Exception | None = None) -> None:
        self.delay = delay
        self.fail_open = fail_open
        self.frames: list[Frame] = []
        self.gaps: list[tuple[str, int]] = []
        self.opened = 0
        self.closed = 0
        self.closed_after_frames = -1

    def open(self) -> None:
        self.opened += 1
        if self.fail_open is not None:
            raise self.fail_open

    def write(self, frame: Frame) -> None:
        if self.delay:
            time.sleep(self.delay)
        self.frames.append(frame)

    def on_gap(self, source_id: str, missing: int) -> None:
        self.gaps.append((source_id, missing))

    def close(self) -> None:
        self.closed += 1
        self.closed_after_frames = len(self.frames)

    @property
    def indices(self) -> list[int]:
        return [f.index for f in self.frames]


class Tagger(Stage):
    """Stores ``value`` (default: the frame index) under its own name.

    Options: sleep ``delay`` per frame; raise ``error`` on frames in ``fail_on``;
    return None (filter) on frames in ``drop``; replace the image if ``new_image``.
    """

    def __init__(
        self,
        value: object = None,
        *,
        delay: float = 0.0,
        fail_on: tuple[int, ...] = (),
        error: Callable[[], Exception] = lambda: ValueError("boom"),
        drop: tuple[int, ...] = (),
        new_image: int | None = None,
        fail_open: Exception | None = None,
    ) -> None:
        self.value = value
        self.delay = delay
        self.fail_on = fail_on
        self.error = error
        self.drop = drop
        self.new_image = new_image
        self.fail_open = fail_open
        self.seen: list[int] = []
        self.gaps: list[tuple[str, int]] = []
        self.opened = 0
        self.closed = 0

    def open(self) -> None:
        self.opened += 1
        if self.fail_open is not None:
            raise self.fail_open

    def process(self, frame: Frame) -> Frame | None:
        self.seen.append(frame.index)
        if self.delay:
            time.sleep(self.delay)
        if frame.index in self.fail_on:
            raise self.error()
        if frame.index in self.drop:
            return None
        if self.new_image is not None:
            frame.image = np.full_like(frame.image, self.new_image)
        frame.results[self.name] = frame.index if self.value is None else self.value
        return frame

    def on_gap(self, source_id: str, missing: int) -> None:
        self.gaps.append((source_id, missing))

    def close(self) -> None:
        self.closed += 1


@pytest.fixture
def make_frame() -> Callable[..., Frame]:
    return new_frame


@pytest.fixture
def make_source() -> type[ListSource]:
    return ListSource


@pytest.fixture
def make_blocking_source() -> type[BlockingSource]:
    return BlockingSource


@pytest.fixture
def make_sink() -> type[RecordingSink]:
    return RecordingSink


@pytest.fixture
def make_stage() -> type[Tagger]:
    return Tagger


class GraphRun:
    """``graph.run()`` on a background thread, so a hang fails the test instead of pytest."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.report: RunReport | None = None
        self.exception: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.report = self.graph.run()
        except BaseException as error:  # re-raised in the test's thread by wait()
            self.exception = error

    def wait(self, timeout: float = 10.0) -> RunReport:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"graph.run() still running after {timeout} s"
        if self.exception is not None:
            raise self.exception
        assert self.report is not None
        return self.report


@pytest.fixture
def start_graph() -> Callable[[Graph], GraphRun]:
    """Start ``graph.run()`` in the background; ``.wait(timeout)`` gives the report."""
    return GraphRun


@pytest.fixture
def run_graph() -> Callable[..., RunReport]:
    """Run a graph to the end, failing (not hanging) after ``timeout`` seconds."""

    def run(graph: Graph, timeout: float = 10.0) -> RunReport:
        return GraphRun(graph).wait(timeout)

    return run


@pytest.fixture
def wait_for() -> Callable[..., bool]:
    """``wait_for(condition, timeout=10.0)``: poll every 5 ms until true (the timeout only
    catches a hang, so it is generous for a busy machine)."""
    return lambda condition, timeout=10.0: wait_until(condition, timeout, step=0.005)

"""Several workers on one stateless stage: frames processed in parallel, output in order."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from fractions import Fraction

import numpy as np
import pytest

from pipeline.errors import ConfigError
from pipeline.frame import Frame
from pipeline.graph import Graph, NodeSpec
from pipeline.stage import Sink, Source, Stage


class Counter(Source):
    def __init__(self, count: int) -> None:
        self.count = count

    def frames(self) -> Iterator[Frame]:
        for i in range(self.count):
            yield Frame(np.zeros((2, 2, 3), np.uint8), i, Fraction(1, 30), i, "s")


class Jittery(Stage):
    """Sleeps a random time per frame (so parallel workers finish out of order)."""

    def __init__(self, seconds: float = 0.01, fail_on: int | None = None) -> None:
        self.seconds = seconds
        self.fail_on = fail_on
        self.rng = random.Random(0)
        self.threads: set[str] = set()
        self.lock = threading.Lock()

    def process(self, frame: Frame) -> Frame | None:
        with self.lock:
            self.threads.add(threading.current_thread().name)
            pause = self.rng.uniform(0, 2 * self.seconds)
        time.sleep(pause)
        if frame.index == self.fail_on:
            raise RuntimeError("boom")
        if frame.index % 10 == 9:
            return None  # a stage may drop frames
        return frame


class Recorder(Sink):
    def __init__(self) -> None:
        self.indices: list[int] = []

    def write(self, frame: Frame) -> None:
        self.indices.append(frame.index)


def run(
    workers: int, count: int = 60, fail_on: int | None = None
) -> tuple[Recorder, Jittery, Graph, float]:
    stage, sink = Jittery(fail_on=fail_on), Recorder()
    graph = Graph(
        [
            NodeSpec("src", Counter(count)),
            NodeSpec("model", stage, ["src"], workers=workers),
            NodeSpec("sink", sink, ["model"]),
        ]
    )
    start = time.monotonic()
    report = graph.run()
    assert report.error is None
    return sink, stage, graph, time.monotonic() - start


def test_parallel_workers_keep_the_order_and_share_the_work() -> None:
    sink, stage, graph, _ = run(workers=3)
    assert sink.indices == [i for i in range(60) if i % 10 != 9]
    assert len(stage.threads) == 3
    assert graph.metrics.stages["model"].processed == 60
    assert graph.metrics.stages["model"].filtered == 6


class Meeting(Stage):
    """Frames 0, 1 and 2 each wait in ``process`` until all three are there: only workers
    running at the same time get through (one worker alone would wait 10 s and fail)."""

    def __init__(self) -> None:
        self.barrier = threading.Barrier(3, timeout=10)
        self.met: list[int] = []

    def process(self, frame: Frame) -> Frame:
        if frame.index < 3:
            self.barrier.wait()
            self.met.append(frame.index)
        return frame


def test_parallel_workers_work_on_frames_at_the_same_time() -> None:
    # what makes them faster than one, checked without timing them
    stage, sink = Meeting(), Recorder()
    graph = Graph(
        [
            NodeSpec("src", Counter(12)),
            NodeSpec("model", stage, ["src"], workers=3),
            NodeSpec("sink", sink, ["model"]),
        ]
    )
    report = graph.run()
    assert report.error is None and graph.metrics.stages["model"].errors == 0
    assert sorted(stage.met) == [0, 1, 2]  # all three were in process() at once
    assert sink.indices == list(range(12))


def test_a_failing_frame_is_skipped_without_blocking_the_order() -> None:
    sink, _, graph, _ = run(workers=2, fail_on=4)
    assert sink.indices == [i for i in range(60) if i % 10 != 9 and i != 4]
    assert graph.metrics.stages["model"].errors == 1


class Stateful(Jittery):
    stateful = True


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        (lambda: [NodeSpec("m", Stateful(), ["src"], workers=2), NodeSpec("k", Recorder(), ["m"])],
         "stateless"),
        (lambda: [NodeSpec("m", Jittery(), ["src"]), NodeSpec("k", Recorder(), ["m"], workers=2)],
         "stateless"),
        (lambda: [NodeSpec("m", Jittery(), ["src"], workers=0), NodeSpec("k", Recorder(), ["m"])],
         ">= 1"),
    ],
    ids=["stateful", "sink", "zero"],
)  # fmt: skip
def test_workers_only_where_order_and_state_allow(specs, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Graph([NodeSpec("src", Counter(1)), *specs()])

"""Stages that run as parts: one stage in the config, a chain of threads in the graph."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import ClassVar

import pytest

from pipeline.errors import ConfigError
from pipeline.frame import Frame
from pipeline.graph import Graph, NodeSpec, RunReport
from pipeline.results import Detections
from pipeline.stage import Part, References, Stage


class Scored:
    """The intermediate a ``Model`` leaves between its parts."""

    def __init__(self, value: float) -> None:
        self.value = value


class Model(Stage):
    """pre: the frame's pixel value -> Scored; net: x10 (stateful: counts per source);
    post: Scored -> Detections with that score. Records the thread each part ran on."""

    produces = (Detections,)
    references: ClassVar[References] = {"after": (Detections,)}

    def __init__(self, after: str | None = None, stateful_net: bool = True) -> None:
        self.after, self.stateful_net = after, stateful_net
        self.opened = self.closed = 0
        self.threads: dict[str, set[str]] = {"pre": set(), "net": set(), "post": set()}
        self.gaps: list[tuple[str, int]] = []

    def parts(self) -> list[Part]:
        return [
            Part("pre", self.pre),
            Part("net", self.net, stateful=self.stateful_net, produces=(Scored,), owner=self),
            Part("post", self.post, produces=self.produces),
        ]

    def open(self) -> None:
        self.opened += 1

    def close(self) -> None:
        self.closed += 1

    def on_gap(self, source_id: str, missing: int) -> None:
        self.gaps.append((source_id, missing))

    def _seen(self, part: str) -> None:
        self.threads[part].add(threading.current_thread().name)

    def pre(self, frame: Frame) -> Frame:
        self._seen("pre")
        frame.results[self.name] = Scored(float(frame.image[0, 0, 0]))
        return frame

    def net(self, frame: Frame) -> Frame:
        self._seen("net")
        scored = frame.results[self.name]
        assert isinstance(scored, Scored)
        frame.results[self.name] = Scored(scored.value * 10)
        return frame

    def post(self, frame: Frame) -> Frame:
        self._seen("post")
        scored = frame.results[self.name]
        assert isinstance(scored, Scored)
        frame.results[self.name] = Detections.empty()
        frame.results[self.name].scores = [scored.value]  # type: ignore[assignment]
        return frame


class Reader(Stage):
    """Reads the Detections of the stage ``detections`` names."""

    references: ClassVar[References] = {"detections": (Detections,)}

    def __init__(self, detections: str) -> None:
        self.detections = detections


def test_a_stage_runs_as_its_parts_and_downstream_sees_one_stage(
    make_source, make_sink, run_graph: Callable[..., RunReport]
) -> None:
    model, sink = Model(), make_sink()
    graph = Graph([
        NodeSpec("src", make_source(6)),
        NodeSpec("model", model, ["src"]),
        NodeSpec("read", Reader(detections="model"), ["model"]),
        NodeSpec("out", sink, ["read"]),
    ])  # fmt: skip
    assert [n.name for n in graph.order] == ["src", "model/pre", "model/net", "model/post",
                                             "read", "out"]  # fmt: skip
    assert graph.stage_names == ["src", "read", "out", "model"]
    report = run_graph(graph)
    assert report.error is None
    assert [f.results["model"].scores for f in sink.frames] == [[i * 10.0] for i in range(6)]
    assert all(set(f.results) == {"model"} for f in sink.frames)  # no intermediate left
    # each part on a thread of its own, so they overlap
    assert len(set().union(*model.threads.values())) == 3
    assert (model.opened, model.closed) == (1, 1)  # once, by the part that owns it
    snapshot = graph.metrics.snapshot()["stages"]
    assert list(snapshot) == ["src", "model", "read", "out"]
    assert list(snapshot["model"]["parts"]) == ["pre", "net", "post"]
    assert snapshot["model"]["frames"] == 6 and snapshot["model"]["queue"]["capacity"] == 8
    parts = snapshot["model"]["parts"].values()
    assert snapshot["model"]["busy"] == pytest.approx(sum(p["busy"] for p in parts))
    table = graph.metrics.table().splitlines()
    rows = [line.split()[0] for line in table[2:-2]]
    assert rows == ["src", "model", "pre", "net", "post", "read", "out"]
    assert table[3].startswith("model") and table[4].startswith("  pre")


def test_workers_go_to_the_stateless_parts(make_source, make_sink, run_graph) -> None:
    model, sink = Model(stateful_net=True), make_sink()
    graph = Graph([NodeSpec("src", make_source(20)), NodeSpec("m", model, ["src"], workers=2),
                   NodeSpec("out", sink, ["m"])])  # fmt: skip
    workers = {n.name: n.spec.workers for n in graph.order}
    assert workers == {"src": 1, "m/pre": 2, "m/net": 1, "m/post": 2, "out": 1}
    assert run_graph(graph).error is None
    assert [f.index for f in sink.frames] == list(range(20))  # order kept
    assert len(model.threads["pre"]) == 2 and len(model.threads["net"]) == 1
    with pytest.raises(ConfigError, match="'m': several workers need a stateless stage"):
        Graph([NodeSpec("src", make_source(1)), NodeSpec("m", AllStateful(), ["src"], workers=2),
               NodeSpec("out", make_sink(), ["m"])])  # fmt: skip


class AllStateful(Model):
    def parts(self) -> list[Part]:
        return [Part("net", self.net, stateful=True, owner=self)]


def test_gaps_reach_the_stage_through_its_owner_part(make_source, make_sink, run_graph) -> None:
    model = Model()
    graph = Graph([NodeSpec("src", make_source(4, indices=[0, 1, 5, 6])),
                   NodeSpec("m", model, ["src"]), NodeSpec("out", make_sink(), ["m"])])  # fmt: skip
    assert run_graph(graph).error is None
    assert model.gaps == [("cam", 3)]


def test_the_stages_references_and_inputs_are_checked_by_its_config_name(make_source) -> None:
    def build(*specs: NodeSpec) -> Graph:
        return Graph([NodeSpec("src", make_source(1)), *specs])

    with pytest.raises(ConfigError, match="stage 'b' \\(\\): after: 'nope' is not a stage"):
        build(NodeSpec("a", Model(), ["src"]), NodeSpec("b", Model(after="nope"), ["a"]))
    build(NodeSpec("a", Model(), ["src"]), NodeSpec("b", Model(after="a"), ["a"]))
    # the stage's result is its last part's: not the intermediate of its first
    with pytest.raises(ConfigError, match="detections: 'b' is not a stage before this one"):
        build(NodeSpec("a", Model(), ["src"]), NodeSpec("r", Reader("b"), ["a"]),
              NodeSpec("b", Model(), ["r"]))  # fmt: skip
    with pytest.raises(ConfigError, match=r"stage 'r': inputs: 'mdl' is not a stage \(did you"
                       r" mean 'model'\?\)"):  # fmt: skip
        build(NodeSpec("model", Model(), ["src"]), NodeSpec("r", Reader("model"), ["mdl"]))


class Batcher(Stage):
    """Adds 1 to each frame's value; records the batches it was handed."""

    def __init__(self, size: int, wait: float = 0.0) -> None:
        self.batch_size, self.batch_wait = size, wait
        self.batches: list[list[tuple[str, int]]] = []

    def process(self, frame: Frame) -> Frame:
        return self.process_batch([frame])[0]  # type: ignore[return-value]

    def process_batch(self, frames: list[Frame]) -> list[Frame | None]:
        self.batches.append([(f.source_id, f.index) for f in frames])
        for f in frames:
            f.results[self.name] = int(f.image[0, 0, 0]) + 1
        return list(frames)


def test_a_batching_stage_gets_frames_of_every_source_together(
    make_source, make_sink, run_graph
) -> None:
    batcher, sink = Batcher(size=4, wait=0.5), make_sink()
    graph = Graph([
        NodeSpec("a", make_source(6, source_id="a")),
        NodeSpec("b", make_source(5, source_id="b")),
        NodeSpec("batch", batcher, ["a", "b"], join=False),
        NodeSpec("out", sink, ["batch"]),
    ])  # fmt: skip
    assert run_graph(graph).error is None
    sizes = [len(b) for b in batcher.batches]
    assert sum(sizes) == 11 and max(sizes) == 4 and len(sizes) >= 3  # waits for a full batch
    assert len({s for b in batcher.batches for s, _ in b}) == 2
    assert any(len({s for s, _ in b}) == 2 for b in batcher.batches)  # sources mixed
    for source in ("a", "b"):  # each source's frames in order, each once, results right
        seen = [i for b in batcher.batches for s, i in b if s == source]
        assert seen == sorted(seen) == list(range(6 if source == "a" else 5))
    assert sorted(f.results["batch"] - f.index % 256 for f in sink.frames) == [1] * 11
    assert graph.metrics.stages["batch"].processed == 11


def test_a_batch_does_not_wait_past_its_timeout(make_source, make_sink, run_graph) -> None:
    batcher = Batcher(size=8, wait=0.0)  # takes what is queued
    graph = Graph([NodeSpec("src", make_source(5, delay=0.02)), NodeSpec("b", batcher, ["src"]),
                   NodeSpec("out", make_sink(), ["b"])])  # fmt: skip
    assert run_graph(graph).error is None
    assert sum(len(b) for b in batcher.batches) == 5 and len(batcher.batches) >= 2


def test_batching_runs_on_one_thread(make_source, make_sink) -> None:
    with pytest.raises(ConfigError, match="'b': batch runs on one thread"):
        Graph([NodeSpec("src", make_source(1)), NodeSpec("b", Batcher(4), ["src"], workers=2),
               NodeSpec("out", make_sink(), ["b"])])  # fmt: skip

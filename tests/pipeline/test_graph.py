"""Graph: validation, wiring, running, fan-out/join, errors and shutdown."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import pytest

from pipeline.edges import Policy
from pipeline.errors import ConfigError, FrameGraphError, SinkError, SourceError, StageError
from pipeline.frame import Frame
from pipeline.graph import Graph, NodeSpec
from pipeline.results import Detections
from pipeline.stage import Sink, Source, Stage
from tests.conftest import wait_until


def linear(source, *stages, **spec_options) -> list[NodeSpec]:
    """source -> stages[0] -> stages[1] ..., names "src", then the given names."""
    specs = [NodeSpec("src", source)]
    previous = "src"
    for name, stage in stages:
        specs.append(NodeSpec(name, stage, [previous], **spec_options.get(name, {})))
        previous = name
    return specs


# ---- validation -------------------------------------------------------------------


class Detector(Stage):
    produces = (Detections,)

    def process(self, frame: Frame) -> Frame:
        frame.results[self.name] = Detections.empty()
        return frame


class BoxDrawer(Stage):
    consumes = (Detections,)


class Plain(Stage):
    def process(self, frame: Frame) -> Frame:
        frame.results[self.name] = True
        return frame


class Gen(Source):
    def frames(self) -> Iterator[Frame]:
        return iter(())


def test_duplicate_names_rejected():
    with pytest.raises(ConfigError, match="two stages are named 'a'"):
        Graph(
            [
                NodeSpec("src", Gen()),
                NodeSpec("a", Plain(), ["src"]),
                NodeSpec("a", Plain(), ["src"]),
            ]
        )


def test_unknown_input_rejected():
    with pytest.raises(ConfigError, match="stage 'a': inputs: 'nope' is not a stage"):
        Graph([NodeSpec("src", Gen()), NodeSpec("a", Plain(), ["nope"])])


def test_cycle_rejected():
    specs = [
        NodeSpec("src", Gen()),
        NodeSpec("a", Plain(), ["src", "c"]),
        NodeSpec("b", Plain(), ["a"]),
        NodeSpec("c", Plain(), ["b"]),
    ]
    with pytest.raises(ConfigError, match="cycle"):
        Graph(specs)


def test_self_loop_rejected():
    with pytest.raises(ConfigError, match="cycle through 'a'"):
        Graph([NodeSpec("src", Gen()), NodeSpec("a", Plain(), ["a"])])


def test_source_with_inputs_rejected():
    specs = [
        NodeSpec("src", Gen()),
        NodeSpec("src2", Gen(), ["src"]),
        NodeSpec("a", Plain(), ["src"]),
    ]
    with pytest.raises(ConfigError, match="source 'src2' cannot have inputs"):
        Graph(specs)


def test_stage_without_inputs_rejected():
    with pytest.raises(ConfigError, match="stage 'a' has no inputs"):
        Graph([NodeSpec("src", Gen()), NodeSpec("a", Plain())])


def test_graph_without_source_or_without_stages_rejected():
    with pytest.raises(ConfigError, match="no source"):
        Graph([])
    with pytest.raises(ConfigError, match="no stage after its sources"):
        Graph([NodeSpec("src", Gen())])


def test_missing_consumed_result_type_rejected():
    specs = [NodeSpec("src", Gen()), NodeSpec("draw", BoxDrawer(), ["src"])]
    with pytest.raises(ConfigError, match=r"'draw'.*needs Detections"):
        Graph(specs)


def test_consumed_result_type_found_upstream_through_other_stages():
    specs = [
        NodeSpec("src", Gen()),
        NodeSpec("det", Detector(), ["src"]),
        NodeSpec("plain", Plain(), ["det"]),
        NodeSpec("draw", BoxDrawer(), ["plain"]),
    ]
    Graph(specs)  # no error


def test_consumed_result_type_from_one_branch_of_a_join():
    specs = [
        NodeSpec("src", Gen()),
        NodeSpec("det", Detector(), ["src"]),
        NodeSpec("plain", Plain(), ["src"]),
        NodeSpec("draw", BoxDrawer(), ["plain", "det"]),
    ]
    Graph(specs)
    # ... but not from a sibling branch that does not feed the stage.
    specs = [
        NodeSpec("src", Gen()),
        NodeSpec("det", Detector(), ["src"]),
        NodeSpec("draw", BoxDrawer(), ["src"]),
    ]
    with pytest.raises(ConfigError, match="needs Detections"):
        Graph(specs)


def test_specs_in_any_order_and_stage_names_assigned():
    a, b = Plain(), Plain()
    graph = Graph([NodeSpec("b", b, ["a"]), NodeSpec("a", a, ["src"]), NodeSpec("src", Gen())])
    assert [n.name for n in graph.order] == ["src", "a", "b"]
    assert (a.name, b.name) == ("a", "b")


# ---- policies -----------------------------------------------------------------------


def test_default_policies(make_source, make_stage, make_sink):
    file_graph = Graph(linear(make_source(1), ("a", make_stage()), ("out", make_sink())))
    assert file_graph.nodes["a"].inbound.policy is Policy.BLOCK
    assert file_graph.nodes["out"].inbound.policy is Policy.BLOCK
    assert not file_graph.live

    live_graph = Graph(linear(make_source(1, live=True), ("a", make_stage()), ("out", make_sink())))
    assert live_graph.live
    assert live_graph.nodes["a"].inbound.policy is Policy.LATEST
    assert live_graph.nodes["a"].inbound.capacity == 1
    # Only the edge right after a live source drops; later edges keep every frame.
    assert live_graph.nodes["out"].inbound.policy is Policy.BLOCK


def test_explicit_policy_and_capacity_win(make_source, make_stage, make_sink):
    specs = linear(
        make_source(1, live=True),
        ("a", make_stage()),
        ("out", make_sink()),
        a={"policy": Policy.DROP_OLDEST, "capacity": 3},
        out={"capacity": 5},
    )
    graph = Graph(specs)
    assert graph.nodes["a"].inbound.policy is Policy.DROP_OLDEST
    assert graph.nodes["a"].inbound.capacity == 3
    assert graph.nodes["out"].inbound.capacity == 5


# ---- running: files ----------------------------------------------------------------


def test_linear_file_run_delivers_every_frame_in_order(
    make_source, make_stage, make_sink, run_graph
):
    n = 40
    source, tag, sink = make_source(n), make_stage(), make_sink(delay=0.001)
    specs = linear(source, ("tag", tag), ("out", sink), tag={"capacity": 2}, out={"capacity": 2})
    graph = Graph(specs)
    report = run_graph(graph)

    assert report.error is None and not report.interrupted
    assert sink.indices == list(range(n))
    assert [f.pts for f in sink.frames] == [i * 512 for i in range(n)]
    assert [f.results["tag"] for f in sink.frames] == list(range(n))
    assert sink.gaps == [] and tag.gaps == []
    # Back-pressure: the slow sink filled its 2-frame edge and nothing was dropped.
    assert graph.nodes["out"].inbound.max_depth == 2
    assert report.metrics.total_drops() == 0
    assert report.metrics.frames_out == n
    assert report.metrics.stages["tag"].processed == n
    assert report.metrics.stages["src"].processed == n
    for stage in (source, tag, sink):
        assert (stage.opened, stage.closed) == (1, 1)


def test_filtered_frames_are_counted_and_reported_as_gaps(
    make_source, make_stage, make_sink, run_graph
):
    sink = make_sink()
    graph = Graph(linear(make_source(6), ("tag", make_stage(drop=(2, 3))), ("out", sink)))
    report = run_graph(graph)
    assert sink.indices == [0, 1, 4, 5]
    assert sink.gaps == [("cam", 2)]
    assert report.metrics.stages["tag"].filtered == 2


def test_on_gap_gets_number_of_missing_frames(make_source, make_stage, make_sink, run_graph):
    source = make_source(indices=[0, 1, 2, 5, 6, 9, 10])
    tag, sink = make_stage(), make_sink()
    run_graph(Graph(linear(source, ("tag", tag), ("out", sink))))
    assert tag.gaps == [("cam", 2), ("cam", 2)]
    assert sink.gaps == [("cam", 2), ("cam", 2)]
    assert tag.seen == [0, 1, 2, 5, 6, 9, 10]


def test_gaps_are_tracked_per_source(make_source, make_stage, make_sink, run_graph):
    s1 = make_source(indices=[0, 1, 2, 3], source_id="s1", delay=0.001)
    s2 = make_source(indices=[0, 3, 4], source_id="s2", delay=0.001)
    tag, sink = make_stage(), make_sink()
    specs = [
        NodeSpec("s1", s1),
        NodeSpec("s2", s2),
        NodeSpec("tag", tag, ["s1", "s2"], join=False),
        NodeSpec("out", sink, ["tag"]),
    ]
    run_graph(Graph(specs))
    assert tag.gaps == [("s2", 2)]
    by_source = {sid: [f.index for f in sink.frames if f.source_id == sid] for sid in ("s1", "s2")}
    assert by_source == {"s1": [0, 1, 2, 3], "s2": [0, 3, 4]}


def test_max_frames_limits_each_source(make_source, make_sink, run_graph):
    source, sink = make_source(20), make_sink()
    graph = Graph(linear(source, ("out", sink)), max_frames=5)
    assert graph.expected_frames() == 5
    report = run_graph(graph)
    assert sink.indices == [0, 1, 2, 3, 4]
    assert source.yielded == 5
    assert report.error is None


def test_expected_frames(make_source, make_stage):
    two = [
        NodeSpec("a", make_source(20)),
        NodeSpec("b", make_source(3)),
        NodeSpec("t", make_stage(), ["a", "b"]),
    ]
    assert Graph(two).expected_frames() == 23
    two = [
        NodeSpec("a", make_source(20)),
        NodeSpec("b", make_source(3)),
        NodeSpec("t", make_stage(), ["a", "b"]),
    ]
    assert Graph(two, max_frames=5).expected_frames() == 8
    unknown = [NodeSpec("a", make_source(None)), NodeSpec("t", make_stage(), ["a"])]
    assert Graph(unknown).expected_frames() is None


# ---- fan-out and join ------------------------------------------------------------------


def test_fan_out_and_join_merges_both_branches_for_every_frame(
    make_source, make_stage, make_sink, run_graph
):
    n = 30
    a = make_stage("A", new_image=200)  # a branch that replaces the pixels
    b = make_stage("B", delay=0.001)  # a slower branch
    render, sink = make_stage(), make_sink()
    specs = [
        NodeSpec("src", make_source(n)),
        NodeSpec("a", a, ["src"]),
        NodeSpec("b", b, ["src"]),
        NodeSpec("render", render, ["a", "b"]),
        NodeSpec("out", sink, ["render"]),
    ]
    report = run_graph(Graph(specs))
    assert report.error is None
    assert render.seen == list(range(n))
    assert sink.indices == list(range(n))
    for i, frame in enumerate(sink.frames):
        assert frame.results == {"a": "A", "b": "B", "render": i}
        assert int(frame.image[0, 0, 0]) == 200  # image of the first input, "a"
    assert report.metrics.stages["render"].partial_joins == 0


def test_fan_out_branches_get_their_own_results(make_source, make_sink, run_graph):
    class Peek(Stage):
        def __init__(self) -> None:
            self.keys: list[set[str]] = []

        def process(self, frame: Frame) -> Frame:
            self.keys.append(set(frame.results))
            frame.results[self.name] = True
            return frame

    a, b = Peek(), Peek()
    out_a, out_b = make_sink(), make_sink()
    specs = [
        NodeSpec("src", make_source(5)),
        NodeSpec("a", a, ["src"]),
        NodeSpec("b", b, ["src"]),
        NodeSpec("out_a", out_a, ["a"]),
        NodeSpec("out_b", out_b, ["b"]),
    ]
    run_graph(Graph(specs))
    assert a.keys == [set()] * 5 and b.keys == [set()] * 5
    assert [set(f.results) for f in out_a.frames] == [{"a"}] * 5
    assert [set(f.results) for f in out_b.frames] == [{"b"}] * 5
    assert all(fa is not fb for fa, fb in zip(out_a.frames, out_b.frames, strict=True))


def test_join_emits_partial_frame_when_a_branch_filtered_it(
    make_source, make_stage, make_sink, run_graph
):
    a, b = make_stage("A"), make_stage("B", drop=(2,))
    render, sink = make_stage(), make_sink()
    specs = [
        NodeSpec("src", make_source(5)),
        NodeSpec("a", a, ["src"]),
        NodeSpec("b", b, ["src"]),
        NodeSpec("render", render, ["a", "b"]),
        NodeSpec("out", sink, ["render"]),
    ]
    report = run_graph(Graph(specs))
    assert sink.indices == [0, 1, 2, 3, 4]
    assert "b" not in sink.frames[2].results and sink.frames[2].results["a"] == "A"
    assert all(f.results["b"] == "B" for i, f in enumerate(sink.frames) if i != 2)
    assert report.metrics.stages["render"].partial_joins == 1


def test_join_false_passes_frames_of_several_sources_through(
    make_source, make_stage, make_sink, run_graph
):
    tag, sink = make_stage(), make_sink()
    specs = [
        NodeSpec("s1", make_source(10, source_id="s1")),
        NodeSpec("s2", make_source(7, source_id="s2")),
        NodeSpec("tag", tag, ["s1", "s2"], join=False),
        NodeSpec("out", sink, ["tag"]),
    ]
    report = run_graph(Graph(specs))
    assert len(sink.frames) == 17
    assert [f.index for f in sink.frames if f.source_id == "s1"] == list(range(10))
    assert [f.index for f in sink.frames if f.source_id == "s2"] == list(range(7))
    assert report.metrics.frames_out == 17


def test_frames_out_counts_each_frame_once_with_two_sinks(make_source, make_sink, run_graph):
    # A file + RTSP config has two terminal stages; throughput and the progress bar
    # (whose total is the source's frame count) must count every frame once.
    out_a, out_b = make_sink(), make_sink()
    specs = [
        NodeSpec("src", make_source(10)),
        NodeSpec("file", out_a, ["src"]),
        NodeSpec("rtsp", out_b, ["src"]),
    ]
    report = run_graph(Graph(specs))
    assert out_a.indices == list(range(10)) and out_b.indices == list(range(10))
    assert report.metrics.frames_out == 10


# ---- live input ----------------------------------------------------------------------------


def test_live_source_faster_than_stage_drops_to_latest(
    make_source, make_stage, make_sink, run_graph
):
    n = 40

    class Slow(make_stage):
        def process(self, frame: Frame) -> Frame | None:
            if not self.seen:  # busy on its first frame until the source is done
                assert wait_until(lambda: source.yielded == n, 10)
            return super().process(frame)

    source = make_source(n, live=True, delay=0.002)
    slow, sink = Slow(delay=0.002), make_sink()
    graph = Graph(linear(source, ("slow", slow), ("out", sink)))
    report = run_graph(graph)
    edge = graph.nodes["slow"].inbound

    assert edge.policy is Policy.LATEST
    assert edge.drops > 0
    assert len(slow.seen) + edge.drops == n  # every frame was either handled or counted
    assert report.metrics.total_drops() == edge.drops
    assert report.metrics.snapshot()["stages"]["slow"]["queue"]["drops"] == edge.drops
    assert slow.seen == sorted(slow.seen)
    assert slow.seen[-1] == n - 1  # the newest frame is never lost
    # Each dropped frame between two handled ones was announced as a gap.
    expected = [
        ("cam", b - a - 1) for a, b in zip(slow.seen, slow.seen[1:], strict=False) if b - a > 1
    ]
    assert slow.gaps == expected and expected
    assert sink.indices == slow.seen
    assert report.error is None


def test_live_join_times_out_and_keeps_frame_order(make_source, make_sink, run_graph):
    # Branch "b" stalls on frame 3 until frame 3 has left the graph: with a 0.1 s join
    # timeout the join must go on with "a" alone, and b's late frames must not come out a
    # second time.
    class StallOnce(Stage):
        def process(self, frame: Frame) -> Frame:
            if frame.index == 3:
                assert wait_until(lambda: 3 in sink.indices, 10), "the join waited for b"
            frame.results[self.name] = "B"
            return frame

    sink = make_sink()
    specs = [
        NodeSpec("src", make_source(10, live=True, delay=0.02)),
        NodeSpec("a", Plain(), ["src"], policy=Policy.BLOCK),  # no frame dropped on a busy
        NodeSpec("b", StallOnce(), ["src"], policy=Policy.BLOCK),  # machine: frame 3 comes
        NodeSpec("render", Plain(), ["a", "b"]),
        NodeSpec("out", sink, ["render"]),
    ]
    report = run_graph(Graph(specs, join_timeout=0.1), timeout=15.0)
    assert report.error is None and report.metrics.stages["b"].errors == 0
    assert sink.indices == sorted(set(sink.indices)), "duplicate or out-of-order frames"
    assert sink.indices[-1] == 9
    assert "b" not in sink.frames[sink.indices.index(3)].results  # timed out without b
    assert report.metrics.stages["render"].partial_joins >= 1


# ---- errors ---------------------------------------------------------------------------------


def test_on_error_skip_drops_only_the_failing_frame(
    make_source, make_stage, make_sink, run_graph, caplog
):
    tag, sink = make_stage(fail_on=(3, 7)), make_sink()
    with caplog.at_level(logging.ERROR, logger="framegraph"):
        report = run_graph(Graph(linear(make_source(10), ("tag", tag), ("out", sink))))
    assert report.error is None
    assert sink.indices == [0, 1, 2, 4, 5, 6, 8, 9]
    assert report.metrics.stages["tag"].errors == 2
    assert report.metrics.stages["tag"].processed == 8
    assert sink.gaps == [("cam", 1), ("cam", 1)]
    assert "'tag'" in caplog.text and "cam#3" in caplog.text and "boom" in caplog.text


def test_on_error_stop_ends_run_with_stage_error(make_source, make_stage, make_sink, run_graph):
    source = make_source(1000)
    tag, sink = make_stage(fail_on=(3,)), make_sink()
    specs = linear(source, ("tag", tag), ("out", sink), tag={"on_error": "stop", "capacity": 2})
    report = run_graph(Graph(specs))
    assert isinstance(report.error, StageError)
    assert report.error.exit_code == 6
    message = str(report.error)
    assert (
        "'tag'" in message and "cam#3" in message and "ValueError" in message and "boom" in message
    )
    assert sink.indices == [0, 1, 2]  # nothing after the failing frame
    assert sink.closed == 1
    assert source.yielded < 1000  # the source was stopped
    assert report.metrics.stages["tag"].errors == 1


def test_skip_ends_the_run_after_max_errors_in_a_row(make_source, make_stage, make_sink, run_graph):
    source = make_source(1000)
    tag, sink = make_stage(fail_on=(3, 4, 5, 6)), make_sink()
    limit = {"on_error": "skip", "max_errors_in_a_row": 3}
    report = run_graph(Graph(linear(source, ("tag", tag), ("out", sink), tag=limit)))
    assert isinstance(report.error, StageError)
    message = str(report.error)
    assert "'tag'" in message and "cam#5" in message and "3 frames in a row" in message
    assert "ValueError: boom" in message
    assert sink.indices == [0, 1, 2]
    assert source.yielded < 1000
    assert report.metrics.stages["tag"].errors == 3


def test_skip_errors_not_in_a_row_never_reach_the_limit(
    make_source, make_stage, make_sink, run_graph
):
    tag, sink = make_stage(fail_on=(1, 2, 4, 5, 7, 8)), make_sink()
    limit = {"max_errors_in_a_row": 3}
    report = run_graph(Graph(linear(make_source(10), ("tag", tag), ("out", sink), tag=limit)))
    assert report.error is None
    assert sink.indices == [0, 3, 6, 9]
    assert report.metrics.stages["tag"].errors == 6


def test_frame_graph_error_in_process_always_stops(make_source, make_stage, make_sink, run_graph):
    error = SinkError("disk full")
    tag = make_stage(fail_on=(2,), error=lambda: error)
    sink = make_sink()
    specs = linear(make_source(1000), ("tag", tag), ("out", sink), tag={"on_error": "skip"})
    report = run_graph(Graph(specs))
    assert report.error is error
    assert sink.indices == [0, 1]
    assert sink.closed == 1


def test_failing_branch_with_stop_ends_a_joined_graph(
    make_source, make_stage, make_sink, run_graph
):
    a, b = make_stage(fail_on=(5,)), make_stage()
    sink = make_sink()
    specs = [
        NodeSpec("src", make_source(1000)),
        NodeSpec("a", a, ["src"], on_error="stop"),
        NodeSpec("b", b, ["src"]),
        NodeSpec("render", make_stage(), ["a", "b"]),
        NodeSpec("out", sink, ["render"]),
    ]
    report = run_graph(Graph(specs))
    assert isinstance(report.error, StageError)
    assert sink.closed == 1
    assert sink.indices[:5] == [0, 1, 2, 3, 4]
    assert all("a" in f.results for f in sink.frames[:5])


def test_source_exception_becomes_stage_error(make_frame, make_sink, run_graph):
    class Flaky(Source):
        def frames(self) -> Iterator[Frame]:
            for i in range(3):
                yield make_frame(i)
            raise OSError("device unplugged")

    sink = make_sink()
    report = run_graph(Graph(linear(Flaky(), ("out", sink))))
    assert isinstance(report.error, StageError)
    assert "'src'" in str(report.error) and "device unplugged" in str(report.error)
    assert sink.indices == [0, 1, 2]  # frames read before the failure still arrive
    assert sink.closed == 1


def test_source_error_is_reported_as_is(make_sink, run_graph):
    error = SourceError("clip.mp4: not a video")

    class Bad(Source):
        def frames(self) -> Iterator[Frame]:
            raise error

    report = run_graph(Graph(linear(Bad(), ("out", make_sink()))))
    assert report.error is error
    assert report.error.exit_code == 3


def test_close_is_called_on_opened_stages_when_an_open_fails(
    make_source, make_stage, make_sink, run_graph
):
    # The source opens last (sinks first), so a failing source finds every other stage open.
    error = SourceError("no camera")
    source, tag, sink = make_source(5, fail_open=error), make_stage(), make_sink()
    report = run_graph(Graph(linear(source, ("tag", tag), ("out", sink))))
    assert report.error is error
    assert (tag.opened, tag.closed) == (1, 1)
    assert (sink.opened, sink.closed) == (1, 1)
    assert sink.frames == [] and tag.seen == []

    # A stage in the middle fails: the sink opened before it is closed; the source,
    # never opened, never starts decoding.
    error = ConfigError("bad model")
    source, tag, sink = make_source(5), make_stage(fail_open=error), make_sink()
    report = run_graph(Graph(linear(source, ("tag", tag), ("out", sink))))
    assert report.error is error
    assert (sink.opened, sink.closed) == (1, 1)
    assert source.opened == 0 and source.yielded == 0


def test_plain_exception_in_open_is_returned_in_report(
    make_source, make_stage, make_sink, run_graph
):
    # run() promises that errors raised while opening come back in the report;
    # a model that fails to load raises RuntimeError/OSError, not FrameGraphError.
    tag, sink = make_stage(fail_open=RuntimeError("CUDA error: no device")), make_sink()
    report = run_graph(Graph(linear(make_source(5), ("tag", tag), ("out", sink))))
    assert isinstance(report.error, FrameGraphError)
    assert "CUDA error" in str(report.error)
    assert sink.closed == 1


def test_failing_close_is_reported_and_others_still_close(
    make_source, make_stage, make_sink, run_graph
):
    class BadClose(Stage):
        def close(self) -> None:
            raise OSError("flush failed")

    source, sink = make_source(3), make_sink()
    report = run_graph(Graph(linear(source, ("bad", BadClose()), ("out", sink))))
    assert isinstance(report.error, StageError)
    assert "closing stage 'bad' failed" in str(report.error)
    assert sink.closed == 1 and source.closed == 1
    assert sink.indices == [0, 1, 2]


# ---- shutdown --------------------------------------------------------------------------------


def test_stop_drains_and_closes_sink(make_source, make_stage, make_sink, start_graph, wait_for):
    source, tag, sink = make_source(None, delay=0.001), make_stage(delay=0.001), make_sink()
    graph = Graph(linear(source, ("tag", tag), ("out", sink)))
    running = start_graph(graph)
    assert wait_for(lambda: len(sink.frames) >= 5)
    graph.stop()
    report = running.wait(10.0)
    assert report.error is None and not report.interrupted
    assert source.stop_requested.is_set()
    assert sink.closed == 1
    assert sink.closed_after_frames == len(sink.frames)  # close came after the last write
    assert len(sink.frames) >= 5
    # nothing lost on the way out: every frame the source gave is written
    assert sink.indices == list(range(source.yielded))
    assert graph.metrics.stages["src"].processed == source.yielded


def test_first_interrupt_drains_and_is_reported(make_source, make_sink, start_graph, wait_for):
    source, sink = make_source(None, delay=0.001), make_sink()
    graph = Graph(linear(source, ("out", sink)))
    running = start_graph(graph)
    assert wait_for(lambda: len(sink.frames) >= 3)
    graph.interrupt()
    report = running.wait(10.0)
    assert report.interrupted
    assert sink.closed == 1
    assert sink.indices == list(range(source.yielded))  # every frame read, not just a prefix
    assert graph.metrics.stages["src"].processed == source.yielded


class GatedSink(Sink):
    """Holds its first write until ``gate`` opens (``writing`` is set meanwhile)."""

    def __init__(self) -> None:
        self.gate, self.writing = threading.Event(), threading.Event()
        self.indices: list[int] = []
        self.closed = 0

    def close(self) -> None:
        self.closed += 1

    def write(self, frame: Frame) -> None:
        self.writing.set()
        assert self.gate.wait(10), "the test never opened the gate"
        self.indices.append(frame.index)


def test_interrupt_writes_every_frame_in_flight_however_long_the_drain(
    make_source, start_graph, wait_for
):
    # Ctrl-C with frames in flight: one in the sink, four queued, one read and waiting for
    # room. The drain outlasts stop_grace, but a source waiting for room downstream is not
    # stuck in a read: it must not be cut off (its frame would land behind end of stream).
    source, sink = make_source(None), GatedSink()
    graph = Graph(linear(source, ("out", sink), out={"capacity": 4}), stop_grace=0.01)
    edge = graph.nodes["out"].inbound
    running = start_graph(graph)
    assert wait_for(lambda: sink.writing.is_set() and edge.depth == 4 and source.yielded == 6)
    graph.interrupt()
    time.sleep(0.05)  # at least stop_grace
    graph._enforce_stop_grace()  # what run() does every 0.25 s: the grace is over
    sink.gate.set()
    report = running.wait(10.0)
    assert report.interrupted and report.error is None
    emitted = graph.metrics.stages["src"].processed  # the run's own record of frames read
    assert emitted == source.yielded == 6
    assert sink.indices == list(range(6))


def test_a_frame_being_read_when_the_interrupt_came_is_written(make_source, make_sink, run_graph):
    sink = make_sink()

    class InterruptedWhileReading(make_source):
        def frames(self) -> Iterator[Frame]:
            for frame in super().frames():
                if frame.index == 3:
                    graph.interrupt()  # Ctrl-C while the source is reading frame 3
                yield frame

    source = InterruptedWhileReading(None)
    graph = Graph(linear(source, ("out", sink)))
    report = run_graph(graph)
    assert report.interrupted and source.yielded == 4
    assert sink.indices == [0, 1, 2, 3]
    assert graph.metrics.stages["src"].processed == 4


def test_stop_cuts_off_a_source_stuck_in_a_read(
    make_blocking_source, make_sink, start_graph, wait_for
):
    source, sink = make_blocking_source(before=3), make_sink()
    graph = Graph(linear(source, ("out", sink)), stop_grace=0.2)
    running = start_graph(graph)
    try:
        assert wait_for(source.blocked.is_set)
        graph.stop()
        report = running.wait(10.0)  # the read would block 30 s: only a hang fails here
        assert graph.nodes["src"].busy  # the run ended with the read still stuck: cut off
        assert sink.indices == [0, 1, 2]
        assert sink.closed == 1
        assert report.error is None
    finally:
        source.release.set()


def test_abort_returns_quickly_with_a_blocked_source(
    make_blocking_source, make_sink, start_graph, wait_for
):
    source, sink = make_blocking_source(before=2), make_sink()
    graph = Graph(linear(source, ("out", sink)), stop_grace=0.3)
    running = start_graph(graph)
    try:
        assert wait_for(source.blocked.is_set)
        graph.abort()
        assert graph.nodes["src"].busy  # abort() did not wait for the read (it blocks 30 s)
        running.wait(10.0)
        assert graph.nodes["src"].busy  # nor did run(): it ended with the read still stuck
        assert sink.closed == 1
    finally:
        source.release.set()


def test_abort_does_not_drain_queued_frames(make_source, start_graph, wait_for):
    source, sink = make_source(100), GatedSink()
    graph = Graph(linear(source, ("out", sink), out={"capacity": 100}))
    edge = graph.nodes["out"].inbound
    running = start_graph(graph)
    assert wait_for(lambda: sink.writing.is_set() and edge.depth == 99)  # frame 0 in the sink
    graph.abort()
    sink.gate.set()
    running.wait(10.0)
    assert sink.indices == [0]  # the 99 queued frames were abandoned
    assert sink.closed == 1


def test_second_interrupt_aborts(make_source, start_graph, wait_for):
    source, sink = make_source(100), GatedSink()
    graph = Graph(linear(source, ("out", sink), out={"capacity": 100}))
    edge = graph.nodes["out"].inbound
    running = start_graph(graph)
    assert wait_for(lambda: sink.writing.is_set() and edge.depth == 99)
    graph.interrupt()  # drains: would write the 99 queued frames
    graph.interrupt()  # aborts
    sink.gate.set()
    report = running.wait(10.0)
    assert report.interrupted
    assert sink.indices == [0]
    assert sink.closed == 1

"""Many inputs in one run (``kind: sources``): fair interleaving, one output per source
finalised when that source ends, a failing input that ends alone, inputs added and removed
while the graph runs."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import av
import pytest

from pipeline.config import build_graph, parse_config, register
from pipeline.errors import ConfigError, SourceError
from pipeline.frame import Frame
from pipeline.graph import Graph, NodeSpec
from pipeline.per_source import PerSource
from pipeline.stage import Sink, Source
from stages.sources.group import SourceGroup
from stages.sources.synthetic import SyntheticSource
from tests.conftest import wait_until


def synthetic(frames: int | None, live: bool = False, fps: float = 25.0) -> dict:
    return {"kind": "synthetic", "width": 64, "height": 48, "frames": frames, "live": live,
            "fps": fps}  # fmt: skip


@register("test_breaking")
class Breaking(SyntheticSource):
    """A synthetic input whose read fails after ``after`` frames (a camera sending garbage)."""

    def __init__(self, after: int = 3, source_id: str = "broken") -> None:
        super().__init__(64, 48, frames=None, source_id=source_id)
        self.after = after

    def frames(self) -> Iterator[Frame]:
        for i, frame in enumerate(super().frames()):
            if i == self.after:
                raise SourceError(f"{self.source_id}: corrupt packet")
            yield frame


class Slow(Sink):
    """Keeps the order frames arrive in, taking ``delay`` seconds each."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay, self.seen, self.ended = delay, [], []

    def write(self, frame: Frame) -> None:
        time.sleep(self.delay)
        self.seen.append((frame.source_id, frame.index))

    def on_source_end(self, source_id: str) -> None:
        self.ended.append((source_id, len(self.seen)))


def run_group(group: Source, sink: Sink, capacity: int = 8) -> Graph:
    graph = Graph([NodeSpec("cams", group), NodeSpec("out", sink, ["cams"], capacity=capacity)])
    graph.report = graph.run()  # type: ignore[attr-defined]
    return graph


def group_of(graph: Graph) -> SourceGroup:
    return graph.source_group()


def count_frames(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def test_inputs_take_turns_so_a_long_one_cannot_starve_a_short_one() -> None:
    group = SourceGroup({"long": synthetic(60), "short": synthetic(10)})
    sink = Slow(delay=0.004)  # the graph is the bottleneck: both queues stay full
    graph = run_group(group, sink, capacity=1)
    assert graph.report.error is None
    first = [source for source, _ in sink.seen[:20]]
    assert first.count("short") >= 6  # round robin: about every other frame (8-10 here)
    assert sorted(i for s, i in sink.seen if s == "short") == list(range(10))
    assert len(sink.seen) == 70
    # each input's end follows its last frame
    ends = dict(sink.ended)
    assert ends["short"] < ends["long"] == 70
    assert max(n for n, (s, _) in enumerate(sink.seen, 1) if s == "short") <= ends["short"]


def test_one_output_file_per_source_each_finalised_when_its_source_ends(tmp_path) -> None:
    config = parse_config({
        "stages": [
            {"name": "cams", "kind": "sources",
             "sources": {"a": synthetic(5), "b": synthetic(12), "c": synthetic(30)}},
            {"name": "video", "kind": "video_file", "path": str(tmp_path / "{source}.mp4")},
        ]
    })  # fmt: skip
    graph = build_graph(config)
    video = graph.nodes["video"].stage
    assert isinstance(video, PerSource) and video.kind == "video_file"
    report = graph.run()
    assert report.error is None
    assert [count_frames(tmp_path / f"{n}.mp4") for n in "abc"] == [5, 12, 30]
    assert sorted(video.finished) == ["a", "b", "c"]
    assert video.left_at_close == []  # each closed when its source ended, not at the end
    assert graph.metrics.sources["b"].frames == 12
    rows = graph.metrics.snapshot()["sources"]
    assert {n: (r["frames"], r["state"]) for n, r in rows.items()} == {
        "a": (5, "ended"),
        "b": (12, "ended"),
        "c": (30, "ended"),
    }
    assert re.search(r"^c\s+ended\s+30\s", graph.metrics.table(), re.M)


def test_a_wrong_per_source_sink_argument_fails_when_the_graph_is_built() -> None:
    with pytest.raises(ConfigError, match="unknown key 'bogus'"):
        build_graph(parse_config({"stages": [
            {"name": "cams", "kind": "sources", "sources": {"a": synthetic(2)}},
            {"name": "video", "kind": "video_file", "path": "{source}.mp4", "bogus": 1},
        ]}))  # fmt: skip


def test_a_failing_input_ends_alone_and_the_run_reports_it_at_the_end() -> None:
    group = SourceGroup({"good": synthetic(40), "bad": {"kind": "test_breaking", "after": 3}})
    sink = Slow()
    graph = run_group(group, sink)
    assert sorted(i for s, i in sink.seen if s == "good") == list(range(40))
    assert [i for s, i in sink.seen if s == "bad"] == [0, 1, 2]
    assert ("bad", 3) in [(s, sum(1 for x, _ in sink.seen[:n] if x == "bad"))
                          for s, n in sink.ended]  # fmt: skip
    assert isinstance(graph.report.error, SourceError)
    assert "corrupt packet" in str(graph.report.error)
    assert group.status()["inputs"]["bad"]["state"] == "failed"


def test_inputs_added_and_removed_while_running_open_and_finalise_their_outputs(
    tmp_path,
) -> None:
    config = parse_config({
        "stages": [
            {"name": "cams", "kind": "sources", "keep_open": True,
             "sources": {"cam1": synthetic(None, live=True, fps=50)}},
            {"name": "video", "kind": "video_file", "path": str(tmp_path / "{source}.mp4")},
        ]
    })  # fmt: skip
    graph = build_graph(config)
    video = graph.nodes["video"].stage
    runner = threading.Thread(target=lambda: setattr(graph, "report", graph.run()))
    runner.start()
    try:
        assert wait_until(lambda: graph.metrics.sources.get("cam1") is not None, 20)
        graph.add_source("cam2", synthetic(10))
        with pytest.raises(ConfigError, match="'cam1' is running"):
            graph.add_source("cam1", synthetic(3))
        assert wait_until(lambda: "cam2" in video.finished, 20)  # ended: finalised at once
        assert count_frames(tmp_path / "cam2.mp4") == 10
        before = graph.metrics.sources["cam1"].frames
        assert wait_until(lambda: graph.metrics.sources["cam1"].frames > before + 5, 10)
        assert "cam1" not in video.finished  # undisturbed: still recording
        before = graph.metrics.sources["cam1"].frames
        graph.remove_source("cam1")
        assert wait_until(lambda: "cam1" in video.finished, 20)
        assert count_frames(tmp_path / "cam1.mp4") >= before > 0
        graph.remove_source("cam1")  # over: forgotten
        assert "cam1" not in group_of(graph).status()["inputs"]
        with pytest.raises(ConfigError, match="no input named 'cam1'"):
            graph.remove_source("cam1")
        graph.add_source("cam1", synthetic(4))  # the name is free again: a new file
        assert wait_until(lambda: video.finished.count("cam1") == 2, 20)
        assert count_frames(tmp_path / "cam1.mp4") == 4
    finally:
        graph.stop()
        runner.join(20)
    assert not runner.is_alive() and graph.report.error is None


def test_a_graph_without_a_group_cannot_add_inputs() -> None:
    one = SyntheticSource(64, 48, frames=1)
    graph = Graph([NodeSpec("src", one), NodeSpec("out", Slow(), ["src"])])
    with pytest.raises(ConfigError, match="no source group"):
        graph.add_source("x", synthetic(1))


def test_max_frames_counts_each_input() -> None:
    group = SourceGroup({"a": synthetic(None), "b": synthetic(None)})
    sink = Slow()
    graph = Graph([NodeSpec("cams", group), NodeSpec("out", sink, ["cams"])], max_frames=7)
    assert graph.run().error is None
    assert sorted(sink.seen) == sorted((s, i) for s in "ab" for i in range(7))


def test_a_model_stage_frees_each_sources_state_when_it_ends() -> None:
    from stages.instances import YolactEdgeDetector

    group = SourceGroup({"a": synthetic(3), "b": synthetic(8)})
    model = YolactEdgeDetector(weights="random", size=64, backend="torch", batch=2)
    sink = Slow()
    seen_states: dict[str, set[str]] = {}  # at each source's end: the sources with state

    def ended(source_id: str) -> None:
        seen_states[source_id] = set(model.states)

    sink.on_source_end = ended  # type: ignore[method-assign]
    graph = Graph([NodeSpec("cams", group), NodeSpec("model", model, ["cams"]),
                   NodeSpec("out", sink, ["model"])])  # fmt: skip
    assert graph.run().error is None
    assert len(sink.seen) == 11
    assert set(seen_states) == {"a", "b"}
    assert all(name not in states for name, states in seen_states.items())  # freed at its end
    assert model.states == {}


def test_a_config_lists_inputs_as_the_command_line_does(tmp_path) -> None:
    from tests.conftest import write_video

    clip = write_video(tmp_path / "lobby.mp4", count=4)
    group = SourceGroup([f"door={clip}", str(clip), "synthetic:64x48"])
    assert list(group.inputs) == ["door", "lobby", "synthetic"]
    assert [type(i.source).__name__ for i in group.inputs.values()] == [
        "FileSource", "FileSource", "SyntheticSource"
    ]  # fmt: skip
    mapped = SourceGroup({"a": str(clip), "b": synthetic(2)})
    assert mapped.inputs["a"].source.source_id == "a"
    with pytest.raises(ConfigError, match="given twice"):
        SourceGroup([f"x={clip}", f"x={clip}"])


def test_every_source_kind_runs_in_one_group(tmp_path) -> None:
    import cv2
    import numpy as np

    from tests.conftest import write_video

    shots = tmp_path / "shots"
    shots.mkdir()
    for i in range(3):
        cv2.imwrite(str(shots / f"{i}.png"), np.full((48, 64, 3), 40 * i, np.uint8))
    clip = write_video(tmp_path / "clip.mp4", count=5)
    group = SourceGroup({
        "file": str(clip),
        "paced": {"kind": "file", "path": str(clip), "realtime": True},
        "images": str(shots),
        "synthetic": "synthetic:64x48",
        "scene": {"kind": "scene", "frames": 4, "width": 64, "height": 64},
    })  # fmt: skip
    group.inputs["synthetic"].source.count = 6  # a finite test pattern
    sink = Slow()
    graph = run_group(group, sink)
    assert graph.report.error is None
    counts = {name: sum(1 for s, _ in sink.seen if s == name) for name in group.inputs}
    paced = counts.pop("paced")  # live: a frame may drop if the graph fell 66 ms behind
    assert counts == {"file": 5, "images": 3, "synthetic": 6, "scene": 4} and 3 <= paced <= 5
    assert group.live  # the paced file makes the group live (its queue drops, not blocks)
    assert sorted(name for name, _ in sink.ended) == sorted(group.inputs)

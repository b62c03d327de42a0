"""config: stage registry, constructor validation, YAML loading, graph building."""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from typing import ClassVar

import numpy as np
import pytest

from pipeline.config import (
    STAGE_KINDS,
    build_graph,
    build_stage,
    load_yaml,
    parse_config,
    register,
    stage_parameters,
)
from pipeline.edges import Policy
from pipeline.errors import ConfigError
from pipeline.frame import Frame
from pipeline.stage import References, Sink, Source, Stage

# Test-only kinds, prefixed "test_" so they cannot clash with the real ones.


@register("test_cfg_source")
class CfgSource(Source):
    def __init__(self, count: int = 3, live: bool = False) -> None:
        self.count = count
        self.live = live

    def frames(self) -> Iterator[Frame]:
        for i in range(self.count):
            yield Frame(np.zeros((8, 8, 3), np.uint8), i * 10, Fraction(1, 100), i, "cfg")


@register("test_cfg_model")
class CfgModel(Stage):
    def __init__(
        self, threshold: float, device: str = "cpu", labels: list[str] | None = None
    ) -> None:
        self.threshold = threshold
        self.device = device
        self.labels = labels


@register("test_cfg_plain")
class CfgPlain(Stage):
    def __init__(self, scale: int = 1) -> None:
        self.scale = scale

    def process(self, frame: Frame) -> Frame:
        frame.results[self.name] = self.scale
        return frame


@register("test_cfg_sink")
class CfgSink(Sink):
    def __init__(self) -> None:
        self.frames: list[Frame] = []

    def write(self, frame: Frame) -> None:
        self.frames.append(frame)


class Boxes:
    """A result type for the reference tests."""


class Labels:
    """Another result type."""


@register("test_cfg_boxes")
class CfgBoxes(Stage):
    produces = (Boxes,)


@register("test_cfg_labels")
class CfgLabels(Stage):
    produces = (Labels,)


@register("test_cfg_reader")
class CfgReader(Stage):
    """Reads the Boxes of one stage (``boxes``) and the results of others (``show``)."""

    references: ClassVar[References] = {"boxes": (Boxes,), "show": ()}

    def __init__(self, boxes: str | None = None, show: list[str] | None = None) -> None:
        self.boxes, self.show = boxes, show


def config(*stages: dict, **pipeline) -> dict:
    raw: dict = {"stages": list(stages)}
    if pipeline:
        raw["pipeline"] = pipeline
    return raw


SRC = {"name": "src", "kind": "test_cfg_source"}
OUT = {"name": "out", "kind": "test_cfg_sink"}


# ---- registry and build_stage -------------------------------------------------------


def test_register_names_the_class():
    assert STAGE_KINDS["test_cfg_model"] is CfgModel
    assert CfgModel.kind == "test_cfg_model"


def test_register_same_kind_for_another_class_fails():
    with pytest.raises(ValueError, match="registered twice"):

        @register("test_cfg_model")
        class Other(Stage):
            pass

    assert STAGE_KINDS["test_cfg_model"] is CfgModel
    assert register("test_cfg_model")(CfgModel) is CfgModel  # same class again is fine


def test_stage_parameters_are_constructor_arguments():
    assert stage_parameters("test_cfg_model") == ["threshold", "device", "labels"]
    assert stage_parameters("test_cfg_sink") == []


def test_build_stage_passes_validated_arguments():
    stage = build_stage("test_cfg_model", {"threshold": 1, "labels": ["face"]})
    assert isinstance(stage, CfgModel)
    assert stage.threshold == 1.0 and isinstance(stage.threshold, float)
    assert stage.labels == ["face"]
    assert stage.device == "cpu"


def test_build_stage_unknown_key():
    with pytest.raises(ConfigError) as info:
        build_stage("test_cfg_model", {"threshold": 0.5, "xyz": 1}, where="stages[1] (det)")
    assert "unknown key 'xyz'" in str(info.value)
    assert str(info.value).startswith("stages[1] (det)")


def test_build_stage_wrong_type():
    with pytest.raises(ConfigError) as info:
        build_stage("test_cfg_model", {"threshold": "high"}, where="det")
    message = str(info.value)
    assert message.startswith("det: threshold:")
    assert "\n" not in message  # one line
    with pytest.raises(ConfigError, match="labels"):
        build_stage("test_cfg_model", {"threshold": 0.5, "labels": "face"})


def test_build_stage_missing_required():
    with pytest.raises(ConfigError, match="missing key 'threshold'"):
        build_stage("test_cfg_model", {})


def test_build_stage_unknown_kind_lists_known_kinds():
    with pytest.raises(ConfigError) as info:
        build_stage("test_no_such_kind", {}, where="stages[0] (x)")
    message = str(info.value)
    assert "unknown stage kind 'test_no_such_kind'" in message
    assert "test_cfg_model" in message


# ---- parse_config / load_yaml ----------------------------------------------------------


def test_parse_config_defaults():
    cfg = parse_config(config(SRC, OUT))
    assert cfg.pipeline.device == "cpu"
    assert cfg.pipeline.on_error == "skip"
    assert cfg.stages[0].name == "src" and cfg.stages[0].inputs is None
    assert cfg.stages[0].queue.capacity == 8 and cfg.stages[0].queue.policy is None


def test_parse_config_rejects_unknown_top_level_key():
    raw = config(SRC, OUT)
    raw["pipelines"] = {}
    with pytest.raises(ConfigError, match="unknown key 'pipelines'"):
        parse_config(raw, origin="faces.yaml")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (None, "expected a mapping"),
        ([SRC], "expected a mapping"),
        ({"pipeline": {}}, "missing key 'stages'"),
        (config(SRC), "stages"),  # a source alone does nothing
        (config(SRC, OUT, fps=30), "unknown key 'pipeline.fps'"),
        (config(SRC, OUT, on_error="retry"), "pipeline.on_error"),
        (config(SRC, OUT, threads=0), "pipeline.threads"),
        (config({"kind": "test_cfg_source"}, OUT), "missing key 'stages.0.name'"),
        (config({**SRC, "queue": {"size": 3}}, OUT), "unknown key 'stages.0.queue.size'"),
        (config({**SRC, "queue": {"policy": "fifo"}}, OUT), "stages.0.queue.policy"),
    ],
)
def test_parse_config_errors(raw, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")) as info:
        parse_config(raw, origin="cfg.yaml")
    assert str(info.value).startswith("cfg.yaml")


def test_load_yaml_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_yaml(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="config file not found"):
        load_yaml(tmp_path)  # a directory is not a config file


def test_load_yaml_invalid_yaml_names_the_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("stages:\n  - name: a\n    kind: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_yaml(path)
    message = str(info.value)
    assert "invalid YAML" in message and str(path) in message
    assert "(line " in message


def test_load_yaml_reads_a_mapping(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text("pipeline:\n  device: cuda\nstages: []\n", encoding="utf-8")
    assert load_yaml(path) == {"pipeline": {"device": "cuda"}, "stages": []}


# ---- build_graph ---------------------------------------------------------------------------


def test_build_graph_default_wiring_feeds_each_stage_the_next():
    cfg = parse_config(
        config(
            SRC,
            {"name": "a", "kind": "test_cfg_plain"},
            {"name": "b", "kind": "test_cfg_plain", "scale": 2},
            {"name": "out", "kind": "test_cfg_sink"},
        )
    )
    graph = build_graph(cfg)
    inputs = {name: node.spec.inputs for name, node in graph.nodes.items()}
    assert inputs == {"src": [], "a": ["src"], "b": ["a"], "out": ["b"]}
    assert graph.nodes["b"].stage.scale == 2
    assert graph.nodes["b"].stage.name == "b"


def test_build_graph_a_later_source_starts_a_new_chain():
    cfg = parse_config(
        config(
            SRC,
            {"name": "a", "kind": "test_cfg_plain"},
            {"name": "src2", "kind": "test_cfg_source"},
            {"name": "b", "kind": "test_cfg_plain"},
        )
    )
    graph = build_graph(cfg)
    assert graph.nodes["src2"].spec.inputs == []
    assert graph.nodes["b"].spec.inputs == ["src2"]


def test_build_graph_explicit_inputs_fan_out_and_join():
    cfg = parse_config(
        config(
            SRC,
            {"name": "a", "kind": "test_cfg_plain"},
            {"name": "b", "kind": "test_cfg_plain", "inputs": ["src"]},
            {"name": "render", "kind": "test_cfg_plain", "inputs": ["b", "a"]},
            {"name": "out", "kind": "test_cfg_sink"},
        )
    )
    graph = build_graph(cfg)
    assert graph.nodes["a"].spec.inputs == ["src"]
    assert graph.nodes["b"].spec.inputs == ["src"]
    assert graph.nodes["render"].spec.inputs == ["b", "a"]
    assert graph.nodes["out"].spec.inputs == ["render"]
    assert len(graph.nodes["src"].outputs) == 2


def test_build_graph_injects_device_only_where_accepted():
    cfg = parse_config(
        config(
            SRC,
            {"name": "det", "kind": "test_cfg_model", "threshold": 0.5},
            {"name": "det2", "kind": "test_cfg_model", "threshold": 0.5, "device": "cpu"},
            {"name": "plain", "kind": "test_cfg_plain"},  # no device parameter: no error
            device="cuda:1",
        )
    )
    graph = build_graph(cfg)
    assert graph.nodes["det"].stage.device == "cuda:1"
    assert graph.nodes["det2"].stage.device == "cpu"  # a stage's own setting wins
    assert not hasattr(graph.nodes["plain"].stage, "device")


def test_build_graph_queue_settings_reach_the_edge():
    cfg = parse_config(
        config(
            {**SRC, "live": True},
            {
                "name": "a",
                "kind": "test_cfg_plain",
                "queue": {"capacity": 3, "policy": "drop_oldest"},
            },
            {"name": "b", "kind": "test_cfg_plain", "queue": {"capacity": 5}},
            {"name": "c", "kind": "test_cfg_plain", "queue": {"capacity": 5, "policy": "latest"}},
        )
    )
    graph = build_graph(cfg)
    a, b, c = (graph.nodes[n].inbound for n in "abc")
    assert (a.policy, a.capacity) == (Policy.DROP_OLDEST, 3)
    assert (b.policy, b.capacity) == (Policy.BLOCK, 5)
    assert (c.policy, c.capacity) == (Policy.LATEST, 1)


def test_queue_bytes_default_pipeline_setting_and_per_edge_override():
    from pipeline.edges import QUEUE_BYTES

    stages = (
        SRC,
        {"name": "a", "kind": "test_cfg_plain"},
        {"name": "b", "kind": "test_cfg_plain", "queue": {"max_bytes": 1000}},
        {"name": "c", "kind": "test_cfg_plain", "queue": {"max_bytes": None}},
    )
    edges = build_graph(parse_config(config(*stages))).nodes
    assert edges["a"].inbound.max_bytes == QUEUE_BYTES == 512 * 2**20
    edges = build_graph(parse_config(config(*stages, queue_bytes=2**20))).nodes
    assert [edges[n].inbound.max_bytes for n in "abc"] == [2**20, 1000, None]
    with pytest.raises(ConfigError, match="queue_bytes"):
        parse_config(config(SRC, OUT, queue_bytes=0))


def test_build_graph_max_errors_in_a_row_default_override_and_off():
    cfg = parse_config(
        config(
            SRC,
            {"name": "a", "kind": "test_cfg_plain"},
            {"name": "b", "kind": "test_cfg_plain", "max_errors_in_a_row": 4},
            {"name": "c", "kind": "test_cfg_plain", "max_errors_in_a_row": None},
            max_errors_in_a_row=9,
        )
    )
    nodes = build_graph(cfg).nodes
    assert nodes["a"].spec.max_errors_in_a_row == 9
    assert nodes["b"].spec.max_errors_in_a_row == 4
    assert nodes["c"].spec.max_errors_in_a_row is None
    assert parse_config(config(SRC, OUT)).pipeline.max_errors_in_a_row == 25
    with pytest.raises(ConfigError, match="max_errors_in_a_row"):
        parse_config(config(SRC, OUT, max_errors_in_a_row=0))


def test_build_graph_live_source_gets_latest_by_default():
    cfg = parse_config(config({**SRC, "live": True}, {"name": "a", "kind": "test_cfg_plain"}))
    graph = build_graph(cfg)
    assert graph.live
    assert graph.nodes["a"].inbound.policy is Policy.LATEST


def test_build_graph_error_policy_and_settings():
    cfg = parse_config(
        config(
            SRC,
            {"name": "a", "kind": "test_cfg_plain"},
            {"name": "b", "kind": "test_cfg_plain", "on_error": "skip", "join": False},
            on_error="stop",
            max_frames=7,
            join_timeout=0.25,
            stop_grace=0.5,
        )
    )
    graph = build_graph(cfg)
    assert graph.nodes["a"].spec.on_error == "stop"
    assert graph.nodes["b"].spec.on_error == "skip"
    assert graph.nodes["b"].spec.join is False
    assert (graph.max_frames, graph.join_timeout, graph.stop_grace) == (7, 0.25, 0.5)


def test_build_graph_names_the_stage_entry_in_errors():
    cfg = parse_config(
        config(SRC, {"name": "det", "kind": "test_cfg_model", "threshold": 1, "xyz": 1})
    )
    with pytest.raises(ConfigError) as info:
        build_graph(cfg)
    assert str(info.value) == "stages[1] (det): unknown key 'xyz'"


def test_build_graph_wiring_errors_are_config_errors():
    cfg = parse_config(config(SRC, {"name": "a", "kind": "test_cfg_plain", "inputs": ["nope"]}))
    with pytest.raises(ConfigError, match="inputs: 'nope' is not a stage"):
        build_graph(cfg)
    cfg = parse_config(config(SRC, {"name": "a", "kind": "test_cfg_plain", "inputs": ["scr"]}))
    with pytest.raises(ConfigError, match=r"inputs: 'scr' is not a stage \(did you mean 'src'\?\)"):
        build_graph(cfg)
    cfg = parse_config(config(SRC, {"name": "src", "kind": "test_cfg_plain"}))
    with pytest.raises(ConfigError, match="two stages are named 'src'"):
        build_graph(cfg)


BOXES = {"name": "boxes", "kind": "test_cfg_boxes"}
LABELS = {"name": "labels", "kind": "test_cfg_labels"}


@pytest.mark.parametrize(
    ("reader", "message"),
    [
        ({"boxes": "boxez"},
         "stage 'read' (test_cfg_reader): boxes: 'boxez' is not a stage before this one; "
         "stages before it with Boxes: 'boxes'"),
        ({"boxes": "labels"},
         "stage 'read' (test_cfg_reader): boxes: 'labels' gives Labels, not Boxes; "
         "stages before it with Boxes: 'boxes'"),
        ({"show": ["labels", "src"]},
         "stage 'read' (test_cfg_reader): show: 'src' gives no results; "
         "stages before it with results: 'boxes', 'labels'"),
        ({"show": ["out"]},  # downstream: its results never reach the reader
         "stage 'read' (test_cfg_reader): show: 'out' is not a stage before this one; "
         "stages before it with results: 'boxes', 'labels'"),
    ],
)  # fmt: skip
def test_references_are_checked_when_the_graph_is_built(reader: dict, message: str) -> None:
    cfg = parse_config(config(SRC, BOXES, LABELS, {"name": "read", "kind": "test_cfg_reader",
                                                   **reader}, OUT))  # fmt: skip
    with pytest.raises(ConfigError) as info:
        build_graph(cfg)
    assert str(info.value) == message


def test_a_reference_to_another_branch_is_not_upstream() -> None:
    branches = config(SRC, BOXES, {"name": "other", "kind": "test_cfg_boxes", "inputs": ["src"]},
                      {"name": "read", "kind": "test_cfg_reader", "boxes": "boxes",
                       "inputs": ["other"]}, OUT)  # fmt: skip
    with pytest.raises(ConfigError, match="'boxes' is not a stage before this one; stages "
                       "before it with Boxes: 'other'"):  # fmt: skip
        build_graph(parse_config(branches))
    joined = config(SRC, BOXES, {"name": "other", "kind": "test_cfg_labels", "inputs": ["src"]},
                    {"name": "read", "kind": "test_cfg_reader", "boxes": "boxes",
                     "show": ["other"], "inputs": ["boxes", "other"]}, OUT)  # fmt: skip
    graph = build_graph(parse_config(joined))  # both branches reach the join
    assert graph.nodes["read"].stage.boxes == "boxes"


def test_no_reference_means_any_upstream_result() -> None:
    reader = {"name": "read", "kind": "test_cfg_reader"}
    graph = build_graph(parse_config(config(SRC, BOXES, reader, OUT)))
    assert graph.nodes["read"].stage.boxes is None


def test_yaml_to_finished_run(tmp_path, run_graph):
    path = tmp_path / "run.yaml"
    path.write_text(
        "pipeline:\n"
        "  max_frames: 4\n"
        "stages:\n"
        "  - {name: src, kind: test_cfg_source, count: 10}\n"
        "  - {name: scale, kind: test_cfg_plain, scale: 3}\n"
        "  - {name: out, kind: test_cfg_sink}\n",
        encoding="utf-8",
    )
    graph = build_graph(parse_config(load_yaml(path), origin=str(path)))
    report = run_graph(graph)
    sink = graph.nodes["out"].stage
    assert report.error is None
    assert [f.index for f in sink.frames] == [0, 1, 2, 3]
    assert [f.results["scale"] for f in sink.frames] == [3] * 4

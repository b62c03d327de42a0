"""The ``track`` stage (stages/track.py): stable ids on moving objects, sources apart, gaps,
ids drawn, DensePose people, config checks, and a tracked job through run.py."""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline.config import build_graph, parse_config
from pipeline.errors import ConfigError
from pipeline.frame import Frame
from pipeline.results import DensePoseResult, Detections
from stages.render import Draw
from stages.render.annotators import colour
from stages.track import Track
from tests.conftest import ROOT


def frame_with(boxes: list[list[float]], index: int, source: str = "cam",
               scores: list[float] | None = None) -> Frame:  # fmt: skip
    frame = Frame(np.zeros((240, 320, 3), np.uint8), index, Fraction(1, 30), index, source)
    scores = [0.9] * len(boxes) if scores is None else scores
    frame.results["found"] = Detections(boxes, scores, [0] * len(boxes), class_names=("thing",))
    return frame


def tracked(stage: Track, boxes: list[list[float]], index: int, source: str = "cam") -> list[int]:
    out = stage.process(frame_with(boxes, index, source)).results["found"]
    assert isinstance(out, Detections) and out.track_ids is not None
    return out.track_ids.tolist()


def square(x: float, y: float = 50, side: float = 40) -> list[float]:
    return [x, y, x + side, y + side]


def make(**options) -> Track:
    stage = Track(detections="found", **options)
    stage.name = "tracks"
    return stage


def test_moving_objects_keep_their_ids_and_a_newcomer_gets_a_new_one() -> None:
    stage = make()
    # ByteTrack confirms a track at its second sighting: the first has no id yet
    assert tracked(stage, [square(10), square(200, 150)], 0) == [-1, -1]
    for index in range(1, 12):  # one moves right 8 px a frame, the other left 5 px
        ids = tracked(stage, [square(200 - 5 * index, 150), square(10 + 8 * index)], index)
        assert ids == [2, 1]  # the order of the boxes changed, not their ids
    assert tracked(stage, [square(104), square(140, 10), square(140, 150)], 12) == [1, -1, 2]
    assert tracked(stage, [square(112), square(140, 12), square(135, 150)], 13) == [1, 3, 2]


def test_the_detections_of_the_frame_are_a_copy_with_ids() -> None:
    stage = make()
    frame = frame_with([square(10)], 0)
    original = frame.results["found"]
    out = stage.process(frame).results["found"]
    assert out is not original and original.track_ids is None  # a branch may share it
    assert np.shares_memory(out.boxes, original.boxes) and out.class_names == ("thing",)


def test_a_low_score_box_starts_no_track_and_is_drawn_without_an_id() -> None:
    stage = Track(detections="found")  # ByteTrack's defaults: a track starts at 0.7
    stage.name = "tracks"
    for index in range(2):
        out = stage.process(frame_with([square(10), square(200)], index, scores=[0.9, 0.4]))
    assert out.results["found"].track_ids.tolist() == [1, -1]


def test_sources_are_tracked_apart() -> None:
    stage = make()
    tracked(stage, [square(10)], 0, "a")
    tracked(stage, [square(10), square(200)], 0, "b")
    assert tracked(stage, [square(14)], 1, "a") == [1]
    # the same place in another camera is another object, with that camera's own ids
    assert tracked(stage, [square(200), square(14)], 1, "b") == [2, 1]
    assert tracked(stage, [square(18)], 2, "a") == [1]
    stage.on_source_end("a")  # its tracks go; b's stay
    assert set(stage.sources) == {"b"}
    assert tracked(stage, [square(200), square(18)], 2, "b") == [2, 1]


def test_a_short_gap_is_predicted_over() -> None:
    stage = make()
    for index in range(10):
        assert tracked(stage, [square(10 + 10 * index)], index) == [1 if index else -1]
    stage.on_gap("cam", 5)  # frames 10-14 dropped upstream: the object moved on 60 px
    # its last box (x 100) and this one (x 160) do not overlap at all: only a track that
    # predicted the missing frames finds it again
    assert tracked(stage, [square(160)], 15) == [1]


def test_a_gap_longer_than_the_buffer_ends_the_tracks() -> None:
    stage = make(lost_track_buffer=5)
    for index in range(3):
        assert tracked(stage, [square(10)], index) == [1 if index else -1]
    stage.on_gap("cam", 6)
    # the same place, but after the gap a new object: a new id, never an old one again
    assert tracked(stage, [square(10)], 9) == [-1]
    assert tracked(stage, [square(10)], 10) == [2]
    assert stage.status()["resets"] == 1


def test_a_frame_without_the_result_is_skipped_like_a_dropped_one() -> None:
    stage = Track(detections="found")  # a new track gets its id at its 2nd sighting
    stage.name = "tracks"
    assert tracked(stage, [square(10)], 0) == [-1]
    empty = Frame(np.zeros((240, 320, 3), np.uint8), 1, Fraction(1, 30), 1, "cam")
    assert stage.process(empty).results == {}  # its detector failed on it
    # not a frame without the object, which would have ended the unconfirmed track
    assert tracked(stage, [square(14)], 2) == [1]
    assert tracked(stage, [], 3) == [] and tracked(stage, [square(14)], 4) == [1]


def test_draw_shows_the_track_ids(drawn_labels: list[str]) -> None:
    labels = drawn_labels
    stage, draw = make(), Draw(results=["found"], thickness=1)
    draw.name = "draw"
    for index in range(3):
        labels.clear()
        frame = stage.process(frame_with([square(10 + 5 * index), square(200, 150)], index))
        image = draw.process(frame).image
    assert labels == ["#1 thing 0.90", "#2 thing 0.90"]
    x0, y0 = 20, 50 + 20  # the first box's left edge, half way down: its track's colour
    assert tuple(image[y0, x0]) == colour(1) != colour(0)  # class 0 would be colour(0)
    labels.clear()
    untracked = frame_with([square(10)], 0)
    untracked.results["found"].track_ids = np.array([-1])
    draw.process(untracked)
    assert labels == ["thing 0.90"]


def test_densepose_people_get_ids_in_their_json() -> None:
    stage = Track(detections="people")
    stage.name = "tracks"
    for index in range(3):
        frame = Frame(np.zeros((240, 320, 3), np.uint8), index, Fraction(1, 30), index, "cam")
        part, uv = np.ones((4, 4), np.uint8), np.zeros((2, 4, 4), np.float32)
        boxes = np.array([square(20 + 3 * index), square(200, 120)], np.float32)
        frame.results["people"] = DensePoseResult(boxes, [part, part], [uv, uv])
        out = stage.process(frame).results["people"]
    assert isinstance(out, DensePoseResult) and out.track_ids.tolist() == [1, 2]
    assert out.to_json()["track_ids"] == [1, 2]


def graph_config(**track: object) -> dict:
    return {"stages": [
        {"name": "source", "kind": "synthetic", "frames": 3},
        {"name": "found", "kind": "motion"},
        {"name": "tracks", "kind": "track", "detections": "found", **track},
        {"name": "out", "kind": "discard"},
    ]}  # fmt: skip


@pytest.mark.parametrize(
    ("track", "message"),
    [
        ({"detections": "nope"}, "detections: 'nope' is not a stage before this one"),
        ({"tracker": "sort"}, "tracker"),
        ({"tracker": "ocsort", "track_activation_threshold": 0.5}, "ByteTrack's only"),
        ({"lost_track_buffer": -1}, "lost_track_buffer"),
        ({"minimum_consecutive_frames": 0}, "minimum_consecutive_frames"),
        ({"min_iou": 0.2}, "unknown key 'min_iou'"),
    ],
)
def test_config_mistakes_are_one_line_errors(track: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_graph(parse_config(graph_config(**track)))


def test_ocsort_tracks_too() -> None:
    stage = make(tracker="ocsort")
    tracked(stage, [square(10), square(200, 150)], 0)
    for index in range(1, 8):
        assert tracked(stage, [square(200, 150), square(10 + 6 * index)], index) == [2, 1]


def test_a_tracked_job_runs_through_run_py(tmp_path: Path) -> None:
    """Motion boxes on the bundled street clip, tracked, drawn and written as JSON lines."""
    config = {"stages": [
        {"name": "source", "kind": "file", "path": str(ROOT / "media" / "pedestrians.mp4")},
        {"name": "moving", "kind": "motion", "min_area": 0.004},
        {"name": "tracks", "kind": "track", "detections": "moving"},
        {"name": "draw", "kind": "draw", "results": ["moving"]},
        {"name": "video", "kind": "video_file", "path": str(tmp_path / "tracked.mp4")},
        {"name": "events", "kind": "jsonl", "path": str(tmp_path / "tracked.jsonl"),
         "inputs": ["draw"]},
    ]}  # fmt: skip
    path = tmp_path / "tracked.yaml"
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), str(path), "--max-frames", "60", "--no-progress"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = (tmp_path / "tracked.jsonl").read_text().splitlines()
    ids = [json.loads(line)["results"]["moving"]["track_ids"] for line in lines]
    assert len(ids) == 60 and (tmp_path / "tracked.mp4").stat().st_size > 0
    # people walk through the whole clip: ids seen at frame 20 are still there 30 frames later
    held = {i for i in ids[20] if i > 0} & {i for i in ids[50] if i > 0}
    assert held, ids

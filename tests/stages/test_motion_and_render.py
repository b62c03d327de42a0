"""Motion detection on the synthetic scene, drawing, and the JSONL and display sinks."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from pipeline.errors import SinkError
from pipeline.frame import Frame
from pipeline.results import Detections
from stages.motion import MotionDetector
from stages.render import Draw
from stages.sinks.display import DisplaySink
from stages.sinks.jsonl import JsonlSink


def detect(stage: MotionDetector, image: np.ndarray, index: int) -> Detections:
    frame = Frame(image, index, Fraction(1, 30), index, "s")
    return stage.process(frame).results["motion"]


def moving_square(index: int) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A textured 40x40 square moving 6 px per frame over a static textured background."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 80, (240, 320, 3), dtype=np.uint8)
    patch = np.random.default_rng(1).integers(120, 255, (40, 40, 3), dtype=np.uint8)
    x, y = 20 + 6 * index, 100
    image[y : y + 40, x : x + 40] = patch
    return image, (x, y, x + 40, y + 40)


def test_motion_boxes_the_moving_object_and_ignores_a_still_scene() -> None:
    stage = MotionDetector(min_area=0.002)
    stage.name = "motion"
    first, _ = moving_square(0)
    assert len(detect(stage, first, 0)) == 0  # the first frame only teaches the background
    for i in range(1, 30):
        image, (x0, y0, x1, y1) = moving_square(i)
        found = detect(stage, image, i)
        assert len(found) == 1, i
        bx0, by0, bx1, by1 = found.boxes[0]
        # the box covers the square (and the trail it just left), nothing far away
        assert bx0 <= x0 + 4 and by0 <= y0 + 4 and bx1 >= x1 - 4 and by1 >= y1 - 4
        assert bx1 - bx0 < 80 and by1 - by0 < 70
    still = MotionDetector()
    still.name = "motion"
    assert all(len(detect(still, first, i)) == 0 for i in range(10))


def test_draw_copies_the_image_and_marks_the_boxes() -> None:
    image = np.zeros((60, 80, 3), np.uint8)
    frame = Frame(image, 0, Fraction(1, 30), 0, "s")
    frame.results["det"] = Detections([[10, 10, 50, 40]], [0.9], [0], class_names=("car",))
    out = Draw().process(frame)
    assert image.max() == 0  # the shared source image is untouched
    assert out.image[10, 30].max() > 0 and out.image[30, 70].max() == 0


def test_jsonl_writes_one_line_per_frame_with_results(tmp_path: Path) -> None:
    sink = JsonlSink(str(tmp_path / "events.jsonl"))
    sink.open()
    for i in range(3):
        frame = Frame(np.zeros((4, 4, 3), np.uint8), i * 100, Fraction(1, 1000), i, "cam")
        frame.results["det"] = Detections([[1, 2, 3, 4]], [0.5], [0], class_names=("x",))
        sink.write(frame)
    sink.close()
    lines = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [line["time"] for line in lines] == [0.0, 0.1, 0.2]
    assert lines[1]["results"]["det"] == {
        "boxes": [[1, 2, 3, 4]],
        "scores": [0.5],
        "classes": ["x"],
    }


def test_display_without_a_screen_is_a_clear_sink_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(SinkError, match="display"):
        DisplaySink().open()

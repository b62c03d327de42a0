"""De-identification: every region hidden, memory over missed frames, fail-closed."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from pipeline.frame import Frame
from pipeline.results import Detections
from stages.render.anonymize import Anonymize, RegionMemory, cover_mask, scale_boxes


def textured(h: int = 120, w: int = 160) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)


def frame_with(boxes: list[list[float]] | None, index: int = 0) -> Frame:
    frame = Frame(textured(), index, Fraction(1, 25), index, "cam")
    if boxes is not None:
        frame.results["faces"] = Detections(boxes, [0.9] * len(boxes), [0] * len(boxes))
    return frame


def changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(int) - b).sum(axis=2) > 0


@pytest.mark.parametrize("method", ["blur", "pixelate", "fill"])
def test_each_method_hides_the_scaled_ellipse_and_nothing_else(method: str) -> None:
    stage = Anonymize(detections="faces", method=method)
    stage.name = "hide"
    frame = frame_with([[40, 30, 80, 90]])
    original = frame.image
    out = stage.process(frame)
    assert out.image is not original and np.array_equal(frame_with(None).image, original)
    region = scale_boxes(np.array([[40, 30, 80, 90]], np.float32), 1.5)
    mask = cover_mask(original.shape[:2], region, ellipse=True)
    diff = changed(out.image, original)
    assert diff[mask].mean() > 0.9  # the texture is gone under the mask
    assert not diff[~mask].any()  # and untouched outside it
    # the whole detected box lies inside the ellipse at scale 1.5
    assert mask[30:90, 40:80].all()


def test_a_face_missed_for_a_few_frames_stays_covered_then_expires() -> None:
    stage = Anonymize(detections="faces", memory=3)
    stage.name = "hide"
    stage.process(frame_with([[40, 30, 80, 90]], 0))
    stage.process(frame_with([[44, 30, 84, 90]], 1))  # moving right 4 px per frame
    for index in (2, 3, 4):  # the detector misses the face
        out = stage.process(frame_with([], index))
        covered = out.results["hide"].boxes
        assert len(covered) == 1
        centre_x = (covered[0, 0] + covered[0, 2]) / 2
        assert centre_x == pytest.approx(64 + 4 * (index - 1), abs=0.01)  # follows the motion
    assert len(stage.process(frame_with([], 5)).results["hide"]) == 0  # memory is 3 frames


def test_dropped_frames_age_the_memory() -> None:
    stage = Anonymize(detections="faces", memory=3)
    stage.name = "hide"
    stage.process(frame_with([[40, 30, 80, 90]], 0))
    assert len(stage.process(frame_with([], 10)).results["hide"]) == 0


def test_separate_sources_have_separate_memory() -> None:
    stage = Anonymize(detections="faces")
    stage.name = "hide"
    stage.process(frame_with([[40, 30, 80, 90]], 0))
    other = frame_with([], 1)
    other.source_id = "other"
    assert len(stage.process(other).results["hide"]) == 0


def test_fail_closed_hides_the_whole_frame_without_detections() -> None:
    stage = Anonymize(detections="faces")
    stage.name = "hide"
    frame = frame_with(None)
    original = frame.image
    out = stage.process(frame)
    assert changed(out.image, original).mean() > 0.9
    assert stage.status() == {"failed_closed": 1}
    open_stage = Anonymize(detections="faces", fail_closed=False)
    open_stage.name = "hide"
    assert np.array_equal(open_stage.process(frame_with(None)).image, original)


def test_several_new_faces_on_the_first_frame_each_get_a_region() -> None:
    stage = Anonymize(detections="faces")
    stage.name = "hide"
    out = stage.process(frame_with([[10, 10, 30, 30], [100, 60, 140, 100], [60, 10, 80, 30]]))
    assert len(out.results["hide"]) == 3


def boxes(*rows: list[float]) -> np.ndarray:
    return np.array(rows, np.float32).reshape(-1, 4)


def test_the_most_certain_match_chooses_first() -> None:
    memory = RegionMemory(match_iou=0.1, memory=8)
    memory.update(boxes([0, 0, 10, 10], [20, 0, 30, 10]), 0)
    # both boxes overlap only region 0, the second more (IoU 0.82 against 0.43): it continues
    # region 0 although it comes second, and the first becomes a new region
    memory.update(boxes([4, 0, 14, 10], [1, 0, 11, 10]), 1)
    assert [r.box.tolist() for r in memory.regions] == [
        [1, 0, 11, 10],
        [20, 0, 30, 10],
        [4, 0, 14, 10],
    ]


def test_a_region_moves_along_its_velocity_then_is_forgotten() -> None:
    memory = RegionMemory(match_iou=0.1, memory=2)
    memory.update(boxes([0, 0, 10, 10]), 0)
    memory.update(boxes([4, 0, 14, 10]), 2)  # a frame missing: 2 px per frame
    (region,) = memory.regions
    assert region.velocity.tolist() == [2, 0, 2, 0]
    assert region.predicted(5).tolist() == [10, 0, 20, 10]
    memory.update(boxes(), 4)
    assert len(memory.regions) == 1
    memory.update(boxes(), 5)
    assert memory.regions == []

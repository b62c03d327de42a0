"""The densepose stage: charts per person, every-N with results carried by optical flow."""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import numpy as np
import pytest
import torch
from skimage import data

from pipeline.errors import ConfigError, ModelError
from pipeline.frame import Frame
from pipeline.results import DensePoseResult
from stages.densepose import DensePoseDetector


def frame(image: np.ndarray, index: int, source: str = "cam") -> Frame:
    return Frame(image.copy(), index, Fraction(1, 30), index, source)


@pytest.fixture(scope="module")
def shifted() -> list[np.ndarray]:
    """A real photo (BGR) moving 6 px right and 3 px down per frame."""
    photo = np.ascontiguousarray(data.astronaut()[::2, ::2, ::-1])
    return [np.ascontiguousarray(photo[40 - 3 * t : 200 - 3 * t, 40 - 6 * t : 200 - 6 * t])
            for t in range(4)]  # fmt: skip


def make(**kwargs) -> DensePoseDetector:
    torch.manual_seed(0)
    options = {"variant": "densepose_rcnn_mobilenetv2_FPN", "weights": "random", "size": 128,
               "min_score": 0.0, "backend": "torch"}  # fmt: skip
    stage = DensePoseDetector(**{**options, **kwargs})
    stage.name = "dp"
    stage.open()
    # Three people at most keep the random-weight tests fast on a CPU.
    stage.model.config = dataclasses.replace(stage.model.config, detections_per_image=3)
    return stage


def test_network_result_is_a_densepose_result_per_person(shifted: list[np.ndarray]) -> None:
    stage = make()
    result = stage.process(frame(shifted[0], 0)).results["dp"]
    assert isinstance(result, DensePoseResult)
    assert 1 <= len(result.boxes) == len(result.parts) == len(result.uv) == len(result.scores) <= 3
    for box, part, uv in zip(result.boxes, result.parts, result.uv, strict=True):
        h, w = max(int(box[3] - box[1]), 1), max(int(box[2] - box[0]), 1)
        assert part.shape == (h, w) and uv.shape == (2, h, w)
        assert part.max() <= 24 and (uv[:, part == 0] == 0).all()
    assert list(result.scores) == sorted(result.scores, reverse=True)
    assert result.to_iuv_image(160, 160).shape == (160, 160, 3)


def test_carry_moves_each_box_with_the_flow(shifted: list[np.ndarray]) -> None:
    part = np.zeros((60, 50), np.uint8)
    part[10:50, 10:40] = 2
    uv = np.zeros((2, 60, 50), np.float32)
    before = DensePoseResult(np.array([[50, 40, 100, 100]], np.float32), [part], [uv], np.ones(1))
    after = DensePoseDetector.carry(before, shifted[0], shifted[1])
    # frame 1 shows the scene 6 px further right and 3 px further down
    assert np.abs(after.boxes[0] - (before.boxes[0] + [6, 3, 6, 3])).max() < 1.0
    assert after.parts[0] is part and after.scores is before.scores


def test_every_n_frames_with_carrying_and_gaps(shifted: list[np.ndarray]) -> None:
    stage = make(every=3)
    for index, image in enumerate(shifted):
        stage.process(frame(image, index))
    assert stage.status() == {"network": 2, "carried": 2}  # frames 0 and 3 run the network
    stage.on_gap("cam", 1)
    stage.process(frame(shifted[1], 5))
    assert stage.status()["network"] == 3  # nothing to carry across a gap
    stage.process(frame(shifted[2], 0, "other"))
    assert stage.status()["network"] == 4  # each source has its own


def test_configuration_and_weights_errors(tmp_path) -> None:
    with pytest.raises(ConfigError, match="variant"):
        DensePoseDetector(variant="densepose_vit", weights="random")
    with pytest.raises(ConfigError, match="weights"):
        DensePoseDetector()
    with pytest.raises(ConfigError, match="every"):
        DensePoseDetector(weights="random", every=0)
    stage = DensePoseDetector(weights=str(tmp_path / "model_final_162be9.pkl"))
    with pytest.raises(ModelError) as error:
        stage.open()
    assert "not found" in str(error.value) and "\n" not in str(error.value)


def test_onnxruntime_runs_the_whole_image_part_with_the_same_people(
    shifted: list[np.ndarray], tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("FRAMEGRAPH_CACHE", str(tmp_path))
    by_torch = make().process(frame(shifted[0], 0)).results["dp"]
    stage = make(backend="onnxruntime", threads=1)
    assert stage.backend.name == "onnxruntime"
    by_onnxruntime = stage.process(frame(shifted[0], 0)).results["dp"]
    assert len(by_torch.boxes) == len(by_onnxruntime.boxes) >= 1
    assert np.abs(by_torch.boxes - by_onnxruntime.boxes).max() < 0.05
    for ours, theirs in zip(by_onnxruntime.parts, by_torch.parts, strict=True):
        assert ours.shape == theirs.shape and (ours == theirs).mean() > 0.99


def test_half_precision_needs_cuda() -> None:
    with pytest.raises(ConfigError, match="half precision needs a CUDA device"):
        DensePoseDetector(weights="random", half=True).open()

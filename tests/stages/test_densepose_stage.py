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
from stages.densepose import DenseCarry, DenseInput, DensePoseDetector
from tests.golden import assert_close, assert_decisions_agree, assert_same_detections, top2_gap


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


def test_parts_skip_the_network_between_and_carry_nothing_after_a_lost_result(
    shifted: list[np.ndarray],
) -> None:
    stage = make(every=3)
    assert [part.label for part in stage.parts()] == ["preprocess", "infer", "postprocess"]
    first = stage.preprocess(frame(shifted[0], 0))
    assert isinstance(first.results["dp"], DenseInput)  # frame 0 is lost after this part
    second = stage.infer(stage.preprocess(frame(shifted[1], 1)))
    carry = second.results["dp"]
    assert isinstance(carry, DenseCarry) and carry.flow.shape == (160, 160, 2)
    assert stage.status() == {"network": 0, "carried": 0}  # it skipped the network
    result = stage.postprocess(second).results["dp"]
    assert isinstance(result, DensePoseResult) and len(result.boxes) == 0  # nothing to carry
    assert stage.status() == {"network": 0, "carried": 1}
    # a frame of another size cannot follow the flow: the network runs on it
    resized = stage.preprocess(frame(shifted[2][:120], 2))
    assert isinstance(resized.results["dp"], DenseInput)
    stage.process(frame(shifted[3][:120], 3))
    assert stage.status() == {"network": 0, "carried": 2}


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


@pytest.mark.golden
def test_onnxruntime_runs_the_whole_image_part_with_the_same_people(
    shifted: list[np.ndarray], tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("FRAMEGRAPH_CACHE", str(tmp_path))
    from models.densepose.export import OUTPUTS

    stages = [make(backend="onnxruntime", threads=1), make()]
    assert stages[0].backend.name == "onnxruntime"
    raw, found, people = [], [], []
    for stage in stages:  # the backend's maps and the instances as well as the stage's result

        def spy(batch, sizes, originals, maps, inference=stage.model.inference):
            raw.append([*maps["features"], *maps["objectness_logits"], *maps["anchor_deltas"],
                        maps["decoded"]])  # fmt: skip
            instances = inference(batch, sizes, originals, maps)
            found.append(instances[0])
            return instances

        stage.model.inference = spy
        people.append(stage.process(frame(shifted[0], 0)).results["dp"])
    for name, a, b in zip(OUTPUTS, *raw, strict=True):  # before any decision
        assert_close(a, b, 1e-4, name)
    (ours, theirs), (by_onnxruntime, by_torch) = found, people
    # random weights score everyone about 0.503, within 5e-4 of each other: the margin on a
    # score (to the threshold, to the third one kept, to a rival) is 1e-5
    c = stages[1].model.config
    pairs = assert_same_detections(
        (ours.boxes, ours.scores), (theirs.boxes, theirs.scores), "people",
        threshold=c.score_thresh, score_margin=1e-5, nms=c.nms_thresh, box_tolerance=0.05,
        cap=c.detections_per_image,
    )  # fmt: skip
    assert len(theirs) >= 1 and len(pairs) >= 1
    i, j = (list(side) for side in zip(*pairs, strict=True))
    assert_close(ours.boxes[i], theirs.boxes[j], 1e-4, "people's boxes")
    for name in ("coarse_segm", "fine_segm", "u", "v"):  # logits and regressions
        assert_close(getattr(ours, name)[i], getattr(theirs, name)[j], 1e-4, name)
    # the part decision (argmax) where the top two logits are apart by more than twice the
    # tolerance; then the result's parts, resized to each box, on all but a few pixels
    fine = theirs.fine_segm[j]
    clear = top2_gap(fine, 1) > 2e-4 * float(fine.abs().max())
    assert_decisions_agree(ours.fine_segm[i].argmax(1), fine.argmax(1), clear, "part argmax")
    for a, b in zip(i, j, strict=True):
        part, reference = by_onnxruntime.parts[a], by_torch.parts[b]
        assert part.shape == reference.shape and (part == reference).mean() > 0.99


def test_half_precision_needs_cuda() -> None:
    with pytest.raises(ConfigError, match="precision fp16 needs a CUDA device"):
        DensePoseDetector(weights="random", precision="fp16").open()


def test_int8_finds_the_people_fp32_finds(tmp_path, monkeypatch) -> None:
    from pipeline.results import box_iou
    from synthetic.generator import generate

    monkeypatch.setenv("FRAMEGRAPH_CACHE", str(tmp_path))
    weights = "models/densepose/weights/synthetic_mobilenetv2.pth"
    stages = [DensePoseDetector(weights=weights, backend="onnxruntime", precision=p, threads=2,
                                min_score=0.5) for p in ("fp32", "int8")]  # fmt: skip
    for stage in stages:
        stage.name = "people"
        stage.open()
    assert len(list(tmp_path.rglob("int8-*.onnx"))) == 1  # quantized once, cached
    for index, scene in enumerate(list(generate(9000, 30, 320, 320))[:2]):
        fp32, int8 = (s.process(frame(scene.image, index)).results["people"] for s in stages)
        assert len(fp32.boxes) >= 1
        found = int((box_iou(fp32.boxes, int8.boxes).max(axis=1, initial=0) > 0.8).sum())
        assert found >= len(fp32.boxes) - 1  # every person, but for one near the score cut

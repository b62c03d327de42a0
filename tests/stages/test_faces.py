"""RetinaFace stages and de-identification on the bundled face clip, whose face
positions are known exactly (tools/make_face_clip.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from models.backends import tensorrt_version
from pipeline.errors import ModelError
from pipeline.frame import Frame
from pipeline.graph import Graph, NodeSpec
from pipeline.results import Detections
from pipeline.stage import Sink
from stages.faces import FaceDetector, FacePostprocess, FacePreprocess
from stages.render.anonymize import Anonymize, box_iou, cover_mask
from stages.sources.file import FileSource
from tests.conftest import ROOT

CLIP = ROOT / "media" / "faces.mp4"
TRUTH = json.loads((ROOT / "media" / "faces_truth.json").read_text())["faces"]


class Keep(Sink):
    def __init__(self) -> None:
        self.frames: list[Frame] = []

    def write(self, frame: Frame) -> None:
        self.frames.append(frame)


def run_faces(scale: float = 1.0) -> list[Frame]:
    keep = Keep()
    graph = Graph(
        [
            NodeSpec("source", FileSource(str(CLIP))),
            NodeSpec("prep", FacePreprocess(scale=scale), ["source"]),
            NodeSpec("detect", FaceDetector(input="prep", backend="torch"), ["prep"]),
            NodeSpec("faces", FacePostprocess(input="detect"), ["detect"]),
            NodeSpec("hide", Anonymize(detections="faces"), ["faces"]),
            NodeSpec("keep", keep, ["hide"]),
        ]
    )
    report = graph.run()
    assert report.error is None
    return keep.frames


@pytest.fixture(scope="module")
def frames() -> list[Frame]:
    return run_faces()


def test_every_frame_comes_through_with_faces_and_no_intermediates(frames) -> None:
    assert [f.index for f in frames] == list(range(len(TRUTH)))
    for frame in frames:
        assert set(frame.results) == {"faces", "hide"}
        faces = frame.results["faces"]
        assert isinstance(faces, Detections) and faces.landmarks.shape[1:] == (5, 2)


def test_detector_finds_both_real_faces_in_nearly_every_frame(frames) -> None:
    hits = total = 0
    for frame, truth in zip(frames, TRUTH, strict=True):
        found = frame.results["faces"].boxes
        iou = box_iou(np.array(truth, np.float32), found.reshape(-1, 4))
        hits += int((iou.max(axis=1, initial=0) > 0.5).sum())
        total += len(truth)
    recall = hits / total
    print(f"face recall (IoU > 0.5) on the bundled clip: {recall:.3f} ({hits}/{total})")
    assert recall > 0.95


def test_no_face_is_ever_left_uncovered(frames) -> None:
    """Leak rate: a ground-truth face with under 95% of its box hidden counts as leaked."""
    leaks = 0
    worst = 1.0
    for frame, truth in zip(frames, TRUTH, strict=True):
        mask = cover_mask(frame.image.shape[:2], frame.results["hide"].boxes, ellipse=True)
        for x0, y0, x1, y1 in np.round(truth).astype(int):
            covered = mask[max(y0, 0) : y1, max(x0, 0) : x1].mean()
            worst = min(worst, covered)
            leaks += covered < 0.95
    faces = sum(len(t) for t in TRUTH)
    print(f"de-identification leak rate: {leaks}/{faces} faces, worst coverage {worst:.3f}")
    assert leaks == 0


def test_hidden_pixels_really_changed(frames) -> None:
    source = FileSource(str(CLIP))
    source.open()
    originals = [f.image for _, f in zip(range(20), source.frames(), strict=False)]
    source.close()
    for frame, original, truth in zip(frames, originals, TRUTH, strict=False):
        for x0, y0, x1, y1 in np.round(truth).astype(int):
            before = original[y0:y1, x0:x1].astype(int)
            after = frame.image[y0:y1, x0:x1].astype(int)
            # blurred: local detail (gradients) is gone
            detail_before = np.abs(np.diff(before, axis=1)).mean()
            assert np.abs(np.diff(after, axis=1)).mean() < 0.35 * detail_before


def test_onnxruntime_backend_matches_torch_on_the_clip(frames) -> None:
    source = FileSource(str(CLIP))
    source.open()
    images = [f.image for _, f in zip(range(10), source.frames(), strict=False)]
    source.close()
    prep, post = FacePreprocess(), FacePostprocess(input="detect")
    prep.name, post.name = "prep", "faces"
    detector = FaceDetector(input="prep", backend="onnxruntime", threads=1)
    detector.name = "detect"
    detector.open()
    for index, image in enumerate(images):
        frame = post.process(detector.process(prep.process(Frame(image, index, None, index, "s"))))
        ours, reference = frame.results["faces"], frames[index].results["faces"]
        assert len(ours) == len(reference)
        assert np.abs(ours.boxes - reference.boxes).max() < 1e-3
        assert np.abs(ours.landmarks - reference.landmarks).max() < 1e-3


def test_auto_backend_picks_a_measured_one() -> None:
    detector = FaceDetector(input="prep", backend="auto", threads=1)
    detector.open()
    assert detector.backend is not None and detector.backend.name in ("torch", "onnxruntime")


@pytest.mark.skipif(tensorrt_version() is not None, reason="TensorRT is installed here")
def test_tensorrt_backend_without_tensorrt_is_a_model_error() -> None:
    detector = FaceDetector(input="prep", backend="tensorrt")
    with pytest.raises(ModelError, match=r"TensorRT is not installed|CUDA"):
        detector.open()

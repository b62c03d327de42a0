"""RetinaFace stages and de-identification on the bundled face clip, whose face
positions are known exactly (tools/make_face_clip.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.errors import ModelError
from pipeline.frame import Frame
from pipeline.graph import Graph, NodeSpec
from pipeline.results import Detections, box_iou
from pipeline.stage import Sink
from stages.faces import FaceDetector
from stages.render.anonymize import Anonymize, face_coverage
from stages.sources.file import FileSource
from tests.conftest import ROOT
from tests.golden import assert_close, assert_same_detections
from tests.stages.batching import run_sources

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
            NodeSpec("faces", FaceDetector(scale=scale, backend="torch"), ["source"]),
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
        covered = face_coverage(frame.image.shape[:2], frame.results["hide"].boxes,
                                np.array(truth))  # fmt: skip
        worst = min(worst, float(covered.min()))
        leaks += int((covered < 0.95).sum())
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


@pytest.mark.golden
def test_onnxruntime_backend_matches_torch_on_the_clip() -> None:
    source = FileSource(str(CLIP))
    source.open()
    images = [f.image for _, f in zip(range(10), source.frames(), strict=False)]
    source.close()
    detectors = [FaceDetector(backend=b, threads=1) for b in ("onnxruntime", "torch")]
    for detector in detectors:
        detector.name = "faces"
        detector.open()
    for index, image in enumerate(images):
        raw, found = [], []
        for detector in detectors:
            frame = detector.infer(detector.preprocess(Frame(image, index, None, index, "s")))
            raw.append(frame.results["faces"])
            found.append(detector.postprocess(frame).results["faces"])
        (ours, theirs), (our_faces, faces) = raw, found
        # within 1e-4 of each output's own scale; the backends give the scores after the
        # softmax, so they are compared as logits (log p_face - log p_background) where no
        # score saturates
        assert_close(ours.loc, theirs.loc, 1e-4, "loc")
        assert_close(ours.landmarks, theirs.landmarks, 1e-4, "landmarks")
        unsaturated = theirs.conf.min(dim=-1).values > 0.01
        assert unsaturated.any()
        ours_logits, logits = (c.log().diff(dim=-1)[unsaturated] for c in (ours.conf, theirs.conf))
        assert_close(ours_logits, logits, 1e-4, "class logits (scores 0.01-0.99)")
        # the same faces, but for any a rounding error could add or drop: a score within 1e-3
        # of 0.5, an overlap within 0.01 of NMS's 0.4
        pairs = assert_same_detections(
            (our_faces.boxes, our_faces.scores), (faces.boxes, faces.scores), "faces",
            threshold=0.5, score_margin=1e-3, nms=0.4, box_tolerance=1e-2,
        )  # fmt: skip
        assert len(faces) >= 1
        i, j = (list(side) for side in zip(*pairs, strict=True))
        assert_close(our_faces.boxes[i], faces.boxes[j], 1e-5, "face boxes (px)")
        assert_close(our_faces.landmarks[i], faces.landmarks[j], 1e-5, "face landmarks (px)")


@pytest.mark.parametrize("slow", ["torch", "onnxruntime"])
def test_auto_backend_picks_the_faster(slow: str, monkeypatch, caplog) -> None:
    """Both backends really run; the time ``auto`` measures is virtual, set per backend, so
    the faster one is known whatever the machine's load, and it must win both ways round."""
    import functools
    import logging

    from models.backends import OnnxRuntimeBackend, TorchBackend, select
    from stages import model_stage

    class Clock:
        now = 0.0

        def __call__(self) -> float:
            return self.now

    clock = Clock()
    costs = {"torch": 0.004, "onnxruntime": 0.004, slow: 0.05}
    for backend_class in (TorchBackend, OnnxRuntimeBackend):

        def timed(self, *inputs, call=backend_class.__call__):
            outputs = call(self, *inputs)
            clock.now += costs[self.name]
            return outputs

        monkeypatch.setattr(backend_class, "__call__", timed)
    measure = functools.partial(select.create_fastest_backend, clock=clock)
    monkeypatch.setattr(model_stage, "create_fastest_backend", measure)
    detector = FaceDetector(backend="auto", threads=1)
    with caplog.at_level(logging.INFO, logger="framegraph"):
        detector.open()
    fast = "torch" if slow == "onnxruntime" else "onnxruntime"
    assert detector.backend is not None and detector.backend.name == fast
    timings = {"torch": costs["torch"] * 1e3, "onnxruntime": costs["onnxruntime"] * 1e3}
    assert f"face_detector: {fast} (median ms: {timings})" in caplog.text


def test_tensorrt_backend_without_tensorrt_is_a_model_error(monkeypatch) -> None:
    # runs on every machine: TensorRT is simulated absent, then present without a GPU
    import models.backends.tensorrt as tensorrt_backend

    detector = FaceDetector(backend="tensorrt")  # on the CPU
    monkeypatch.setattr(tensorrt_backend, "tensorrt_version", lambda: None)
    with pytest.raises(ModelError, match=r"^face_detector: TensorRT is not installed \("):
        detector.open()
    monkeypatch.setattr(tensorrt_backend, "tensorrt_version", lambda: "10.3.0")
    with pytest.raises(ModelError, match=r"^face_detector: TensorRT needs a CUDA device \(got"):
        detector.open()


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_batches_across_two_sources_find_the_faces_of_batch_1(backend: str) -> None:
    def run(**options) -> tuple[dict[tuple[str, int], Detections], list[int]]:
        detector = FaceDetector(backend=backend, threads=1, **options)
        sources = [FileSource(str(CLIP), source_id=name) for name in ("a", "b")]
        frames, sizes = run_sources(detector, "faces", sources, max_frames=12)
        return {key: f.results["faces"] for key, f in frames.items()}, sizes

    single, _ = run()
    batched, sizes = run(batch=4, batch_timeout_ms=200)
    assert set(batched) == set(single) and len(single) == 24
    assert max(sizes) == 4 and sum(sizes) == 24  # several frames per call
    for key, expected in single.items():
        ours = batched[key]
        assert len(expected) >= 1
        # one call over a batch sums in another order: within 1e-4 of scale, the same faces
        # but for a near-tie (a score within 1e-3 of 0.5, an overlap within 0.01 of 0.4)
        pairs = assert_same_detections(
            (ours.boxes, ours.scores), (expected.boxes, expected.scores), f"faces {key}",
            threshold=0.5, score_margin=1e-3, nms=0.4, box_tolerance=0.05,
        )  # fmt: skip
        i, j = (list(side) for side in zip(*pairs, strict=True))
        assert_close(ours.landmarks[i], expected.landmarks[j], 1e-4, "landmarks (batched)")


def test_int8_finds_the_faces_fp32_finds(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("FRAMEGRAPH_CACHE", str(tmp_path))
    detector = FaceDetector(backend="onnxruntime", precision="int8", threads=1)
    detector.name = "faces"
    detector.open()
    assert detector.backend is not None and detector.backend.name == "onnxruntime"
    assert len(list(tmp_path.rglob("int8-*.onnx"))) == 1  # quantized once, cached
    source = FileSource(str(CLIP))
    source.open()
    for frame, truth in zip(source.frames(), TRUTH, strict=False):
        if frame.index % 10:
            continue
        found = detector.process(frame).results["faces"]
        iou = box_iou(np.array(truth, np.float32), found.boxes)
        assert (iou.max(axis=1) > 0.5).all(), frame.index  # every real face, well placed
    source.close()


def test_int8_is_a_cpu_onnxruntime_option() -> None:
    from pipeline.errors import ConfigError
    from stages.panoptic import VPSNetSegmenter

    with pytest.raises(ConfigError, match="precision int8 runs on onnxruntime on the CPU"):
        FaceDetector(backend="torch", precision="int8").open()
    with pytest.raises(ConfigError, match="vpsnet: precision int8 is not available"):
        VPSNetSegmenter(weights="random", precision="int8", backend="onnxruntime").open()

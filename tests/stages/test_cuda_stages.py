"""Every model stage on CUDA, float32 and float16, against the same stage on the CPU.

Skipped without a CUDA device (CI has none); run on a lent GPU with ``pytest -m gpu``. Each
stage runs real weights (the packaged or demo weights) on real frames, so the comparison is
about the results users see: the same people, segments, faces and pictures.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from itertools import islice

import numpy as np
import pytest
import torch

from pipeline.frame import Frame
from pipeline.stage import Stage
from tests.conftest import ROOT
from tests.golden import assert_same_detections

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.golden,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]
WEIGHTS = ROOT / "models"
# float32 on CUDA differs from the CPU by rounding (cuDNN's TF32 convolutions, torch's default,
# and other algorithms: README, 2.1e-3 relative L2 at most); float16 by about 1e-2.
SETTINGS = [
    ("fp32", {"device": "cuda"}),
    ("fp16", {"device": "cuda", "precision": "fp16"}),
    ("fp16+graph", {"device": "cuda", "precision": "fp16", "cuda_graph": True}),  # replayed graphs
]
# A detection whose score is this close to a threshold (or to an overlapping rival's) may be
# kept on one device and dropped on the other: the CPU's count is not the truth there.
SCORE_MARGIN = {"fp32": 0.02, "fp16": 0.05, "fp16+graph": 0.05}


def frames(count: int, width: int = 320, height: int = 256) -> list[np.ndarray]:
    from synthetic.generator import generate

    return [f.image for f in generate(9002, count, width, height)]  # held-out seed


def run(chain: list[Stage], images: list[np.ndarray], opened=None) -> list[dict]:
    """Opens ``chain`` (stages in order, named by position), calls ``opened(chain)`` if given,
    and runs every image through."""
    for number, stage in enumerate(chain):
        stage.name = stage.name if getattr(stage, "name", None) else f"s{number}"
        stage.open()
    if opened is not None:
        opened(chain)
    results = []
    for index, image in enumerate(images):
        frame = Frame(image.copy(), index, Fraction(1, 30), index, "cam")
        for stage in chain:
            frame = stage.process(frame)
        results.append({**frame.results, "image": frame.image})
    return results


def same_objects(
    make: Callable[..., Stage], images: list[np.ndarray], options: dict, precision: str, *,
    threshold: float, nms: float, box_tolerance: float,
) -> None:  # fmt: skip
    """A detector stage made by ``make`` finds the same objects on CUDA (``options``) as on the
    CPU, frame by frame: boxes within ``box_tolerance`` px (4x that in half precision), but for
    near-ties (scores within SCORE_MARGIN of the threshold or of a rival)."""
    cpu, gpu = run([make()], images), run([make(**options)], images)
    tolerance = box_tolerance if precision == "fp32" else 4 * box_tolerance
    for a, b in zip(gpu, cpu, strict=True):
        ours, theirs = a["s0"], b["s0"]
        assert len(theirs) >= 1
        assert_same_detections(
            (ours.boxes, ours.scores), (theirs.boxes, theirs.scores), f"objects ({precision})",
            threshold=threshold, score_margin=SCORE_MARGIN[precision], nms=nms,
            box_tolerance=tolerance,
        )  # fmt: skip


@pytest.mark.parametrize(("precision", "options"), SETTINGS, ids=[s[0] for s in SETTINGS])
def test_translate(precision: str, options: dict) -> None:
    from stages.translate import Translate

    images = frames(3)
    cpu = run([Translate(backend="torch", consistency="off")], images)
    gpu = run([Translate(backend="torch", consistency="off", **options)], images)
    for a, b in zip(gpu, cpu, strict=True):
        difference = np.abs(a["image"].astype(int) - b["image"])
        assert difference.mean() < (0.5 if precision == "fp32" else 2.0)


@pytest.mark.parametrize(("precision", "options"), SETTINGS, ids=[s[0] for s in SETTINGS])
def test_densepose(precision: str, options: dict) -> None:
    from stages.densepose import DensePoseDetector

    weights = str(WEIGHTS / "densepose/weights/synthetic_mobilenetv2.pth")
    images = frames(2)
    cpu = run([DensePoseDetector(weights=weights, backend="torch", min_score=0.5)], images)
    gpu = run([DensePoseDetector(weights=weights, backend="torch", min_score=0.5, **options)],
              images)  # fmt: skip
    for a, b in zip(gpu, cpu, strict=True):
        ours, theirs = a["s0"], b["s0"]
        assert len(theirs.boxes) >= 1
        # the same people (score >= 0.5), boxes within 0.5 px (fp16: 2), but for those a
        # rounding could add or drop (README: 8 people on CUDA, 9 on the CPU on one frame)
        assert_same_detections(
            (ours.boxes, ours.scores), (theirs.boxes, theirs.scores), f"people ({precision})",
            threshold=0.5, score_margin=SCORE_MARGIN[precision], nms=0.5,
            box_tolerance=0.5 if precision == "fp32" else 2.0,
        )  # fmt: skip


@pytest.mark.parametrize(("precision", "options"), SETTINGS, ids=[s[0] for s in SETTINGS])
def test_vpsnet(precision: str, options: dict) -> None:
    from stages.panoptic import VPSNetSegmenter

    weights = str(WEIGHTS / "vpsnet/weights/synthetic_mobilenetv2.pth")
    images = frames(3)
    found: dict[str, list] = {"cpu": [], "gpu": []}  # each frame's detections

    def spy(detections: list):
        def opened(chain: list[Stage]) -> None:
            model = chain[0].model
            inference = model.inference

            def capture(*args):
                out = inference(*args)
                detections.append(out.detections)
                return out

            model.inference = capture

        return opened

    cpu = run([VPSNetSegmenter(weights=weights, backend="torch")], images, spy(found["cpu"]))
    gpu = run([VPSNetSegmenter(weights=weights, backend="torch", **options)], images,
              spy(found["gpu"]))  # fmt: skip
    diverged = False
    for a, b, ours, theirs in zip(gpu, cpu, found["gpu"], found["cpu"], strict=True):
        # the same instances but for those a rounding could add or drop ...
        pairs = assert_same_detections(
            (ours.boxes, ours.scores), (theirs.boxes, theirs.scores), f"instances ({precision})",
            threshold=0.5, score_margin=SCORE_MARGIN[precision], nms=0.5,
            box_tolerance=1.0 if precision == "fp32" else 3.0, inclusive=True,
        )  # fmt: skip
        # ... and, until one of those is, the same segments (such an instance changes the
        # track ids from then on)
        diverged |= len(pairs) < max(len(ours), len(theirs))
        if not diverged:
            agree = (a["s0"].segment_map == b["s0"].segment_map).mean()
            assert agree > (0.995 if precision == "fp32" else 0.97)


@pytest.mark.parametrize(("precision", "options"), SETTINGS, ids=[s[0] for s in SETTINGS])
def test_yolact_edge(precision: str, options: dict) -> None:
    from stages.instances import YolactEdgeDetector

    weights = str(WEIGHTS / "yolact_edge/weights/synthetic_mobilenetv2.pth")
    images = frames(6)

    # keyframes and warped frames alike: the same objects (score >= 0.3 after Fast NMS at
    # 0.5), boxes within 1 px (fp16: 3), but for those a rounding could add or drop
    same_objects(lambda **o: YolactEdgeDetector(weights=weights, backend="torch", **o),
                 images, options, precision, threshold=0.3, nms=0.5, box_tolerance=1.0)  # fmt: skip


@pytest.mark.parametrize(("precision", "options"), SETTINGS, ids=[s[0] for s in SETTINGS])
def test_face_detector(precision: str, options: dict) -> None:
    import av

    from stages.faces import FaceDetector

    with av.open(str(ROOT / "media" / "faces.mp4")) as container:
        images = [f.to_ndarray(format="bgr24") for f in islice(container.decode(video=0), 3)]

    # the same faces (score > 0.5, NMS at 0.4), boxes within 0.5 px (fp16: 2), but for those
    # a rounding could add or drop
    same_objects(lambda **o: FaceDetector(backend="torch", **o), images, options, precision,
                 threshold=0.5, nms=0.4, box_tolerance=0.5)  # fmt: skip

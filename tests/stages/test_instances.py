"""The yolact_edge stage: keyframe policy per source, postprocessing to Detections with masks,
the input size from the checkpoint."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

from models.yolact_edge import priors
from models.yolact_edge.synthetic import peaky_head_outputs
from pipeline.errors import ConfigError, ModelError
from pipeline.frame import Frame
from pipeline.results import Detections
from stages.instances import YolactEdgeDetector, YolactInput, YolactRaw
from synthetic.generator import generate
from tests.golden import assert_same_detections
from tests.stages.batching import run_sources


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    return [f.image for f in generate(4, 8, 160, 120)]


def frame(image: np.ndarray, index: int, source: str = "cam") -> Frame:
    return Frame(image, index, Fraction(1, 30), index, source)


def make(**kwargs) -> YolactEdgeDetector:
    net = YolactEdgeDetector(weights="random", **{"backend": "torch", **kwargs})
    net.name = "net"
    net.open()
    return net


def raw(net: YolactEdgeDetector, f: Frame) -> YolactRaw:
    """The network's outputs on one frame (the stage's first two parts)."""
    out = net.infer(net.preprocess(f)).results["net"]
    assert isinstance(out, YolactRaw)
    return out


def keyframes(net: YolactEdgeDetector, frames: list[Frame]) -> list[bool]:
    return [raw(net, f).keyframe for f in frames]


def test_interval_gaps_and_sources(images: list[np.ndarray]) -> None:
    net = make(keyframe_interval=3, scene_cut=100.0)
    frames = [frame(im, i) for i, im in enumerate(images[:7])]
    assert keyframes(net, frames) == [True, False, False, True, False, False, True]
    # A second source has its own state: its first frame is a keyframe.
    assert keyframes(net, [frame(images[0], 0, "other")]) == [True]
    # A jump in the frame index (frames lost before this stage) forces a keyframe ...
    assert keyframes(net, [frame(images[1], 9)]) == [True]
    assert keyframes(net, [frame(images[2], 10)]) == [False]
    # ... and so does a gap reported by the graph.
    net.on_gap("cam", 2)
    assert keyframes(net, [frame(images[3], 11)]) == [True]
    assert net.status() == {"keyframes": 6, "warped": 5}


def test_scene_cut_forces_a_keyframe(images: list[np.ndarray]) -> None:
    net = make(keyframe_interval=10)
    cut = np.full_like(images[1], 255)
    assert keyframes(net, [frame(images[0], 0), frame(images[1], 1), frame(cut, 2)]) == [
        True,
        False,
        True,
    ]


def test_adaptive_keyframes_follow_motion(images: list[np.ndarray]) -> None:
    net = make(keyframe_interval=10, adaptive=True, motion_threshold=0.0, scene_cut=100.0)
    frames = [frame(im, i) for i, im in enumerate(images[:5])]
    # Any motion exceeds a threshold of 0: every warped frame makes the next one a keyframe.
    assert keyframes(net, frames) == [True, False, True, False, True]


def test_channels_last_layout_gives_the_contiguous_outputs(images: list[np.ndarray]) -> None:
    outputs = {}
    for channels_last in (True, False):
        torch.manual_seed(3)
        net = make(keyframe_interval=2, scene_cut=100.0, channels_last=channels_last)
        conv = next(p for p in net.model.parameters() if p.dim() == 4 and p.shape[-1] > 1)
        assert conv.is_contiguous(memory_format=torch.channels_last) == channels_last
        raws = [raw(net, frame(im, i)) for i, im in enumerate(images[:3])]
        outputs[channels_last] = raws
    for nhwc, nchw in zip(outputs[True], outputs[False], strict=True):
        assert nhwc.keyframe == nchw.keyframe
        for name in ("loc", "conf", "coeffs", "proto"):
            expected = getattr(nchw, name)
            assert torch.allclose(
                getattr(nhwc, name), expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max())
            )


def test_image_variant_runs_every_frame_in_full(images: list[np.ndarray]) -> None:
    net = make(variant="yolact_edge_mobilenetv2", keyframe_interval=5)
    assert keyframes(net, [frame(im, i) for i, im in enumerate(images[:3])]) == [True] * 3


def test_bad_configuration_is_reported() -> None:
    with pytest.raises(ConfigError, match="weights is required"):
        YolactEdgeDetector()
    with pytest.raises(ConfigError, match="variant"):
        YolactEdgeDetector(variant="yolact", weights="random")
    detector = YolactEdgeDetector(weights="/nonexistent.pth")
    with pytest.raises(ModelError, match="nonexistent"):
        detector.open()
    with pytest.raises(ConfigError, match="precision fp16 needs a CUDA device"):
        YolactEdgeDetector(weights="random", precision="fp16").open()


def test_postprocess_gives_masks_at_frame_size() -> None:
    head = peaky_head_outputs(len(priors()), 81)  # confident, overlapping detections
    post = YolactEdgeDetector(weights="random", score_threshold=0.0)  # its last part alone
    post.name = "post"
    names = tuple(f"class{i}" for i in range(80))
    f = frame(np.zeros((64, 96, 3), np.uint8), 0)
    f.results["post"] = YolactRaw(
        head["loc"], head["conf"], head["mask"], head["proto"], 550, (64, 96), names, True
    )
    first = post.postprocess(f).results["post"]
    assert isinstance(first, Detections) and len(first) == 100
    assert first.masks.shape == (100, 64, 96) and first.masks.dtype == bool
    assert first.track_ids is None  # ids come from a track stage (tests/stages/test_track.py)
    assert first.label(0).startswith("class")
    assert (first.boxes[:, 2] <= 96).all() and (first.boxes[:, 3] <= 64).all()


def test_checkpoint_sidecar_sets_classes_and_input_size(tmp_path, images) -> None:
    import json

    from models.yolact_edge import build_model

    weights = tmp_path / "demo.pth"
    model = build_model("yolact_edge_vid_mobilenetv2", ("a", "b"))
    torch.save(model.state_dict(), weights)
    meta = {"variant": "yolact_edge_vid_mobilenetv2", "class_names": ["a", "b"], "input_size": 128}
    weights.with_suffix(".json").write_text(json.dumps(meta))
    net = YolactEdgeDetector(weights=str(weights))
    net.name = "net"
    net.open()
    assert net.size == 128 and net.model.config.class_names == ("a", "b")
    # the stage's own preprocessing takes the size from the sidecar: nothing to copy by hand
    prepared = net.preprocess(frame(images[0], 0)).results["net"]
    assert isinstance(prepared, YolactInput) and prepared.tensor.shape[-2:] == (128, 128)
    out = raw(net, frame(images[0], 0))
    assert out.conf.shape[-1] == 3 and out.input_size == 128
    overridden = YolactEdgeDetector(weights=str(weights), size=160, backend="torch")
    overridden.name = "net"
    overridden.open()  # a config's size wins over the sidecar's
    assert raw(overridden, frame(images[0], 0)).input_size == 160
    with pytest.raises(ConfigError, match="size must be >= 64"):
        YolactEdgeDetector(weights="random", size=32)


DEMO = "models/yolact_edge/weights/synthetic_mobilenetv2.pth"


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_batches_across_sources_give_the_batch_1_instances(backend: str) -> None:
    from stages.sources.scene import SceneSource

    def run(**options) -> tuple[dict, list[int]]:
        stage = YolactEdgeDetector(weights=DEMO, keyframe_interval=3, backend=backend,
                                   threads=2, **options)  # fmt: skip
        keyframes: dict[tuple[str, int], bool] = {}
        batch = stage.infer_batch  # infer runs through it too, a batch of one

        def spy(frames: list[Frame]) -> list[Frame]:
            for f in batch(frames):
                keyframes[(f.source_id, f.index)] = f.results["yolact"].keyframe
            return frames

        stage.infer_batch = spy  # type: ignore[method-assign]
        sources = [SceneSource(seed=9000 + i, frames=7, source_id=n) for i, n in enumerate("ab")]
        frames, sizes = run_sources(stage, "yolact", sources)
        return {k: (keyframes[k], f.results["yolact"]) for k, f in frames.items()}, sizes

    single, _ = run()
    batched, sizes = run(batch=4, batch_timeout_ms=200)
    assert set(batched) == set(single) and len(single) == 14
    assert max(sizes) == 4  # frames of both sources, keyframes and warped, per call
    for key, (keyframe, expected) in single.items():
        was_key, ours = batched[key]
        assert was_key == keyframe == (key[1] % 3 == 0)  # each source its own keyframes
        assert len(expected) >= 1
        pairs = assert_same_detections(
            (ours.boxes, ours.scores), (expected.boxes, expected.scores), f"instances {key}",
            threshold=0.3, score_margin=1e-3, nms=0.5, box_tolerance=0.05,
        )  # fmt: skip
        i, j = (list(side) for side in zip(*pairs, strict=True))
        assert (ours.class_ids[i] == expected.class_ids[j]).all()
        assert (ours.masks[i] != expected.masks[j]).mean() < 1e-3  # a bilinear tie may flip

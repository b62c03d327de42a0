"""YolactEdge stages: keyframe policy per source, postprocessing to tracked Detections."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

from models.yolact_edge import priors
from pipeline.errors import ConfigError, ModelError
from pipeline.frame import Frame
from pipeline.results import Detections
from stages.instances import YolactEdgeDetector, YolactPostprocess, YolactPreprocess, YolactRaw
from synthetic.generator import generate
from tools.golden_yolact_edge import peaky_head_outputs


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    return [f.image for f in generate(4, 8, 160, 120)]


def frame(image: np.ndarray, index: int, source: str = "cam") -> Frame:
    return Frame(image, index, Fraction(1, 30), index, source)


def make(**kwargs) -> tuple[YolactPreprocess, YolactEdgeDetector]:
    prep = YolactPreprocess()
    prep.name = "prep"
    net = YolactEdgeDetector(input="prep", weights="random", **{"backend": "torch", **kwargs})
    net.name = "net"
    net.open()
    return prep, net


def keyframes(prep, net, frames: list[Frame]) -> list[bool]:
    return [net.process(prep.process(f)).results["net"].keyframe for f in frames]


def test_interval_gaps_and_sources(images: list[np.ndarray]) -> None:
    prep, net = make(keyframe_interval=3, scene_cut=100.0)
    frames = [frame(im, i) for i, im in enumerate(images[:7])]
    assert keyframes(prep, net, frames) == [True, False, False, True, False, False, True]
    # A second source has its own state: its first frame is a keyframe.
    assert keyframes(prep, net, [frame(images[0], 0, "other")]) == [True]
    # A jump in the frame index (frames lost before this stage) forces a keyframe ...
    assert keyframes(prep, net, [frame(images[1], 9)]) == [True]
    assert keyframes(prep, net, [frame(images[2], 10)]) == [False]
    # ... and so does a gap reported by the graph.
    net.on_gap("cam", 2)
    assert keyframes(prep, net, [frame(images[3], 11)]) == [True]
    assert net.status() == {"keyframes": 6, "warped": 5}


def test_scene_cut_forces_a_keyframe(images: list[np.ndarray]) -> None:
    prep, net = make(keyframe_interval=10)
    cut = np.full_like(images[1], 255)
    assert keyframes(prep, net, [frame(images[0], 0), frame(images[1], 1), frame(cut, 2)]) == [
        True,
        False,
        True,
    ]


def test_adaptive_keyframes_follow_motion(images: list[np.ndarray]) -> None:
    prep, net = make(keyframe_interval=10, adaptive=True, motion_threshold=0.0, scene_cut=100.0)
    frames = [frame(im, i) for i, im in enumerate(images[:5])]
    # Any motion exceeds a threshold of 0: every warped frame makes the next one a keyframe.
    assert keyframes(prep, net, frames) == [True, False, True, False, True]


def test_channels_last_layout_gives_the_contiguous_outputs(images: list[np.ndarray]) -> None:
    outputs = {}
    for channels_last in (True, False):
        torch.manual_seed(3)
        prep, net = make(keyframe_interval=2, scene_cut=100.0, channels_last=channels_last)
        conv = next(p for p in net.model.parameters() if p.dim() == 4 and p.shape[-1] > 1)
        assert conv.is_contiguous(memory_format=torch.channels_last) == channels_last
        raws = [
            net.process(prep.process(frame(im, i))).results["net"]
            for i, im in enumerate(images[:3])
        ]
        outputs[channels_last] = raws
    for nhwc, nchw in zip(outputs[True], outputs[False], strict=True):
        assert nhwc.keyframe == nchw.keyframe
        for name in ("loc", "conf", "coeffs", "proto"):
            expected = getattr(nchw, name)
            assert torch.allclose(
                getattr(nhwc, name), expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max())
            )


def test_image_variant_runs_every_frame_in_full(images: list[np.ndarray]) -> None:
    prep, net = make(variant="yolact_edge_mobilenetv2", keyframe_interval=5)
    assert keyframes(prep, net, [frame(im, i) for i, im in enumerate(images[:3])]) == [True] * 3


def test_bad_configuration_is_reported() -> None:
    with pytest.raises(ConfigError, match="weights is required"):
        YolactEdgeDetector()
    with pytest.raises(ConfigError, match="variant"):
        YolactEdgeDetector(variant="yolact", weights="random")
    detector = YolactEdgeDetector(weights="/nonexistent.pth")
    with pytest.raises(ModelError, match="nonexistent"):
        detector.open()
    with pytest.raises(ConfigError, match="half precision needs a CUDA device"):
        YolactEdgeDetector(weights="random", half=True).open()


def test_postprocess_gives_tracked_masks_at_frame_size() -> None:
    head = peaky_head_outputs(len(priors()), 81)  # confident, overlapping detections
    post = YolactPostprocess(input="net", score_threshold=0.0)
    post.name = "post"
    names = tuple(f"class{i}" for i in range(80))
    results = []
    for index in range(2):  # the same detections twice: the track ids must repeat
        f = frame(np.zeros((64, 96, 3), np.uint8), index)
        f.results["net"] = YolactRaw(
            head["loc"], head["conf"], head["mask"], head["proto"], 550, (64, 96), names, True
        )
        results.append(post.process(f).results["post"])
        assert "net" not in f.results  # intermediates removed
    first, second = results
    assert isinstance(first, Detections) and len(first) == 100
    assert first.masks.shape == (100, 64, 96) and first.masks.dtype == bool
    assert first.track_ids is not None and len(set(first.track_ids.tolist())) == 100
    assert np.array_equal(first.track_ids, second.track_ids)
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
    net = YolactEdgeDetector(input="prep", weights=str(weights))
    net.name = "net"
    net.open()
    assert net.size == 128 and net.model.config.class_names == ("a", "b")
    small, large = YolactPreprocess(size=128), YolactPreprocess()
    small.name = large.name = "prep"
    raw = net.process(small.process(frame(images[0], 0))).results["net"]
    assert raw.conf.shape[-1] == 3 and raw.input_size == 128
    with pytest.raises(ConfigError, match="size: 128"):
        net.process(large.process(frame(images[1], 1)))

"""The vpsnet stage: panoptic segments at frame size with track ids, per-source video state."""

from __future__ import annotations

import dataclasses
import json
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from models import vpsnet
from pipeline.errors import ConfigError, ModelError
from pipeline.frame import Frame
from pipeline.results import PanopticSegmentation
from stages.panoptic import VPSNetSegmenter
from synthetic.categories import CATEGORIES, STUFF_IDS, THING_IDS
from tests.golden import assert_close, assert_same_detections


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    from synthetic.generator import generate

    return [f.image for f in generate(9001, 3, 200, 150)]


def frame(image: np.ndarray, index: int, source: str = "cam") -> Frame:
    return Frame(image.copy(), index, Fraction(1, 30), index, source)


# The synthetic world's categories in the light variant's channel order: stuff, then things.
CATEGORY_IDS = sorted(STUFF_IDS) + sorted(THING_IDS)


def make(**kwargs) -> VPSNetSegmenter:
    torch.manual_seed(0)
    options = {"variant": "fusetrack_mobilenetv2", "weights": "random", "scale": (160, 160),
               "category_ids": CATEGORY_IDS, "backend": "torch"}  # fmt: skip
    stage = VPSNetSegmenter(**{**options, **kwargs})
    stage.name = "pan"
    stage.open()
    # Random weights score everything ~0.5: a low threshold makes instances appear.
    stage.model.config = dataclasses.replace(stage.model.config, score_thresh=0.05)
    return stage


def test_segments_at_frame_size_keep_their_track_ids(images: list[np.ndarray]) -> None:
    stage = make()
    first = stage.process(frame(images[0], 0)).results["pan"]
    again = stage.process(frame(images[0], 1)).results["pan"]
    assert isinstance(first, PanopticSegmentation)
    assert first.segment_map.shape == images[0].shape[:2]
    things = {k: v for k, v in first.segments.items() if v["is_thing"]}
    assert things, "low threshold: random weights find instances"
    for sid, info in first.segments.items():
        assert info["area"] == int((first.segment_map == sid).sum())
        assert info["class"] in [c.id for c in CATEGORIES]
        assert sid == info["class"] * 1000 + (info["track_id"] or 0)
    # The same image again: every object matches itself, ids repeat.
    assert set(again.segments) == set(first.segments)


def test_long_gap_starts_a_new_video_and_sources_are_separate(images) -> None:
    stage = make(flow="none", max_gap=2)
    stage.process(frame(images[0], 0))
    stage.process(frame(images[1], 1, source="other"))
    assert stage.counts["new_videos"] == 2
    stage.on_gap("cam", 2)  # bridged
    stage.process(frame(images[1], 4))
    assert stage.counts["new_videos"] == 2
    assert len(stage.tracks["cam"].memory) > 0
    stage.on_gap("cam", 3)  # too long
    stage.process(frame(images[2], 8))
    assert stage.counts["new_videos"] == 3
    stage.on_source_end("cam")  # every part's state of the source goes
    assert "cam" not in stage.videos and "cam" not in stage.tracks and "cam" not in stage._previous
    assert "other" in stage.videos and "other" in stage.tracks


def test_tracks_start_afresh_when_the_new_videos_frame_reaches_postprocess(images) -> None:
    """The parts run on threads of their own: a long gap told to ``infer`` must not reset the
    tracks of frames still on their way to ``postprocess``."""
    stage = make(flow="none", max_gap=0)
    stage.process(frame(images[0], 0))
    tracks = stage.tracks["cam"]
    before = stage.infer(stage.preprocess(frame(images[1], 1)))  # not postprocessed yet
    stage.on_gap("cam", 1)
    after = stage.infer(stage.preprocess(frame(images[2], 3)))
    assert not before.results["pan"].new_video and after.results["pan"].new_video
    stage.postprocess(before)
    assert stage.tracks["cam"] is tracks and len(tracks.memory) > 0
    stage.postprocess(after)
    assert stage.tracks["cam"] is not tracks


def test_flow_comes_from_the_previous_frame(images: list[np.ndarray]) -> None:
    stage = make()
    video_flow = []
    original = stage.model.inference

    def spy(image, size, state, flow, raw):
        video_flow.append(flow.abs().sum().item())
        return original(image, size, state, flow, raw)

    stage.model.inference = spy
    stage.process(frame(images[0], 0))
    stage.process(frame(images[2], 1))
    assert video_flow[0] == 0 and video_flow[1] > 0  # first frame: none; then DIS motion


@pytest.mark.golden
def test_onnxruntime_runs_the_whole_image_part_with_the_same_segments(
    images: list[np.ndarray], tmp_path, monkeypatch
) -> None:
    """On the demo weights: random ones score every box 0.126 +- 3e-4, a float32 step (1.5e-8)
    apart, so which of two overlapping boxes NMS keeps would be rounding's choice."""
    monkeypatch.setenv("FRAMEGRAPH_CACHE", str(tmp_path))
    weights = (
        Path(__file__).resolve().parents[2] / "models/vpsnet/weights/synthetic_mobilenetv2.pth"
    )
    stages = [make(weights=str(weights), backend=b, threads=1) for b in ("onnxruntime", "torch")]
    by_onnxruntime, by_torch = stages
    seen: list[list] = [[], []]  # per stage, per frame: (the backend's maps, the frame output)
    for stage, calls in zip(stages, seen, strict=True):
        threshold = vpsnet.VARIANTS[stage.variant].score_thresh  # make() lowers it for random
        stage.model.config = dataclasses.replace(stage.model.config, score_thresh=threshold)

        def spy(image, size, state, flow, raw, inference=stage.model.inference, calls=calls):
            calls.append((raw, inference(image, size, state, flow, raw)))
            return calls[-1][1]

        stage.model.inference = spy
    c, diverged = by_torch.model.config, False
    for index, image in enumerate(images):  # the first frame's graph, then the next-frame one
        ours = by_onnxruntime.process(frame(image, index)).results["pan"]
        theirs = by_torch.process(frame(image, index)).results["pan"]
        (maps, out), (reference_maps, expected) = seen[0][-1], seen[1][-1]
        for key, value in maps.items():  # before any decision, within 1e-4 of their scale
            if isinstance(value, list):
                for level, (a, b) in enumerate(zip(value, reference_maps[key], strict=True)):
                    assert_close(a, b, 1e-4, f"{key} {level}")
            else:
                assert_close(value, reference_maps[key], 1e-4, key)
        # the same instances, but for any a rounding error could add or drop (a score within
        # 1e-3 of the threshold, an overlap within 0.01 of NMS's)
        found, reference = out.detections, expected.detections
        pairs = assert_same_detections(
            (found.boxes, found.scores), (reference.boxes, reference.scores), "instances",
            threshold=c.score_thresh, score_margin=1e-3, nms=c.nms_thresh, box_tolerance=0.01,
            inclusive=True,
        )  # fmt: skip
        assert len(pairs) >= 1
        i, j = (list(side) for side in zip(*pairs, strict=True))
        assert_close(found.boxes[i], reference.boxes[j], 1e-4, "instance boxes")
        # a near-tie that decided an instance would change the track ids from then on
        diverged |= len(pairs) < max(len(found), len(reference))
        if not diverged:
            assert set(ours.segments) == set(theirs.segments)
            assert (ours.segment_map == theirs.segment_map).mean() > 0.999  # pixel argmax ties
    assert len(by_onnxruntime._backends) == 1  # one input size, one pair of backends
    first, following = next(iter(by_onnxruntime._backends.values()))
    assert first.name == following.name == "onnxruntime"
    assert len(list((tmp_path / "vpsnet").glob("*.onnx"))) == 2


def test_half_precision_needs_cuda() -> None:
    with pytest.raises(ConfigError, match="precision fp16 needs a CUDA device"):
        VPSNetSegmenter(weights="random", precision="fp16").open()


def test_a_backend_that_cannot_run_here_fails_at_open_not_at_the_first_frame() -> None:
    from models.backends import tensorrt_version

    if tensorrt_version() is not None and torch.cuda.is_available():
        pytest.skip("TensorRT can run here")
    with pytest.raises(ModelError, match="vpsnet: TensorRT"):
        make(backend="tensorrt")


def test_bad_configuration_and_weights_are_reported(tmp_path) -> None:
    with pytest.raises(ConfigError, match="weights is required"):
        VPSNetSegmenter(variant="fuse")
    with pytest.raises(ConfigError, match="flow must be one of"):
        VPSNetSegmenter(weights="random", flow="flownet3")
    with pytest.raises(ConfigError, match="category_ids has 3 entries"):
        make(category_ids=[1, 2, 3])
    torch.save({"state_dict": {"backbone.conv1.weight": torch.zeros(1)}}, tmp_path / "w.pth")
    stage = VPSNetSegmenter(variant="fuse", weights=str(tmp_path / "w.pth"))
    with pytest.raises(ModelError, match="does not fit VPSNet fuse: missing"):
        stage.open()
    (tmp_path / "w.json").write_text('{"variant": "densepose_rcnn_mobilenetv2_FPN"}')
    with pytest.raises(ModelError, match="is not VPSNet weights"):
        VPSNetSegmenter(weights=str(tmp_path / "w.pth")).open()


def light_checkpoint(path, flownet2: dict | None = None) -> str:
    """The light variant's random weights (and ``flownet2.*`` tensors) as an mmcv-style file."""
    torch.manual_seed(1)
    state = vpsnet.build_model("fusetrack_mobilenetv2").state_dict()
    state.update({f"flownet2.{k}": v for k, v in (flownet2 or {}).items()})
    torch.save({"meta": {}, "state_dict": state}, path)
    return str(path)


def fake_flownet2_state() -> dict:
    """Small random tensors of the official FlowNet2 layout (tests/data/vpsnet/flownet2.json),
    all views of one storage, so that the saved file stays small (~38 MB, not 650 MB)."""
    manifest = Path(__file__).resolve().parents[1] / "data" / "vpsnet" / "flownet2.json"
    layout = json.loads(manifest.read_text())
    size = max(math.prod(shape) for _, shape, _ in layout)
    base = 0.02 * torch.randn(size, generator=torch.Generator().manual_seed(2))
    return {key: base[: math.prod(shape)].view(shape) for key, shape, _ in layout}


def test_flownet2_flow_comes_from_the_checkpoints_flownet2_keys(tmp_path) -> None:
    from synthetic.generator import generate

    images = [f.image for f in generate(9002, 2, 128, 128)]
    flownet2 = fake_flownet2_state()
    weights = light_checkpoint(tmp_path / "vps.pth", flownet2)
    assert Path(weights).stat().st_size < 100e6  # the FlowNet2 part shares one storage
    stage = make(weights=weights, flow="flownet2", scale=(128, 128))
    assert torch.equal(stage.flownet2.flownetfusion.predict_flow0.weight,
                       flownet2["flownetfusion.predict_flow0.weight"])  # fmt: skip
    flows = []
    original = stage.model.inference

    def spy(image, size, state, flow, raw):
        flows.append((image, flow))
        return original(image, size, state, flow, raw)

    stage.model.inference = spy
    stage.process(frame(images[0], 0))
    second = stage.process(frame(images[1], 1)).results["pan"]
    assert second.segment_map.shape == (128, 128)
    (first_image, first_flow), (image, flow) = flows
    assert first_flow.abs().sum() == 0  # a video's first frame: no reference yet
    assert flow.shape == (1, 2, 128, 128) and torch.isfinite(flow).all() and flow.abs().sum() > 0
    expected = vpsnet.flownet2_flow(stage.flownet2, vpsnet.denormalise(image),
                                    vpsnet.denormalise(first_image))  # fmt: skip
    assert torch.equal(flow, expected)  # current frame first, RGB of the network input


def test_flownet2_without_its_weights_is_reported(tmp_path) -> None:
    with pytest.raises(ConfigError, match="random weights needs flownet2_weights"):
        VPSNetSegmenter(weights="random", flow="flownet2")
    with pytest.raises(ConfigError, match="only used with flow: flownet2"):
        VPSNetSegmenter(weights="random", flownet2_weights="FlowNet2_checkpoint.pth.tar")
    weights = light_checkpoint(tmp_path / "vps.pth")
    with pytest.raises(ModelError, match=r"vps.pth has no flownet2\.\* keys; give flownet2_w"):
        make(weights=weights, flow="flownet2")
    with pytest.raises(ModelError, match="weights file not found"):
        make(weights=weights, flow="flownet2", flownet2_weights=str(tmp_path / "missing.pth"))

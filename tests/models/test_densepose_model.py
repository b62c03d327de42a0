"""DensePose R-CNN: detectron2 layouts, strict model-zoo loading, the detectron2 details that
decide numbers (FrozenBN, stride in the 1x1 conv, anchors, level assignment) and the
inference output contract."""

from __future__ import annotations

import json
import math
import pickle
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from models.densepose import (
    VARIANTS,
    DensePoseRCNN,
    apply_deltas,
    build_model,
    cell_anchors,
    chart_arrays,
    grid_anchors,
    load_weights,
    read_model_zoo_pkl,
    resized_size,
    to_input,
)
from models.densepose.backbone import FrozenBatchNorm2d
from models.densepose.heads import assign_levels
from tests.golden import assert_close, assert_decisions_agree, assert_same_detections, top2_gap

DATA = Path(__file__).resolve().parents[1] / "data" / "densepose"
SHARED_MANIFESTS = Path(__file__).resolve().parents[3] / "shared" / "reference" / "manifests"
MANIFESTS = SHARED_MANIFESTS if SHARED_MANIFESTS.is_dir() else DATA
OFFICIAL = ["densepose_rcnn_R_50_FPN_s1x", "densepose_rcnn_R_50_FPN_DL_s1x"]


def manifest(name: str) -> list[list]:
    return json.loads((MANIFESTS / f"{name}.json").read_text())


def layout(model: torch.nn.Module) -> list[list]:
    return [[k, list(v.shape), str(v.dtype)] for k, v in model.state_dict().items()]


def resnet101_manifest(resnet50: list[list]) -> list[list]:
    """R-101's layout from R-50's: res4 has 23 blocks instead of 6; blocks 6..22 are like
    block 1 (only block 0 has a shortcut) and follow block 5."""
    out: list[list] = []
    block1 = [e for e in resnet50 if e[0].startswith("backbone.bottom_up.res4.1.")]
    for entry in resnet50:
        out.append(entry)
        if entry[0] == "backbone.bottom_up.res4.5.conv3.norm.running_var":
            for block in range(6, 23):
                out += [[e[0].replace("res4.1.", f"res4.{block}."), *e[1:]] for e in block1]
    return out


def model_zoo_pkl(path: Path, variant: str, seed: int = 0, **extra: np.ndarray) -> dict:
    """Writes ``{"model": {name: float32 array}, "__author__": ...}`` as detectron2's model zoo
    does (numpy arrays from a seed, the manifest's keys in its order); returns the arrays."""
    rng = np.random.default_rng(seed)
    arrays = {k: rng.standard_normal(s, dtype=np.float32) for k, s, _ in manifest(variant)}
    arrays.update(extra)
    with open(path, "wb") as f:
        pickle.dump({"model": arrays, "__author__": "Detectron2 Model Zoo"}, f, protocol=4)
    return arrays


@pytest.fixture(scope="module")
def r50() -> DensePoseRCNN:
    return build_model("densepose_rcnn_R_50_FPN_s1x")


# --------------------------------------------------------------------------- layouts


@pytest.mark.parametrize("variant", OFFICIAL)
def test_state_dict_matches_official_manifest(variant: str) -> None:
    assert layout(build_model(variant)) == manifest(variant)


def test_resnet101_layout_derived_from_resnet50() -> None:
    expected = resnet101_manifest(manifest("densepose_rcnn_R_50_FPN_DL_s1x"))
    assert layout(build_model("densepose_rcnn_R_101_FPN_DL_s1x")) == expected


@pytest.mark.skipif(not SHARED_MANIFESTS.is_dir(), reason="shared reference not beside the clone")
@pytest.mark.parametrize("variant", OFFICIAL)
def test_bundled_manifest_copies_are_current(variant: str) -> None:
    assert json.loads((DATA / f"{variant}.json").read_text()) == manifest(variant)


def test_mobilenetv2_bottom_up_has_torchvision_keys() -> None:
    model = build_model("densepose_rcnn_mobilenetv2_FPN")
    ours = {
        k.removeprefix("backbone.bottom_up."): list(v.shape)
        for k, v in model.state_dict().items()
        if k.startswith("backbone.bottom_up.")
    }
    theirs = torchvision.models.mobilenet_v2(weights=None).state_dict()
    assert ours == {k: list(v.shape) for k, v in theirs.items() if k.startswith("features.")}
    # Everything above the backbone has the R-50 DeepLab model's keys, but for 4 stacked
    # convs instead of 8; the box head and the DensePose head are narrower.
    r50 = {k: shape for k, shape, _ in manifest("densepose_rcnn_R_50_FPN_DL_s1x")}
    state = model.state_dict()
    heads = {k: list(v.shape) for k, v in state.items() if not k.startswith("backbone.")}
    dropped = {k for k in r50 if any(f"body_conv_fcn{i}." in k for i in range(5, 9))}
    assert len(dropped) == 4 * 3  # conv weight, GroupNorm weight and bias
    assert set(heads) == {k for k in r50 if not k.startswith("backbone.")} - dropped
    assert heads["roi_heads.box_head.fc1.weight"] == [256, 256 * 7 * 7]
    assert r50["roi_heads.box_head.fc1.weight"] == [1024, 256 * 7 * 7]
    assert heads["roi_heads.densepose_head.body_conv_fcn4.weight"] == [128, 128, 3, 3]
    assert heads["roi_heads.densepose_head.ASPP.project.0.weight"] == [256, 5 * 256, 1, 1]
    assert model.roi_heads.densepose_predictor.u_lowres.weight.shape == (128, 25, 4, 4)


# --------------------------------------------------------------------------- weights


def test_model_zoo_pkl_loads_strictly_and_values_land(tmp_path: Path, r50) -> None:
    path = tmp_path / "model_final_162be9.pkl"
    arrays = model_zoo_pkl(path, "densepose_rcnn_R_50_FPN_s1x", seed=1)
    load_weights(r50, path)
    state = r50.state_dict()
    for key in (
        "backbone.bottom_up.res3.0.conv1.norm.running_var",  # a FrozenBN buffer
        "proposal_generator.rpn_head.anchor_deltas.weight",
        "roi_heads.box_predictor.cls_score.weight",
        "roi_heads.densepose_predictor.v_lowres.bias",
    ):
        assert torch.equal(state[key], torch.from_numpy(arrays[key]))


def test_pixel_stats_and_batchnorm_counters_in_a_file(tmp_path: Path, r50) -> None:
    """Older detectron2 saved pixel_mean / pixel_std; BN counters mean nothing to FrozenBN."""
    state = {k: torch.zeros(s) for k, s, _ in manifest("densepose_rcnn_R_50_FPN_s1x")}
    state["pixel_mean"] = torch.tensor([103.530, 116.280, 123.675]).view(3, 1, 1)
    state["pixel_std"] = torch.ones(3, 1, 1)
    state["backbone.bottom_up.stem.conv1.norm.num_batches_tracked"] = torch.tensor(0)
    load_weights(r50, state)
    state["pixel_std"] = torch.tensor([57.375, 57.12, 58.395]).view(3, 1, 1)
    with pytest.raises(ValueError, match=r"^state_dict: pixel_std \[57\.375"):
        load_weights(r50, state)


def test_mismatched_checkpoint_names_the_keys(tmp_path: Path, r50) -> None:
    # A DeepLab checkpoint into the V1ConvX model.
    deeplab = {k: torch.zeros(s) for k, s, _ in manifest("densepose_rcnn_R_50_FPN_DL_s1x")}
    with pytest.raises(ValueError) as error:
        load_weights(r50, deeplab)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith("state_dict does not fit densepose_rcnn_R_50_FPN_s1x: ")
    assert "missing (8): roi_heads.densepose_head.body_conv_fcn1.bias" in message
    assert "unexpected (32): roi_heads.densepose_head.ASPP.convs.0.0.weight" in message
    state = {k: torch.zeros(s) for k, s, _ in manifest("densepose_rcnn_R_50_FPN_s1x")}
    state["roi_heads.box_predictor.cls_score.weight"] = torch.zeros(81, 1024)  # COCO classes
    with pytest.raises(ValueError, match=r"shape \(1\): roi_heads\.box_predictor\.cls_score"):
        load_weights(r50, state)


def test_missing_and_foreign_files_fail_in_one_line(tmp_path: Path, r50) -> None:
    with pytest.raises(FileNotFoundError, match="weights file not found"):
        load_weights(r50, tmp_path / "absent.pkl")
    caffe2 = tmp_path / "DensePose_ResNet101_FPN_s1x-e2e.pkl"
    caffe2.write_bytes(pickle.dumps({"blobs": {"conv1_w": np.zeros(3)}}))
    with pytest.raises(ValueError, match=r"not a detectron2 model-zoo pkl \(a Caffe2"):
        load_weights(r50, caffe2)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps({"model": Evil(), "__author__": "x"}))
    with pytest.raises(ValueError, match=r"not a pickle of numpy arrays \(refused global"):
        load_weights(r50, evil)
    for path in (tmp_path / "notes.pth", tmp_path / "notes.pkl"):
        path.write_text("not weights\nat all\n")
        with pytest.raises(ValueError) as error:
            load_weights(r50, path)
        assert "\n" not in str(error.value)


def test_protocol_2_pickles_of_numpy_1_load(tmp_path: Path) -> None:
    """Python 3 writes bytes in protocol 2 through ``_codecs.encode``; arrays come back equal."""
    arrays = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array([7], np.int64)}
    path = tmp_path / "tiny.pkl"
    path.write_bytes(pickle.dumps({"model": arrays, "__author__": "x"}, protocol=2))
    state = read_model_zoo_pkl(path)
    assert list(state) == ["a", "b"] and state["b"].dtype == torch.int64
    assert torch.equal(state["a"], torch.arange(6.0).view(2, 3))


def test_pth_state_dict_and_training_checkpoint_load(tmp_path: Path) -> None:
    model = build_model("densepose_rcnn_mobilenetv2_FPN")
    state = {k: torch.randn_like(v.float()).to(v.dtype) for k, v in model.state_dict().items()}
    torch.save({"model": state, "iteration": 5}, tmp_path / "model_final.pth")
    load_weights(model, tmp_path / "model_final.pth")
    key = "roi_heads.decoder.p5.4.weight"
    assert torch.equal(model.state_dict()[key], state[key])


# --------------------------------------------------------------------------- detectron2 details


def test_frozen_batchnorm_is_four_buffers_and_an_affine_map() -> None:
    norm = FrozenBatchNorm2d(4)
    assert list(norm.state_dict()) == ["weight", "bias", "running_mean", "running_var"]
    assert not list(norm.parameters())  # buffers: nothing trains, no num_batches_tracked
    x = torch.randn(2, 4, 3, 3)
    assert torch.allclose(norm(x), x, atol=1e-6)  # the initial state is the identity
    torch.manual_seed(0)
    for name in ("weight", "bias", "running_mean"):
        getattr(norm, name).copy_(torch.randn(4))
    norm.running_var.copy_(torch.rand(4) + 0.5)
    reference = torch.nn.BatchNorm2d(4, eps=1e-5).eval()
    reference.load_state_dict(norm.state_dict(), strict=False)
    assert torch.allclose(norm(x), reference(x), atol=1e-5)


def test_stride_sits_in_the_1x1_conv(r50) -> None:
    bottom_up = r50.backbone.bottom_up
    for stage in ("res3", "res4", "res5"):
        block = getattr(bottom_up, stage)[0]
        assert block.conv1.stride == (2, 2) and block.conv1.kernel_size == (1, 1)
        assert block.conv2.stride == (1, 1) and block.shortcut.stride == (2, 2)
    assert bottom_up.res2[0].conv1.stride == (1, 1) and bottom_up.res3[1].shortcut is None
    outs = bottom_up(torch.zeros(1, 3, 64, 96))
    assert [tuple(o.shape[1:]) for o in outs] == [
        (256, 16, 24),
        (512, 8, 12),
        (1024, 4, 6),
        (2048, 2, 3),
    ]


def test_anchors_equal_a_hand_computation() -> None:
    # Size 32, ratios h/w = 0.5, 1, 2: w = sqrt(32^2 / r), h = r w, centred, not rounded.
    w = 32 / math.sqrt(0.5)
    expected = torch.tensor(
        [[-w / 2, -w / 4, w / 2, w / 4], [-16, -16, 16, 16], [-w / 4, -w / 2, w / 4, w / 2]]
    )
    assert torch.allclose(cell_anchors(32), expected)
    assert abs(float(cell_anchors(32)[0, 2]) - 22.627417) < 1e-5  # torchvision rounds to 23
    grid = grid_anchors(32, 4, height=2, width=3)
    assert grid.shape == (2 * 3 * 3, 4)
    # Row-major (y, x), three ratios per position: position 4 is (x=1, y=1) -> shift (4, 4).
    assert torch.allclose(grid[4 * 3 : 5 * 3], expected + 4)
    assert torch.allclose(grid[2 * 3 + 1], expected[1] + torch.tensor([8.0, 0, 8, 0]))


def test_box_decoding_and_level_assignment() -> None:
    boxes = torch.tensor([[10.0, 20, 30, 60]])
    assert torch.allclose(apply_deltas(torch.zeros(1, 4), boxes, (10, 10, 5, 5)), boxes)
    # dx = 10 / 10: the centre moves one width (20 -> 40); dw = 5 log 2 / 5: the width doubles.
    moved = apply_deltas(torch.tensor([[10.0, 0, 5 * math.log(2), 0]]), boxes, (10, 10, 5, 5))
    assert torch.allclose(moved, torch.tensor([[20.0, 20, 60, 60]]))
    huge = apply_deltas(torch.tensor([[0.0, 0, 100, 100]]), boxes, (1, 1, 1, 1))
    assert torch.isfinite(huge).all()  # dw clamped at log(1000 / 16)
    assert float(huge[0, 2] - huge[0, 0]) == pytest.approx(20 * 1000 / 16, rel=1e-5)
    sides = torch.tensor([8.0, 111.9, 112, 224, 448, 2000])
    levels = assign_levels(torch.stack([0 * sides, 0 * sides, sides, sides], dim=1))
    assert levels.tolist() == [0, 0, 1, 2, 3, 3]  # P2, P2, P3, P4, P5, P5


def test_resize_and_input_normalisation() -> None:
    assert resized_size(480, 640) == (800, 1067)
    assert resized_size(100, 1000) == (133, 1333)  # the long side caps the scale
    image = np.full((50, 70, 3), 200, np.uint8)
    # 50x70 -> 60x84 and 40x70 -> 60x105, capped at 100 -> 57x100; padded to 64x128.
    batch, sizes, originals = to_input([image, image[:40]], min_size=60, max_size=100)
    assert batch.shape == (2, 3, 64, 128)
    assert sizes == [(60, 84), (57, 100)] and originals == [(50, 70), (40, 70)]
    mean = torch.tensor([103.530, 116.280, 123.675])
    assert torch.allclose(batch[0, :, 30, 40], 200 - mean)
    assert (batch[0, :, 60:] == 0).all() and (batch[0, :, :, 84:] == 0).all()


# --------------------------------------------------------------------------- inference


def check_instances(result, height: int, width: int, limit: int) -> None:
    k = len(result)
    assert k <= limit
    assert result.boxes.dtype == torch.float32 and result.boxes.shape == (k, 4)
    assert result.scores.shape == (k,)
    assert result.coarse_segm.shape == (k, 2, 112, 112)
    for name in ("fine_segm", "u", "v"):
        assert getattr(result, name).shape == (k, 25, 112, 112)
    boxes = result.boxes
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
    assert (boxes[:, 2] <= width).all() and (boxes[:, 3] <= height).all()
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    assert (result.scores > 0.05).all() and (result.scores.diff() <= 0).all()


def test_inference_returns_the_documented_outputs() -> None:
    torch.manual_seed(0)
    config = replace(VARIANTS["densepose_rcnn_mobilenetv2_FPN"], detections_per_image=10)
    model = DensePoseRCNN(config).eval()
    image = np.random.default_rng(0).integers(0, 256, (128, 160, 3), dtype=np.uint8)
    (result,) = model.predict(image, min_size=128, max_size=200)
    check_instances(result, 128, 160, 10)
    assert len(result) > 0


def test_at_most_100_detections_by_default(r50) -> None:
    """The default cap, checked on the box stage alone (the DensePose head on 100 boxes is
    what makes a CPU test slow)."""
    torch.manual_seed(0)
    batch = torch.randn(1, 3, 128, 128) * 50
    with torch.no_grad():
        raw = r50(batch)
        proposals = r50.proposal_generator.proposals(
            raw["objectness_logits"], raw["anchor_deltas"], [(128, 128)]
        )
        assert 0 < len(proposals[0]) <= 1000
        logits, deltas = r50.roi_heads.box_outputs(raw["features"], proposals)
        assert logits.shape == (len(proposals[0]), 2) and deltas.shape == (len(proposals[0]), 4)
        c = r50.config
        ((boxes, scores),) = r50.roi_heads.detections(
            logits, deltas, proposals, [(128, 128)], c.score_thresh, c.nms_thresh
        )
    assert c.detections_per_image == 100 and 0 < len(boxes) <= 100
    assert (boxes >= 0).all() and (boxes <= 128).all() and (scores > 0.05).all()


def test_raw_outputs_and_boxes_in_original_pixels(r50) -> None:
    torch.manual_seed(0)
    model = DensePoseRCNN(replace(VARIANTS[r50.config.name], detections_per_image=2)).eval()
    image = np.random.default_rng(1).integers(0, 256, (50, 75, 3), dtype=np.uint8)
    batch, sizes, originals = to_input(image, min_size=64, max_size=128)
    assert sizes == [(64, 96)] and batch.shape == (1, 3, 64, 96)
    with torch.no_grad():
        raw = model(batch)
    assert [tuple(p.shape[2:]) for p in raw["features"]] == [
        (16, 24),
        (8, 12),
        (4, 6),
        (2, 3),
        (1, 2),
    ]
    assert raw["objectness_logits"][0].shape == (1, 3, 16, 24)
    assert raw["anchor_deltas"][4].shape == (1, 12, 1, 2)
    assert raw["decoded"].shape == (1, 256, 16, 24)
    (resized,) = model.inference(batch, sizes)
    (original,) = model.inference(batch, sizes, originals)
    check_instances(resized, 64, 96, 2)
    check_instances(original, 50, 75, 2)
    assert len(original) == len(resized) > 0
    assert torch.allclose(original.boxes, resized.boxes * 50 / 64, atol=1e-3)
    assert torch.equal(original.u, resized.u)  # charts live in box space


def test_deeplab_head_gives_the_chart_shapes() -> None:
    torch.manual_seed(0)
    model = build_model("densepose_rcnn_R_50_FPN_DL_s1x")
    decoded = torch.randn(2, 256, 16, 24)
    boxes = [torch.tensor([[0.0, 0, 40, 30]]), torch.tensor([[8.0, 8, 90, 60], [1, 2, 3, 4]])]
    with torch.no_grad():
        charts = model.roi_heads.densepose_outputs(decoded, boxes)
    assert charts["coarse_segm"].shape == (3, 2, 112, 112)
    assert all(charts[k].shape == (3, 25, 112, 112) for k in ("fine_segm", "u", "v"))
    assert all(torch.isfinite(v).all() for v in charts.values())


def test_no_detections_give_empty_outputs_of_the_documented_shapes() -> None:
    config = replace(VARIANTS["densepose_rcnn_mobilenetv2_FPN"], score_thresh=1.0)
    model = DensePoseRCNN(config).eval()
    (result,) = model.predict(np.zeros((64, 64, 3), np.uint8), min_size=64)
    check_instances(result, 64, 64, 0)


# --------------------------------------------------------------------------- demo weights
DEMO = Path(__file__).resolve().parents[2] / "models" / "densepose" / "weights"
DEMO = DEMO / "synthetic_mobilenetv2.pth"
# onnxruntime against torch: each map within 1e-4 of its own scale (kernels summing in another
# order, on another CPU or thread count, move results by ~1e-6 of it)
TOLERANCE = 1e-4


@torch.inference_mode()
def test_demo_weights_find_people_and_their_parts_in_a_held_out_scene() -> None:
    from evaluation import densepose_scores
    from models.checkpoints import weights_meta
    from pipeline.results import DensePoseResult
    from synthetic.categories import PERSON
    from synthetic.generator import generate

    meta = weights_meta(DEMO)
    assert meta["input_size"] == 320
    model = load_weights(build_model(meta["variant"]), DEMO).eval()
    # seed 9002 (an evaluation seed, never trained on; 30 frames as the trainer renders it)
    # has people seen from the front and from the back
    frames = list(generate(9002, 30, 320, 320))[::9]
    truth, pasted = [], []
    for frame in frames:
        (found,) = model.predict(frame.image, 320, 320)
        keep = found.scores >= 0.5
        people = [s for s in frame.things() if s.category_id == PERSON and s.area > 800]
        for person in people:  # every clearly visible person has a box
            x, y, w, h = person.bbox
            box = torch.tensor([[x, y, x + w, y + h]], dtype=torch.float32)
            assert torchvision.ops.box_iou(found.boxes[keep], box).max() > 0.7
        truth.append(frame.iuv)
        pasted.append(DensePoseResult(*chart_arrays(found, 0.5)).to_iuv_image(320, 320))
    assert {1, 2} <= set(np.unique(np.stack(truth)[..., 0]))  # torso back and front
    scores = densepose_scores(truth, pasted)
    assert scores.foreground_iou > 0.7 and scores.part_iou > 0.5 and scores.uv_error < 0.17
    # the back-facing people get back-view parts: the torso's back (1) as well as its front (2)
    assert scores.per_part_iou[1] > 0.5 and scores.per_part_iou[2] > 0.5


@pytest.mark.golden
def test_dense_graph_on_onnxruntime_matches_torch_and_gives_the_same_people(
    tmp_path: Path, monkeypatch
) -> None:
    from models.backends import RunOptions, TorchBackend, create_backend
    from models.checkpoints import weights_meta
    from models.densepose import DenseGraph, graph_spec, raw_outputs, to_input
    from models.densepose.export import OUTPUTS
    from synthetic.generator import generate

    meta = weights_meta(DEMO)
    model = load_weights(build_model(meta["variant"]), DEMO).eval()
    graph = DenseGraph(model)
    image = next(iter(generate(9001, 1, 240, 320))).image  # held out, people in it
    batch, sizes, originals = to_input(image, 320, 1333)
    assert batch.shape[-2:] != (320, 448)  # not the size it is exported at: dynamic
    expected = TorchBackend(graph)(batch)
    monkeypatch.setenv("FRAMEGRAPH_CACHE", str(tmp_path))
    outputs = create_backend(
        graph, graph_spec(), "densepose", RunOptions(backend="onnxruntime", threads=2)
    )(batch)
    for name, ours, theirs in zip(OUTPUTS, outputs, expected, strict=True):
        assert ours.shape == theirs.shape, name
        assert_close(ours, theirs, TOLERANCE, name)  # logits and features, before any decision
    c = model.config
    with torch.inference_mode():
        (by_torch,) = model.inference(batch, sizes, originals)
        (by_onnxruntime,) = model.inference(batch, sizes, originals, raw_outputs(outputs))
        # the box head's logits (before the softmax and the score threshold) on one set of
        # proposals: the RPN's top-k and NMS may swap near-tied proposals between backends
        reference = raw_outputs(expected)
        proposals = model.proposal_generator.proposals(
            reference["objectness_logits"], reference["anchor_deltas"], sizes,
            c.rpn_pre_nms_topk, c.rpn_post_nms_topk, c.rpn_nms_thresh,
        )  # fmt: skip
        both = (raw_outputs(outputs), reference)
        heads = [model.roi_heads.box_outputs(r["features"], proposals) for r in both]
        ((boxes, _),) = model.roi_heads.detections(
            *heads[1], proposals, sizes, c.score_thresh, c.nms_thresh, c.detections_per_image
        )
        # and the DensePose head's logits and regressions on one set of boxes
        charts = [model.roi_heads.densepose_outputs(r["decoded"], [boxes]) for r in both]
    for name, ours, theirs in zip(("box logits", "box deltas"), *heads, strict=True):
        assert_close(ours, theirs, TOLERANCE, name)
    for name in ("coarse_segm", "fine_segm", "u", "v"):
        assert_close(charts[0][name], charts[1][name], TOLERANCE, name)
    # each pixel's person / part decision (an argmax) wherever the top two logits are apart
    # by more than the tolerance allows on each
    for name, what in (("coarse_segm", "person or not"), ("fine_segm", "part argmax")):
        ours, theirs = charts[0][name], charts[1][name]
        clear = top2_gap(theirs, 1) > 2 * TOLERANCE * float(theirs.abs().max())
        assert_decisions_agree(ours.argmax(1), theirs.argmax(1), clear, what)
    assert (by_torch.scores > 0.8).sum() >= 1
    # the same people end to end: all but those a rounding error could add or drop (a score
    # within 1e-3 of the threshold, an overlap within 0.01 of NMS's), boxes within 0.01 px
    pairs = assert_same_detections(
        (by_onnxruntime.boxes, by_onnxruntime.scores), (by_torch.boxes, by_torch.scores),
        f"people (score > {c.score_thresh}, NMS {c.nms_thresh})", threshold=c.score_thresh,
        score_margin=1e-3, nms=c.nms_thresh, box_tolerance=0.01,
    )  # fmt: skip
    ours, theirs = (list(index) for index in zip(*pairs, strict=True))
    assert_close(by_onnxruntime.boxes[ours], by_torch.boxes[theirs], TOLERANCE, "people's boxes")

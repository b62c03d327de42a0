"""VPSNet: official layouts and strict loading, mmdet v1 box conventions, the fusion's warp
and correlation, tracking rules, panoptic fusion, and cached-reference video inference."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from models.vpsnet import VARIANTS, VideoState, build_model, load_weights, to_input
from models.vpsnet.boxes import apply_deltas, base_anchors, box_deltas, pool_rois, roi_levels
from models.vpsnet.fusion import correlation, warp
from models.vpsnet.net import VPSNet
from models.vpsnet.panoptic import (
    VOID,
    Detections,
    panoptic_logits,
    remove_overlaps,
    select_detections,
    unify,
)
from models.vpsnet.tracking import TrackMemory
from tests.golden import assert_close, assert_same_detections

DATA = Path(__file__).resolve().parents[1] / "data" / "vpsnet"
OFFICIAL = {"fusetrack": "vpsnet_cityscapes_fusetrack", "fuse": "vpsnet_cityscapes_fuse"}


def manifest(variant: str) -> list[list]:
    return json.loads((DATA / f"{OFFICIAL[variant]}.json").read_text())


def fake_checkpoint(variant: str) -> dict:
    """An mmcv checkpoint with the official layout: random values of the manifest's shapes,
    ``module.`` prefixes, a FlowNet2 entry and an optimizer, as a training run saves."""
    generator = torch.Generator().manual_seed(1)
    state = {}
    for key, shape, dtype in manifest(variant):
        if dtype == "torch.int64":
            state["module." + key] = torch.tensor(7)
        else:
            state["module." + key] = torch.randn(shape, generator=generator)
    state["module.flownet2.flownetc.conv1.0.weight"] = torch.zeros(64, 6, 7, 7)
    return {"meta": {"epoch": 12, "CLASSES": ("person",)}, "state_dict": state, "optimizer": {}}


@pytest.mark.parametrize("variant", sorted(OFFICIAL))
def test_layout_is_the_official_manifest(variant: str) -> None:
    model = build_model(variant)
    ours = [[k, list(v.shape), str(v.dtype)] for k, v in model.state_dict().items()]
    assert ours == manifest(variant)


@pytest.mark.parametrize("variant", sorted(OFFICIAL))
def test_official_checkpoint_loads_strictly(variant: str, tmp_path: Path) -> None:
    checkpoint = fake_checkpoint(variant)
    path = tmp_path / "latest.pth"
    torch.save(checkpoint, path)
    model = load_weights(build_model(variant), path)
    key = "bbox_head.shared_fcs.0.weight"
    assert torch.equal(model.state_dict()[key], checkpoint["state_dict"]["module." + key])
    assert model.state_dict()["backbone.bn1.num_batches_tracked"] == 7


def test_mismatched_checkpoints_fail_naming_the_keys(tmp_path: Path) -> None:
    state = fake_checkpoint("fusetrack")["state_dict"]
    with pytest.raises(ValueError, match=r"unexpected .*track_head\.fcs\.0\.weight"):
        load_weights(build_model("fuse"), state)
    del state["module.extra_neck.refine.conv.bias"]
    state["module.mask_head.conv_logits.weight"] = torch.zeros(20, 256, 1, 1)
    with pytest.raises(ValueError, match=r"missing \(1\): extra_neck.refine.conv.bias.*"
                       r"shape \(1\): mask_head.conv_logits.weight"):  # fmt: skip
        load_weights(build_model("fusetrack"), state)
    with pytest.raises(FileNotFoundError, match="weights file not found"):
        load_weights(build_model("fuse"), tmp_path / "missing.pth")


def test_base_anchors_are_mmdet_v1s() -> None:
    # mmdet v1's well-known stride-4 anchors (scale 8, ratios 0.5 / 1 / 2), +1 convention.
    expected = [[-21, -9, 24, 12], [-14, -14, 17, 17], [-9, -21, 12, 24]]
    assert base_anchors(4).tolist() == expected
    assert base_anchors(64).tolist()[1] == [-224.0, -224.0, 287.0, 287.0]


def test_deltas_round_trip_with_inclusive_widths() -> None:
    reference = torch.tensor([[10.0, 20.0, 49.0, 99.0], [0.0, 0.0, 0.0, 0.0]])
    boxes = torch.tensor([[12.0, 18.0, 60.0, 90.0], [1.0, 2.0, 3.0, 5.0]])
    stds = (0.1, 0.1, 0.2, 0.2)
    deltas = box_deltas(boxes, reference, stds)
    assert torch.allclose(apply_deltas(reference, deltas, stds), boxes, atol=1e-4)
    # zero deltas leave a box as it is (width x2 - x1 + 1)
    assert torch.equal(apply_deltas(reference, torch.zeros(2, 4)), reference)
    clipped = apply_deltas(reference, torch.tensor([[0.0, 0, 3, 3]] * 2), max_shape=(50, 40))
    assert clipped[:, 2].max() == 39 and clipped[:, 3].max() == 49


def test_rois_map_to_levels_by_size() -> None:
    sides = torch.tensor([20.0, 55.0, 111.0, 112.0, 223.0, 448.0, 2000.0])
    boxes = torch.stack([torch.zeros(7), torch.zeros(7), sides - 1, sides - 1], dim=1)
    assert roi_levels(boxes).tolist() == [0, 0, 0, 1, 1, 3, 3]


def test_roi_pooling_reads_the_inclusive_box() -> None:
    # A ramp f(x) = x on P2 (stride 4): the 7x7 pool of box x1..x2 (inclusive) averages the
    # ramp over [x1, x2 + 1) / 4 in feature pixels, as mmdet v1's RoIAlign does (feature
    # pixel k sits at coordinate k: not aligned).
    ramp = torch.arange(64.0).repeat(1, 1, 64, 1)
    features = [ramp] + [torch.zeros(1, 1, 64 >> k, 64 >> k) for k in (1, 2, 3)]
    rois = torch.tensor([[0.0, 40.0, 40.0, 79.0, 79.0]])  # 40 px: level 0
    pooled = pool_rois(features, rois, 7)
    bin_width = 40 / 4 / 7
    centres = 10 + bin_width * (torch.arange(7) + 0.5)
    assert torch.allclose(pooled[0, 0, 3], centres, atol=1e-4)


def test_warp_is_the_official_sampling() -> None:
    # The official grid is align-corners style but sampled with align_corners=False: the
    # source of output column x is (x + dx) * W / (W - 1) - 0.5, even for zero flow.
    height, width = 6, 11
    ramp = torch.arange(width, dtype=torch.float32).repeat(1, 1, height, 1)
    flow = torch.zeros(1, 2, height, width)
    flow[:, 0] = 1.5
    out = warp(ramp, flow)[0, 0, 2]
    source = (torch.arange(width) + 1.5) * width / (width - 1) - 0.5
    inside = source <= width - 1
    assert torch.allclose(out[inside], source[inside], atol=1e-5)
    assert not torch.allclose(warp(ramp, flow * 0), ramp)  # not an identity


def test_correlation_is_mean_over_channels_of_shifted_products() -> None:
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(1, 5, 7, 9, generator=generator)
    b = torch.randn(1, 5, 7, 9, generator=generator)
    corr = correlation(a, b)
    assert corr.shape == (1, 81, 7, 9)
    for dy, dx in ((0, 0), (-4, 3), (2, -1)):
        channel = (dy + 4) * 9 + (dx + 4)
        y, x = 4, 4
        expected = (a[0, :, y, x] * b[0, :, y + dy, x + dx]).mean()
        assert torch.isclose(corr[0, channel, y, x], expected, atol=1e-6)
    assert (corr[0, 0, :4, :] == 0).all()  # dy = -4 looks above the image


def detections(boxes, scores, classes) -> Detections:
    return Detections(torch.tensor(boxes, dtype=torch.float32), torch.tensor(scores),
                      torch.tensor(classes))  # fmt: skip


def test_tracking_keeps_ids_and_gives_losers_new_ones() -> None:
    memory = TrackMemory()
    first = detections([[0, 0, 9, 9], [20, 20, 39, 39]], [0.9, 0.8], [1, 2])
    embeddings = torch.eye(2) * 5
    assert memory.assign(embeddings, first.boxes, first.scores, first.classes).tolist() == [0, 1]
    # Frame 2: two detections both resembling object 0; the likelier keeps it, the other
    # becomes a new object; a third unlike anything is new as well.
    boxes = torch.tensor([[1.0, 0, 10, 9], [0.0, 1, 9, 10], [60.0, 60, 70, 70]])
    current = torch.tensor([[5.0, 0], [4.0, 0], [-5.0, -5.0]])
    logits = torch.cat([torch.zeros(3, 1), current @ memory.embeddings.t()], 1)
    ids = memory.assign(current, boxes, torch.tensor([0.9, 0.9, 0.9]), torch.tensor([1, 1, 3]),
                        logits)  # fmt: skip
    assert ids.tolist() == [0, 3, 2]
    assert len(memory) == 4
    assert torch.equal(memory.boxes[0], boxes[0])  # the match updates the box ...
    assert memory.labels.tolist() == [1, 2, 3, 1]  # ... and never the label


def test_label_weight_dominates_matching() -> None:
    memory = TrackMemory()
    memory.assign(torch.eye(2), torch.tensor([[0.0, 0, 9, 9], [0, 0, 9, 9]]),
                  torch.ones(2), torch.tensor([1, 2]))  # fmt: skip
    comp = memory.match_scores(torch.zeros(1, 3), torch.tensor([[0.0, 0, 9, 9]]),
                               torch.tensor([0.5]), torch.tensor([2]))  # fmt: skip
    assert comp.argmax().item() == 2  # same box, same embedding: the same label wins
    assert torch.isclose(comp[0, 2] - comp[0, 1], torch.tensor(10.0))


def test_mask_roi_keeps_confident_class_boxes_after_one_agnostic_nms() -> None:
    proposals = torch.tensor([[10.0, 10, 49, 49], [12.0, 12, 51, 51], [100.0, 100, 139, 139]])
    logits = torch.tensor([[0.0, 5, 0], [0.0, 0, 4.8], [0.0, 0, 0]])  # bg, thing 1, thing 2
    found = select_detections(proposals, logits, torch.zeros(3, 12), (200, 200))
    assert found.classes.tolist() == [1]  # the class-2 box overlaps it: agnostic NMS
    assert torch.equal(found.boxes, proposals[:1])
    empty = select_detections(proposals, torch.zeros(3, 3), torch.zeros(3, 12), (200, 200))
    assert empty.classes.tolist() == [0] and empty.scores.tolist() == [1.0]  # the dummy


def test_overlapping_masks_of_a_class_are_removed_and_logits_pasted() -> None:
    found = detections([[0, 0, 19, 19], [2, 2, 21, 21], [0, 0, 19, 19]], [0.9, 0.8, 0.7],
                       [1, 1, 2])  # fmt: skip
    logits = torch.ones(3, 28, 28)
    kept, energy = remove_overlaps(found, logits, (32, 32))
    assert kept == [0, 2]  # the second overlaps the first (same class) by > 30 %
    assert energy.shape == (2, 32, 32)
    assert (energy[0, :20, :20] == 1).all() and (energy[0, 20:] == 0).all()


def test_panoptic_fusion_and_unification() -> None:
    # Two stuff classes, one thing class (semantic channel 2). One instance box on the left.
    semantic = torch.zeros(3, 20, 30)
    semantic[0] = 1.0  # stuff 0 everywhere ...
    semantic[1, :, 20:] = 3.0  # ... but stuff 1 on the right
    semantic[2, 5:15, 2:12] = 4.0  # the thing
    found = detections([[2, 5, 11, 14]], [0.9], [1])
    energy = torch.zeros(1, 20, 30)
    energy[0, 5:15, 2:12] = 1.0
    logits = panoptic_logits(semantic, found, energy, num_stuff=2)
    assert logits.shape == (3, 20, 30)
    panoptic = logits.argmax(0).numpy()
    maps = unify(panoptic, semantic.argmax(0).numpy(), [1], [6], num_stuff=2, stuff_area=50)
    assert (maps.classes[5:15, 2:12] == 2).all() and (maps.track_ids[5:15, 2:12] == 7).all()
    assert (maps.classes[:, 20:] == 1).all() and (maps.instances[:, 20:] == 0).all()
    small = unify(panoptic, semantic.argmax(0).numpy(), [1], [6], num_stuff=2, stuff_area=201)
    assert (small.classes[:, 20:] == VOID).all()  # 200 px of stuff 1 < 201
    # An instance the semantic head calls stuff (>= 50 %) becomes that stuff.
    semantic[2] = -1.0
    stuffed = unify(panoptic, semantic.argmax(0).numpy(), [1], [6], num_stuff=2, stuff_area=0)
    assert (stuffed.classes[5:15, 2:12] == 0).all() and stuffed.track_ids.max() == 0


def light_model(**changes) -> VPSNet:
    torch.manual_seed(0)
    config = dataclasses.replace(VARIANTS["fusetrack_mobilenetv2"], score_thresh=0.05, **changes)
    return VPSNet(config).eval()


@torch.inference_mode()
def test_cached_reference_equals_recomputing_the_previous_frame() -> None:
    generator = torch.Generator().manual_seed(3)
    previous, current = torch.randn(2, 1, 3, 128, 160, generator=generator)
    flow = torch.randn(1, 2, 128, 160, generator=generator)
    model = light_model()
    cached = model.pyramid(previous)
    once = model(current, cached, flow)
    recomputed = model(current, model.pyramid(previous), flow)
    for a, b in zip(once["features"], recomputed["features"], strict=True):
        assert torch.equal(a, b)
    # ... and the fusion does use the reference: another one changes the features.
    other = model(current, model.pyramid(current), flow)
    assert not torch.allclose(other["features"][0], once["features"][0])


def test_video_inference_keeps_ids_of_a_still_scene() -> None:
    from synthetic.generator import generate

    frame = next(iter(generate(9000, 1, 160, 128))).image
    model = light_model()
    state = VideoState()
    image, size = to_input(frame, (160, 160))
    assert image.shape == (1, 3, 128, 160) and size == (128, 160)
    first = model.inference(image, size, state)
    second = model.inference(image, size, state, torch.zeros(1, 2, 128, 160))
    assert first.maps.classes.shape == (128, 160)
    assert len(first.detections) and state.pyramid is not None
    # The same frame again: every instance matches itself, so the ids repeat.
    assert second.object_ids.tolist() == first.object_ids.tolist()
    assert np.array_equal(second.maps.track_ids, first.maps.track_ids)
    state.reset()
    assert state.pyramid is None and len(state.memory) == 0


def test_flow_is_scaled_to_the_p2_grid() -> None:
    # forward() hands extra_neck the full-resolution flow resized by 1/4 with values x 1/4.
    model = light_model()
    seen = {}

    def record(module, args) -> None:
        seen["flow"] = args[2]

    model.extra_neck.register_forward_pre_hook(record)
    flow = torch.full((1, 2, 64, 96), 8.0)
    with torch.inference_mode():
        model(torch.zeros(1, 3, 64, 96), None, flow)
    assert seen["flow"].shape == (1, 2, 16, 24)
    assert torch.allclose(seen["flow"], torch.full_like(seen["flow"], 2.0))


DEMO = Path(__file__).resolve().parents[2] / "models" / "vpsnet" / "weights"
DEMO = DEMO / "synthetic_mobilenetv2.pth"


def test_demo_weights_segment_and_track_a_held_out_video() -> None:
    from evaluation.panoptic import pq
    from models.checkpoints import weights_meta
    from models.vpsnet import segment_ids
    from synthetic.categories import THING_IDS
    from synthetic.generator import generate

    meta = weights_meta(DEMO)
    assert meta["input_scale"] == [320, 256]  # PQ: test_demo_weights_accuracy.py measures it
    model = load_weights(build_model(meta["variant"]), DEMO).eval()
    state = VideoState()
    predicted, truth, ids = [], [], []
    for frame in generate(9002, 4, 320, 256):  # an evaluation seed, never trained on
        image, size = to_input(frame.image, (320, 256))
        out = model.inference(image, size, state)
        predicted.append(segment_ids(out.maps, meta["category_ids"], model.config.num_stuff))
        truth.append((frame.panoptic, {k: s.category_id for k, s in frame.segments.items()}))
        ids.append(set(out.object_ids.tolist()))
    assert pq(predicted, truth, thing_categories=THING_IDS).all.pq > 0.6
    assert len(ids[0] & ids[-1]) >= len(ids[0]) // 2  # most objects keep their ids


@pytest.mark.golden
def test_graphs_on_onnxruntime_match_torch_and_segment_alike(tmp_path: Path, monkeypatch) -> None:
    from models.backends import RunOptions, TorchBackend, create_backend
    from models.checkpoints import weights_meta
    from models.vpsnet import FirstFrameGraph, NextFrameGraph, graph_specs, raw_outputs
    from models.vpsnet.export import OUTPUTS
    from synthetic.generator import generate

    monkeypatch.setenv("FRAMEGRAPH_CACHE", str(tmp_path))
    meta = weights_meta(DEMO)
    model = load_weights(build_model(meta["variant"]), DEMO).eval()
    # 288 high: P2 (72 rows) is no multiple of P6 (5), so the fusion's pooling is adaptive
    frames = [f.image for f in generate(9002, 3, 352, 288)]
    first_spec, next_spec = graph_specs(model.config.channels, 288, 352)
    graphs = (FirstFrameGraph(model), NextFrameGraph(model))
    by_torch = [TorchBackend(graph) for graph in graphs]
    by_onnxruntime = [
        create_backend(graph, spec, "vpsnet", RunOptions(backend="onnxruntime", threads=2))
        for graph, spec in zip(graphs, (first_spec, next_spec), strict=True)
    ]
    states = {"torch": VideoState(), "onnxruntime": VideoState()}
    for index, image in enumerate(frames):
        x, size = to_input(image, (352, 288))
        assert tuple(x.shape[2:]) == (288, 352)
        flow = torch.randn(1, 2, *x.shape[2:])  # any flow: both sides warp by the same
        results = {}
        for name, backends in (("torch", by_torch), ("onnxruntime", by_onnxruntime)):
            state = states[name]
            inputs = (x,) if index == 0 else (x, *state.pyramid, flow)
            outputs = backends[min(index, 1)](*inputs)
            with torch.inference_mode():
                results[name] = (
                    outputs,
                    model.inference(x, size, state, flow, raw_outputs(outputs)),
                )
        (theirs, expected), (ours, out) = results["torch"], results["onnxruntime"]
        for name, a, b in zip(OUTPUTS, ours, theirs, strict=True):
            # features and logits, before any decision: within 1e-4 of each one's own scale
            assert_close(a, b, 1e-4, name)
        # the same instances, but for any a rounding error could add or drop (a score within
        # 1e-3 of the threshold, an overlap within 0.01 of NMS's), boxes within 0.01 px
        c, found, reference = model.config, out.detections, expected.detections
        pairs = assert_same_detections(
            (found.boxes, found.scores), (reference.boxes, reference.scores), "instances",
            threshold=c.score_thresh, score_margin=1e-3, nms=c.nms_thresh, box_tolerance=0.01,
            inclusive=True,
        )  # fmt: skip
        assert len(reference) > 0 and len(pairs) > 0
        i, j = (list(side) for side in zip(*pairs, strict=True))
        assert_close(found.boxes[i], reference.boxes[j], 1e-4, "instance boxes")
        assert found.classes[i].tolist() == reference.classes[j].tolist()
        assert out.object_ids[i].tolist() == expected.object_ids[j].tolist()
        # maps: the share of equal pixels (argmax near-ties flip a few), away from an instance
        # only one side found
        alone = np.zeros(out.maps.classes.shape, bool)
        lone = [(found, k) for k in range(len(found)) if k not in i]
        for detections, k in lone + [(reference, k) for k in range(len(reference)) if k not in j]:
            x0, y0, x1, y1 = detections.boxes[k].floor().int().tolist()
            alone[max(y0, 0) : y1 + 2, max(x0, 0) : x1 + 2] = True
        assert alone.mean() < 0.5
        rank = np.full(len(found) + 1, -1)  # instance maps hold ranks: ours as the reference's
        rank[0] = 0
        rank[np.array(i) + 1] = np.array(j) + 1
        ours_maps = (out.maps.classes, rank[out.maps.instances], out.maps.track_ids)
        theirs_maps = (expected.maps.classes, expected.maps.instances, expected.maps.track_ids)
        for a, b in zip(ours_maps, theirs_maps, strict=True):
            assert (a == b)[~alone].mean() > 0.999


def test_adaptive_max_pool_for_export_equals_torchs(monkeypatch) -> None:
    import torch.nn.functional as F

    from models.vpsnet.fusion import adaptive_max_pool

    monkeypatch.setattr(torch.jit, "is_tracing", lambda: True)  # the export-time path
    for height, width, h, w in ((72, 88, 5, 6), (64, 80, 4, 5), (13, 7, 4, 3), (9, 9, 9, 9)):
        x = torch.randn(2, 3, height, width)
        assert torch.equal(adaptive_max_pool(x, (h, w)), F.adaptive_max_pool2d(x, (h, w)))

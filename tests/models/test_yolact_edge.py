"""YolactEdge: official layouts, strict loading, and number-for-number parity with the official
code (golden outputs recorded by tools/golden_yolact_edge.py from haotian-liu/yolact_edge)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from models.yolact_edge import (
    Instances,
    boxes_in_pixels,
    build_model,
    decode,
    detect,
    fast_nms,
    level_sizes,
    load_weights,
    masks,
    priors,
    to_input,
)
from models.yolact_edge.net import YolactEdge
from tests.golden import assert_close, assert_decisions_agree, relative_error
from tests.models.seeded_yolact_edge import head_logits, seeded_state_dict

DATA = Path(__file__).resolve().parents[1] / "data" / "yolact_edge"
SHARED_MANIFESTS = Path(__file__).resolve().parents[3] / "shared" / "reference" / "manifests"
MANIFESTS = SHARED_MANIFESTS if SHARED_MANIFESTS.is_dir() else DATA
VARIANTS = ["yolact_edge_mobilenetv2", "yolact_edge_resnet50", "yolact_edge_vid_resnet50"]


def manifest(name: str) -> list[list]:
    return json.loads((MANIFESTS / f"{name}.json").read_text())


def layout(model: torch.nn.Module) -> list[list]:
    return [[k, list(v.shape), str(v.dtype)] for k, v in model.state_dict().items()]


def resnet101_manifest(resnet50: list[list]) -> list[list]:
    """R-101's layout from R-50's: stage 3 (layers.2) has 23 blocks instead of 6, each like
    block 1 (only block 0 has a downsample projection)."""
    out: list[list] = []
    for entry in resnet50:
        match = re.match(r"backbone\.layers\.2\.(\d+)\.(.*)", entry[0])
        if match and match.group(1) != "1":
            if match.group(1) == "0":
                out.append(entry)
            continue
        if match:
            for block in range(1, 23):
                out.append([f"backbone.layers.2.{block}.{match.group(2)}", *entry[1:]])
            continue
        out.append(entry)

    # Blocks were emitted key-major; the state_dict is block-major.
    def order(entry: list) -> tuple:
        m = re.match(r"backbone\.layers\.2\.(\d+)\.", entry[0])
        return (0, int(m.group(1))) if m else (0, -1)

    stage = [e for e in out if e[0].startswith("backbone.layers.2.")]
    stage.sort(key=order)
    first = next(i for i, e in enumerate(out) if e[0].startswith("backbone.layers.2."))
    rest = [e for e in out if not e[0].startswith("backbone.layers.2.")]
    return rest[:first] + stage + rest[first:]


@pytest.mark.parametrize("variant", VARIANTS)
def test_state_dict_matches_official_manifest(variant: str) -> None:
    assert layout(build_model(variant)) == manifest(variant)


@pytest.mark.parametrize(
    ("variant", "base"),
    [("yolact_edge", "yolact_edge_resnet50"), ("yolact_edge_vid", "yolact_edge_vid_resnet50")],
)
def test_resnet101_layout_derived_from_resnet50(variant: str, base: str) -> None:
    assert layout(build_model(variant)) == resnet101_manifest(manifest(base))


@pytest.mark.skipif(not SHARED_MANIFESTS.is_dir(), reason="shared reference not beside the clone")
@pytest.mark.parametrize("variant", VARIANTS)
def test_bundled_manifest_copies_are_current(variant: str) -> None:
    assert json.loads((DATA / f"{variant}.json").read_text()) == manifest(variant)


def checkpoint_like(variant: str) -> dict[str, torch.Tensor]:
    """A state_dict in exactly the manifest's layout (values from a seed)."""
    shapes = {k: (s, t) for k, s, t in manifest(variant)}
    model = build_model(variant)
    values = seeded_state_dict(model, 3)
    assert {k: (list(v.shape), str(v.dtype)) for k, v in values.items()} == {
        k: (s, t) for k, (s, t) in shapes.items()
    }
    return values


def test_official_layout_loads_strictly_and_config_comes_from_the_caller(tmp_path: Path) -> None:
    state = checkpoint_like("yolact_edge_vid_resnet50")
    path = tmp_path / "renamed_mobilenetv2_54_800000.pth"  # a misleading file name
    torch.save(state, path)
    model = load_weights(build_model("yolact_edge_vid_resnet50"), path)
    assert torch.equal(model.flow_net.pred3.conv.weight, state["flow_net.pred3.conv.weight"])
    with pytest.raises(ValueError, match=r"unexpected \(\d+\): spa\.refine_convs"):
        load_weights(build_model("yolact_edge_resnet50"), path)  # vid file into the image model


def test_mismatched_checkpoint_names_the_keys() -> None:
    state = checkpoint_like("yolact_edge_resnet50")
    with pytest.raises(ValueError) as error:
        load_weights(build_model("yolact_edge_mobilenetv2"), state)
    message = str(error.value)
    assert "missing (312): backbone.layers.0.0.weight" in message
    assert "unexpected" in message and "backbone.layers.0.0.conv1.weight" in message
    assert "shape" in message and "fpn_phase_1.lat_layers.0.weight (256, 2048, 1, 1)" in message
    state["semantic_seg_conv.weight"] = torch.zeros(40, 256, 1, 1)  # YouTube-VIS classes
    with pytest.raises(ValueError, match=r"shape \(1\): semantic_seg_conv\.weight"):
        load_weights(build_model("yolact_edge_resnet50"), state)


def test_yolact_checkpoint_remap() -> None:
    state = checkpoint_like("yolact_edge_resnet50")
    yolact = {}
    for key, value in state.items():
        key = key.replace("fpn_phase_1.", "fpn.").replace("fpn_phase_2.", "fpn.")
        yolact[key] = value
    yolact["fpn.downsample_layers.2.weight"] = torch.zeros(1)  # dropped, as official
    yolact["backbone.layer1.0.conv1.weight"] = torch.zeros(1)  # old-style key, dropped
    model = load_weights(build_model("yolact_edge_resnet50"), yolact)
    assert torch.equal(
        model.fpn_phase_2.pred_layers[1].weight, state["fpn_phase_2.pred_layers.1.weight"]
    )


# --------------------------------------------------------------------------- parity


@pytest.fixture(scope="module")
def golden() -> dict:
    return torch.load(DATA / "golden.pt", weights_only=True)


# Relative to each output's own scale (seeded weights put the video model's logits in the
# thousands). Measured on a 2-core AMD EPYC at 1-3 threads: at most 1.3e-5 (the non-keyframe's
# loc; the warp amplifies rounding), 1.5e-6 elsewhere; see the README's golden table.
TOLERANCE = 1e-4
OUTPUTS = ("loc", "conf_logits", "mask_logits", "proto")


def raw_outputs(model: YolactEdge, run) -> dict[str, torch.Tensor]:
    """``run(model)``'s loc and proto, and its class / coefficient logits before softmax / tanh
    (read off the heads by the golden recorder's own hooks)."""
    outputs: list = []
    logits = head_logits(model, lambda: outputs.append(run(model)), model.config.num_classes)
    loc, _, _, proto = outputs[0]
    return {"loc": loc, "proto": proto, **logits}


def test_priors_equal_official(golden: dict) -> None:
    h, w = golden["input_a"].shape[-2:]
    assert torch.equal(priors(h, w), golden["mobilenetv2"]["priors"])
    assert len(priors()) == 19248 and level_sizes(550, 550) == (
        (69, 69),
        (35, 35),
        (18, 18),
        (9, 9),
        (5, 5),
    )


@pytest.mark.golden
@torch.inference_mode()
def test_image_mode_matches_official(golden: dict) -> None:
    model = build_model("yolact_edge_mobilenetv2").eval()
    load_weights(model, seeded_state_dict(model, 0))
    ours = raw_outputs(model, lambda m: m(golden["input_a"]))
    for key in OUTPUTS:
        assert_close(ours[key], golden["mobilenetv2"][key], TOLERANCE, f"mobilenetv2 {key}")
    # The activations are the official ones: softmax over classes, tanh on the coefficients.
    _, conf, coeffs, _ = model(golden["input_a"])
    assert torch.allclose(conf, torch.softmax(ours["conf_logits"], -1))
    assert torch.allclose(coeffs, torch.tanh(ours["mask_logits"]))


@pytest.mark.golden
@torch.inference_mode()
def test_keyframe_and_warped_non_keyframe_match_official(golden: dict) -> None:
    model = build_model("yolact_edge_vid_resnet50").eval()
    load_weights(model, seeded_state_dict(model, 1))
    states = []

    def keyframe(m: YolactEdge):
        outputs, state = m.keyframe(golden["input_a"])
        states.append(state)
        return outputs

    key = raw_outputs(model, keyframe)
    warped = raw_outputs(model, lambda m: m.non_keyframe(golden["input_b"], states[0]))
    for ours, name in ((key, "vid_resnet50_key"), (warped, "vid_resnet50_nonkey")):
        for output in OUTPUTS:
            assert_close(ours[output], golden[name][output], TOLERANCE, f"{name} {output}")
    # The non-keyframe really differs from running the keyframe path on frame B.
    full_b, _ = model.keyframe(golden["input_b"])
    assert relative_error(full_b[3], golden["vid_resnet50_nonkey"]["proto"]) > 1e-3


@pytest.mark.golden
def test_detection_matches_official(golden: dict) -> None:
    # The head outputs are recorded constants, so the decisions (which detections, their
    # classes and order) take the same scores; only the box decode computes (an exp).
    head = golden["detect"]["head"]
    prior = golden["mobilenetv2"]["priors"]
    (found,) = detect(head["loc"], head["conf"], head["mask"], prior)
    expected = golden["detect"]
    assert len(found) == len(expected["scores"]) == 100
    assert torch.equal(found.classes, expected["classes"])
    assert_close(found.scores, expected["scores"], 1e-6, "detect scores")
    assert_close(found.boxes, expected["boxes_rel"], 1e-5, "detect boxes")
    # Pixel boxes are truncated to integers: compare them where a coordinate is not within
    # rounding of a pixel edge (a truncation there may go either way).
    pixels = boxes_in_pixels(found.boxes, 64, 96)
    clear = (pixels - pixels.round()).abs() > 1e-4
    assert_decisions_agree(pixels.long(), expected["boxes_long"], clear, "detect pixel boxes")
    ours = masks(head["proto"][0], found, 64, 96).numpy()
    theirs = np.unpackbits(expected["masks_packed"].numpy(), axis=-1, count=96).astype(bool)
    assert (ours == theirs).mean() > 0.9999  # bilinear ties at exactly 0.5 may flip a pixel


# --------------------------------------------------------------------------- by hand


def test_decode_and_fast_nms_by_hand() -> None:
    prior = torch.tensor([[0.5, 0.5, 0.2, 0.2]])
    box = decode(torch.tensor([[1.0, 0.0, 0.0, 0.0]]), prior)  # cx += 1 * 0.1 * 0.2
    assert torch.allclose(box, torch.tensor([[0.42, 0.4, 0.62, 0.6]]))
    boxes = torch.tensor([[0.0, 0.0, 0.4, 0.4], [0.02, 0.0, 0.42, 0.4], [0.6, 0.6, 0.9, 0.9]])
    coeffs = torch.arange(3.0)[:, None].expand(3, 32)
    # Class 0: boxes 0 and 1 overlap (IoU 0.905): the lower-scored one goes. Class 1 scores
    # box 1 high: it survives there (Fast NMS is per class).
    scores = torch.tensor([[0.9, 0.8, 0.3], [0.0, 0.7, 0.0]])
    kept = fast_nms(boxes, coeffs, scores)
    got = sorted(zip(kept.classes.tolist(), kept.coeffs[:, 0].tolist(), strict=True))
    assert (0, 0.0) in got and (0, 2.0) in got and (1, 1.0) in got and (0, 1.0) not in got
    assert kept.scores.tolist() == sorted(kept.scores.tolist(), reverse=True)


@pytest.mark.parametrize("size", [(480, 640), (64, 96), (550, 550), (37, 300)])
def test_windowed_masks_equal_resizing_whole_maps(size: tuple[int, int]) -> None:
    # The official path: crop each sigmoid map on the prototype grid, resize all of it.
    torch.manual_seed(0)
    proto = torch.randn(138, 138, 32)
    corners = torch.rand(60, 2, 2) * 1.2 - 0.1  # some boxes reach past the image
    found = Instances(
        corners.flatten(1), torch.rand(60), torch.zeros(60, dtype=torch.long), torch.randn(60, 32)
    )
    soft = torch.sigmoid(proto @ found.coeffs.t()).permute(2, 0, 1)
    cells = torch.arange(138.0)
    x1, x2 = (found.boxes[:, [0, 2]] * 138).sort(dim=1).values.unbind(1)
    y1, y2 = (found.boxes[:, [1, 3]] * 138).sort(dim=1).values.unbind(1)
    inside_x = (cells >= (x1 - 1).clamp(min=0)[:, None]) & (
        cells < (x2 + 1).clamp(max=138)[:, None]
    )
    inside_y = (cells >= (y1 - 1).clamp(min=0)[:, None]) & (
        cells < (y2 + 1).clamp(max=138)[:, None]
    )
    cropped = soft * (inside_y[:, :, None] & inside_x[:, None, :])
    for crop, maps in ((True, cropped), (False, soft)):
        resized = F.interpolate(maps[None], size=size, mode="bilinear", align_corners=False)[0]
        got = masks(proto, found, *size, crop=crop)
        assert got.shape == (60, *size) and got.any()
        # Only float rounding at exactly the 0.5 threshold may differ (a few pixels in 1e7).
        differ = got != (resized > 0.5)
        assert bool(((resized[differ] - 0.5).abs() < 1e-5).all())
        assert differ.sum() <= 30


# --------------------------------------------------------------------------- export


@pytest.mark.golden
def test_exported_graphs_match_torch_on_onnxruntime(tmp_path: Path) -> None:
    from models.backends import RunOptions, create_backend
    from models.yolact_edge.export import KeyframeGraph, NonKeyframeGraph, graph_specs

    model = build_model("yolact_edge_vid_mobilenetv2").eval()
    load_weights(model, seeded_state_dict(model, 5))
    with torch.no_grad():  # logits near 1, not ~50: softmax and tanh stay well conditioned
        head = model.prediction_layers[0]
        for layer in (head.conf_layer, head.mask_layer):
            layer.weight.mul_(0.02)
            layer.bias.mul_(0.02)
    key_spec, non_key_spec = graph_specs()
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(1, 3, 550, 550, generator=generator)
    b = torch.roll(a, 4, dims=3)
    for graph, spec, inputs in (
        (KeyframeGraph(model), key_spec, lambda key: (a,)),
        (NonKeyframeGraph(model), non_key_spec, lambda key: (b, *key[4:])),
    ):
        reference = create_backend(graph, spec, "yolact_edge", RunOptions(backend="torch"))
        onnx = create_backend(
            graph, spec, "yolact_edge", RunOptions(backend="onnxruntime", threads=2)
        )
        if graph.__class__ is KeyframeGraph:
            key = reference(a)
        expected = reference(*inputs(key))
        got = onnx(*inputs(key))
        assert len(got) == len(spec.outputs)
        for name, ours, theirs in zip(spec.outputs, got, expected, strict=True):
            assert_close(ours, theirs, 1e-4, f"onnxruntime {graph.__class__.__name__} {name}")


DEMO = (
    Path(__file__).resolve().parents[2]
    / "models"
    / "yolact_edge"
    / "weights"
    / "synthetic_mobilenetv2.pth"
)


@torch.inference_mode()
def test_demo_weights_find_people_in_a_held_out_scene() -> None:
    from models.yolact_edge import weights_meta
    from synthetic.categories import PERSON
    from synthetic.generator import generate

    meta = weights_meta(DEMO)
    assert meta["input_size"] == 320  # mask AP: test_demo_weights_accuracy.py measures it
    model = load_weights(build_model(meta["variant"], tuple(meta["class_names"])), DEMO).eval()
    frames = list(generate(9001, 31, 320, 320))  # an evaluation seed, never trained on
    frame = frames[30]
    loc, conf, coeffs, proto = model(to_input(frame.image, 320))
    (found,) = detect(loc, conf, coeffs, priors(320, 320))
    keep = found.scores > 0.3
    people = [s for s in frame.things() if s.category_id == PERSON and s.area > 500]
    assert people
    found_masks = masks(proto[0], found, 320, 320)[keep]
    found_classes = found.classes[keep] + 1
    for person in people:  # every clearly visible person is found with a good mask
        truth = torch.from_numpy(frame.mask(person.id))
        ious = [
            float((m & truth).sum() / (m | truth).sum())
            for m, c in zip(found_masks, found_classes, strict=True)
            if c == PERSON
        ]
        assert ious and max(ious) > 0.5


@pytest.mark.golden
def test_demo_weights_graphs_match_torch_on_onnxruntime_to_1e4() -> None:
    # Trained weights on real (synthetic) frames: every output within 1e-4 of its scale.
    from models.backends import RunOptions, create_backend
    from models.yolact_edge import weights_meta
    from models.yolact_edge.export import KeyframeGraph, NonKeyframeGraph, graph_specs
    from synthetic.generator import generate

    meta = weights_meta(DEMO)
    model = load_weights(build_model(meta["variant"], tuple(meta["class_names"])), DEMO).eval()
    key_spec, non_key_spec = graph_specs(320, video=True)
    a, _, b = (to_input(f.image, 320) for f in generate(9001, 3, 320, 320))
    runs = {}
    for kind in ("torch", "onnxruntime"):
        options = RunOptions(backend=kind, threads=2)
        key = create_backend(KeyframeGraph(model), key_spec, "yolact_edge", options)
        non_key = create_backend(NonKeyframeGraph(model), non_key_spec, "yolact_edge", options)
        key_outputs = key(a)
        runs[kind] = (key_outputs, non_key(b, *key_outputs[4:]))
    for spec, expected, got in zip(
        (key_spec, non_key_spec), runs["torch"], runs["onnxruntime"], strict=True
    ):
        for name, theirs, ours in zip(spec.outputs, expected, got, strict=True):
            assert_close(
                ours,
                theirs,
                1e-4,
                f"demo onnxruntime {'key' if spec is key_spec else 'non-key'} {name}",
            )


def test_missing_or_foreign_files_are_one_line_errors(tmp_path: Path) -> None:
    model = build_model("yolact_edge_mobilenetv2")
    with pytest.raises(FileNotFoundError, match="weights file not found"):
        load_weights(model, tmp_path / "missing.pth")
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint\n")
    with pytest.raises(ValueError, match="is not a PyTorch checkpoint") as error:
        load_weights(model, text)
    assert "\n" not in str(error.value)

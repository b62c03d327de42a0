"""VPSNet parity with the official code (mcahny/vps): golden outputs recorded by
tools/golden_vpsnet.py from the official modules on seeded weights and synthetic inputs.

Covered: the temporal fusion neck (BFPTcea: gather, warp, LiteFlowNetCorr, second warp, TCEA,
refine, scatter), the semantic head's structure (UPSNetFPN; the deformable conv is torchvision's
on both sides), and three video frames of the test-time tail: MaskROI, track matching,
MaskRemoval, SegTerm, the panoptic argmax and get_unified_pan_result. Not covered by these
goldens: the correlation kernel itself (a plain-torch stand-in on the official side), the
CUDA DeformConv, RoIAlign, the RPN, FlowNet2.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from models.vpsnet.boxes import apply_deltas, box_iou, nms_inclusive
from models.vpsnet.config import BOX_STDS
from models.vpsnet.fusion import BFPTcea, correlation, warp
from models.vpsnet.heads import TrackHead
from models.vpsnet.panoptic import (
    PanopticMaps,
    panoptic_logits,
    remove_overlaps,
    select_detections,
    unify,
)
from models.vpsnet.semantic import UPSNetFPN
from models.vpsnet.tracking import TrackMemory
from tests.golden import assert_close, assert_decisions_agree, top2_gap
from tests.models.seeded_vpsnet import (
    CHANNELS,
    IMAGE,
    MATCH_COEFF,
    NUM_STUFF,
    PADDED,
    SEEDS,
    STUFF_AREA,
    fusion_inputs,
    roi_features,
    seeded_state_dict,
    semantic_logits,
)

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "vpsnet" / "golden.pt"
NETWORK = 1e-4
"""Tolerance for network outputs (fusion neck, semantic head, track match scores), relative to
the reference's largest value, and the decision margin on them: their convolutions and matmuls
sum in an order that the CPU and the thread count change (largest measured: 2.2e-6)."""
ELEMENTWISE = 1e-5
"""Tolerance for what the tail computes from recorded constants by a few elementwise float32
steps (softmax over 9 classes, box deltas, pasted mask logits): no sum whose order can change,
so both sides agree to an ulp or two (2^-23 = 1.2e-7 of the scale; largest measured: 3.4e-8)."""
MARGIN = 2e-6
"""Decision margin on such elementwise values, relative to their scale: 16 ulps of the largest
value, more than the few ulps by which both sides' rounding can move a gap or a distance to a
threshold. Network outputs get the NETWORK margin instead."""


@pytest.fixture(scope="module")
def golden() -> dict:
    return torch.load(GOLDEN, weights_only=True)


def layout(model: torch.nn.Module) -> list[list]:
    return [[k, list(v.shape)] for k, v in model.state_dict().items()]


def seeded(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    model.load_state_dict(seeded_state_dict(model, seed), strict=True)
    return model.eval()


def test_golden_is_from_the_official_commit(golden: dict) -> None:
    assert golden["commit"].startswith("138503e")
    assert golden["seeds"] == SEEDS


# --------------------------------------------------------------------------- extra_neck


@pytest.fixture(scope="module")
def neck() -> BFPTcea:
    return seeded(BFPTcea(CHANNELS), SEEDS["extra_neck"])


def test_fusion_layout_matches_official(golden: dict, neck: BFPTcea) -> None:
    assert layout(neck) == golden["extra_neck"]["layout"]


@pytest.mark.golden
@torch.no_grad()
def test_fusion_steps_match_official(golden: dict, neck: BFPTcea) -> None:
    # Flows and features, each relative to its own scale; the warps are bilinear (continuous
    # in the flow), so the flow's rounding moves the warped map by as little.
    expected = golden["extra_neck"]
    current, reference, flow = fusion_inputs()
    centre = neck.gather(current)
    warped = warp(neck.gather(reference), flow)
    flow_fine = neck.liteflownet(centre, warped, flow)
    assert_close(flow_fine, expected["flow_fine"], NETWORK, "vpsnet fusion flow_fine")
    assert float(expected["flow_fine"].abs().max()) > 0.5  # the second warp really moves
    warped = warp(warped, flow_fine)
    assert_close(warped, expected["warp2"], NETWORK, "vpsnet fusion warp2")
    fused = neck.tcea_fusion(torch.stack([centre, warped], dim=1))
    assert_close(fused, expected["tcea"], NETWORK, "vpsnet fusion tcea")


@pytest.mark.golden
@torch.no_grad()
def test_fusion_outputs_match_official(golden: dict, neck: BFPTcea) -> None:
    current, reference, flow = fusion_inputs()
    outputs = neck(current, reference, flow)
    expected = golden["extra_neck"]["outputs"]
    assert len(outputs) == len(expected) == 5
    for level, (ours, theirs) in enumerate(zip(outputs, expected, strict=True)):
        assert_close(ours, theirs, NETWORK, f"vpsnet fusion output P{level + 2}")


def test_correlation_is_81_channels_dy_major() -> None:
    """The part the golden cannot pin (a stand-in on the official side): channel
    (dy + 4) * 9 + (dx + 4) is the channel mean of a * b shifted by (dy, dx)."""
    generator = torch.Generator().manual_seed(0)
    a, b = torch.randn(2, 1, 3, 5, 7, generator=generator)
    out = correlation(a, b)
    assert out.shape == (1, 81, 5, 7)
    y, x, dy, dx = 2, 3, -1, 2
    expected = (a[0, :, y, x] * b[0, :, y + dy, x + dx]).mean()
    assert torch.allclose(out[0, (dy + 4) * 9 + dx + 4, y, x], expected)
    assert out[0, (-4 + 4) * 9 + 4, 1, 0] == 0  # dy = -4 reaches outside: zero


# --------------------------------------------------------------------------- panopticFPN


@pytest.mark.golden
@torch.no_grad()
def test_semantic_head_matches_official(golden: dict) -> None:
    expected = golden["panopticFPN"]
    head = seeded(UPSNetFPN(CHANNELS, (256, 128, 128), 19), SEEDS["panopticFPN"])
    assert layout(head) == expected["layout"]
    current, _, _ = fusion_inputs()
    output, score = head(current)
    # logits (before the softmax), relative to their own scale (|x| <~ 3.1)
    assert_close(score, expected["fcn_score"], NETWORK, "vpsnet semantic fcn_score")
    assert_close(output, expected["fcn_output"], NETWORK, "vpsnet semantic fcn_output")


# --------------------------------------------------------------------------- video tail


@pytest.fixture(scope="module")
@torch.no_grad()
def video(golden: dict) -> list[dict]:
    """Our port run through the recorded frames: detections, ids, panoptic maps."""
    head = seeded(TrackHead(CHANNELS, 1024), SEEDS["track_head"])
    assert layout(head) == golden["video"]["layout"]
    memory = TrackMemory()
    results = []
    for frame in golden["video"]["frames"]:
        found = select_detections(
            frame["proposals"], frame["cls_score"], frame["bbox_pred"], PADDED
        )
        embeddings = head(roi_features(found.boxes))
        comp = logits = None
        if len(memory):
            logits = head.match_logits(embeddings, memory.embeddings)
            comp = memory.match_scores(
                logits, found.boxes, found.scores, found.classes, MATCH_COEFF
            )
        ids = memory.assign(
            embeddings, found.boxes, found.scores, found.classes, logits, MATCH_COEFF
        )
        kept, energy = remove_overlaps(found, frame["mask_logits"], PADDED)
        kept_found, kept_ids = found.take(kept), ids[kept]
        semantic = semantic_logits(len(results))
        logits_all = panoptic_logits(semantic, kept_found, energy, NUM_STUFF)
        panoptic = logits_all.argmax(dim=0)[: IMAGE[0], : IMAGE[1]].numpy()
        semantic_map = semantic.argmax(dim=0)[: IMAGE[0], : IMAGE[1]].numpy()
        maps = unify(
            panoptic,
            semantic_map,
            kept_found.classes.tolist(),
            kept_ids.tolist(),
            NUM_STUFF,
            STUFF_AREA,
        )
        results.append(
            dict(
                found=found,
                comp=comp,
                ids=ids,
                kept=kept,
                instance_logits=logits_all[NUM_STUFF:],
                panoptic=panoptic,
                semantic=semantic_map,
                maps=maps,
            )
        )
    return results


def _frames(golden: dict, video: list[dict]):
    return list(enumerate(zip(golden["video"]["frames"], video, strict=True)))


# Margins of the tail's decisions, from the golden's own values. Every decision below is
# compared exactly only where its margin is wider than rounding can cross.


def selection_reference(frame: dict) -> tuple[float, torch.Tensor, torch.Tensor]:
    """MaskROI on the frame's recorded box-head outputs in float64 (the values that both sides
    round to float32).

    Returns:
        ``(margin, classes, boxes)``: the smallest margin of its decisions, relative to scale 1
        (each (proposal, class) probability to the 0.6 threshold, each IoU of two passing boxes
        to NMS's 0.5, each two passing probabilities, since NMS goes best first); the selected
        detections' classes and their boxes before clipping [n, 4].
    """
    probs = torch.softmax(frame["cls_score"].double(), dim=1)[:, 1:]
    classes = torch.arange(1, probs.shape[1] + 1).repeat(len(probs))
    raw = apply_deltas(frame["proposals"].double(), frame["bbox_pred"].double(), BOX_STDS,
                       clamp_below=False)  # fmt: skip
    raw = raw.view(len(probs), -1, 4)[:, 1:].reshape(-1, 4)
    probs = probs.reshape(-1)
    height, width = PADDED
    boxes = torch.minimum(raw.clamp(min=0), raw.new_tensor([width - 1, height - 1] * 2))
    passed = torch.nonzero(probs > 0.6).squeeze(1)
    pairs = torch.triu_indices(len(passed), len(passed), offset=1)
    iou = box_iou(boxes[passed], boxes[passed])[pairs[0], pairs[1]]
    keep = passed[nms_inclusive(boxes[passed], probs[passed], 0.5)]
    margins = (
        (probs - 0.6).abs().min(),
        (iou - 0.5).abs().min(),
        probs[passed].sort().values.diff().min(),
    )
    return min(float(m) for m in margins), classes[keep], raw[keep]


def removal_margin(frame: dict, raw_boxes: torch.Tensor) -> float:
    """The smallest margin, relative to scale, of what MaskRemoval and SegTerm decide from the
    detections: each box coordinate before clipping (relative to the image size) to the
    integers where truncating it changes, and x2, y2 to the half-integers where SegTerm's
    rounding does; each pasted mask logit (relative to the largest) to the 0 of ``mask > 0``.
    Beyond these, MaskRemoval counts pixels: exact."""
    fraction = raw_boxes - raw_boxes.floor()
    to_integer = float(torch.minimum(fraction, 1 - fraction).min())
    to_half = float((fraction[:, 2:] - 0.5).abs().min())
    logits = frame["mask_logits"].numpy()
    to_zero = float("inf")
    for (x1, y1, x2, y2), logit in zip(frame["det_boxes"].int().tolist(), logits, strict=True):
        pasted = cv2.resize(logit, (max(x2 - x1 + 1, 1), max(y2 - y1 + 1, 1)))
        to_zero = min(to_zero, float(np.abs(pasted).min()))
    return min(min(to_integer, to_half) / max(PADDED), to_zero / float(np.abs(logits).max()))


def track_clear(comp: torch.Tensor) -> torch.Tensor:
    """Per detection, whether its track decision is clear in the recorded match scores ``comp``
    [n, M + 1] (a network output: NETWORK margin): its best column over its second best, and
    its likelihood apart from that of every other detection claiming the same object (the
    better claim keeps the id, the other becomes a new object)."""
    margin = NETWORK * float(comp.abs().max())
    likelihood, match = comp.double().max(dim=1)
    rivals = (match[:, None] == match[None]) & (match[:, None] > 0)
    rivals.fill_diagonal_(False)
    apart = (likelihood[:, None] - likelihood[None]).abs().masked_fill(~rivals, float("inf"))
    return (top2_gap(comp, 1) > margin) & (apart.amin(dim=1) > margin)


def clear_argmax(logits: torch.Tensor) -> torch.Tensor:
    """Where the argmax over dim 0 of elementwise values cannot flip: the top-2 gap is above
    MARGIN x the largest |value|, or is an exact tie of values both sides compute exactly
    (thing channels both -1 + 5 = 4 where boxes of two classes overlap: 3 pixels of the
    semantic maps), which both argmaxes break to the lower index."""
    gap = top2_gap(logits, 0)
    return (gap > MARGIN * float(logits.abs().max())) | (gap == 0)


def reference_logits(frame: dict, t: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The values of the golden's panoptic and semantic argmaxes, cropped to the image: stuff
    logits with the recorded instance logits, and the frame's semantic logits."""
    semantic = semantic_logits(t)
    panoptic = torch.cat([semantic[:NUM_STUFF], frame["instance_logits"]])
    return panoptic[:, : IMAGE[0], : IMAGE[1]], semantic[:, : IMAGE[0], : IMAGE[1]]


@pytest.mark.golden
def test_mask_roi_matches_official(golden: dict, video: list[dict]) -> None:
    for t, (theirs, ours) in _frames(golden, video):
        found = ours["found"]
        margin, classes, _ = selection_reference(theirs)
        assert len(found) == len(classes), f"frame {t}: {len(found)} detections, not {len(classes)}"
        # One joint decision (which pairs pass, which survive NMS, in which order): compared
        # exactly, which needs it clear (smallest margin: two scores 9.1e-5 apart in frame 0).
        clear = torch.full(classes.shape, margin > MARGIN)
        what = f"vpsnet detection classes (frame {t})"
        assert_decisions_agree(found.classes, theirs["det_classes"], clear, what, max_unclear=0)
        assert torch.equal(classes, theirs["det_classes"])  # the margins are the golden's
        what = f"vpsnet detection scores (frame {t})"
        assert_close(found.scores, theirs["det_scores"], ELEMENTWISE, what)
        what = f"vpsnet detection boxes (frame {t})"
        assert_close(found.boxes, theirs["det_boxes"], ELEMENTWISE, what)


@pytest.mark.golden
def test_track_scores_and_ids_match_official(golden: dict, video: list[dict]) -> None:
    for t, (theirs, ours) in _frames(golden, video):
        if t == 0:
            assert theirs["comp_scores"] is None and ours["comp"] is None
            clear = torch.ones(len(theirs["obj_ids"]), dtype=torch.bool)  # 0..n-1: no scores
        else:
            what = f"vpsnet track match scores (frame {t})"
            assert_close(ours["comp"], theirs["comp_scores"], NETWORK, what)
            clear = track_clear(theirs["comp_scores"])  # gaps >= 0.79 against 1.1e-3
        # every detection's decision must be clear: a new object shifts the later new ids
        what = f"vpsnet track ids (frame {t})"
        assert_decisions_agree(ours["ids"], theirs["obj_ids"], clear, what, max_unclear=0)
    # the scenario (the golden's ids, which the clear comparison above pins ours to): an object
    # stolen back (frame 1: A undone -> new id 5, F takes A's id 1), and D (id 4), missing in
    # frame 1, re-identified in frame 2
    assert golden["video"]["frames"][1]["obj_ids"].tolist() == [0, 5, 2, 6, 3, 1]
    assert 4 in golden["video"]["frames"][2]["obj_ids"].tolist()


@pytest.mark.golden
def test_mask_removal_and_panoptic_logits_match_official(golden: dict, video: list[dict]) -> None:
    for t, (theirs, ours) in _frames(golden, video):
        selection, _, raw_boxes = selection_reference(theirs)
        kept, keep = torch.tensor(ours["kept"]), theirs["keep"]
        assert len(kept) == len(keep), f"frame {t}: kept {kept.tolist()}, not {keep.tolist()}"
        # MaskRemoval goes best first over truncated boxes and thresholded masks, then counts
        # pixels: one joint decision, compared exactly where all of it is clear.
        margin = min(selection, removal_margin(theirs, raw_boxes))
        what = f"vpsnet MaskRemoval kept (frame {t})"
        assert_decisions_agree(kept, keep, torch.full(keep.shape, margin > MARGIN), what, 0)
        what = f"vpsnet instance logits (frame {t})"
        assert_close(ours["instance_logits"], theirs["instance_logits"], ELEMENTWISE, what)
        # the official argmaxes are of the softmax, ours of the logits: the same where clear
        panoptic, semantic = reference_logits(theirs, t)
        what = f"vpsnet panoptic argmax (frame {t})"
        assert_decisions_agree(ours["panoptic"], theirs["panoptic"], clear_argmax(panoptic), what)
        what = f"vpsnet semantic argmax (frame {t})"
        assert_decisions_agree(ours["semantic"], theirs["semantic"], clear_argmax(semantic), what)
    frame = golden["video"]["frames"][1]
    assert len(frame["keep"]) < len(frame["det_classes"])  # F was dropped


def assert_maps_agree(
    maps: PanopticMaps, pan_2ch: np.ndarray, clear: np.ndarray, what: str, max_unclear: float
) -> None:
    """Our maps (classes, instances, track ids) against the official three-channel result,
    pixel by pixel where ``clear``.

    Off instances the official third channel keeps a copy of the panoptic argmax (the stuff
    class, 0 where an instance was turned into stuff); ours holds 0. The official converter
    colours stuff by category alone, so both give the same segments: the track ids are
    compared with 0 off instances.
    """
    instance = pan_2ch[..., 1] > 0
    ours = np.stack([maps.classes, maps.instances, maps.track_ids], axis=-1).astype(np.int64)
    theirs = pan_2ch.astype(np.int64)
    theirs[..., 2] = np.where(instance, theirs[..., 2], 0)
    clear = np.repeat(clear[..., None], 3, axis=-1)
    assert_decisions_agree(ours, theirs, clear, what, max_unclear)


@pytest.mark.golden
def test_unified_maps_match_official(golden: dict, video: list[dict]) -> None:
    for t, (theirs, ours) in _frames(golden, video):
        pan_2ch = theirs["pan_2ch"].numpy()
        # 1. Our unify on the official panoptic and semantic maps: integer inputs, integer
        # steps (votes, areas), nothing that rounds: exact everywhere.
        keep = theirs["keep"]
        official = unify(
            theirs["panoptic"].numpy(),
            theirs["semantic"].numpy(),
            theirs["det_classes"][keep].tolist(),
            theirs["obj_ids"][keep].tolist(),
            NUM_STUFF,
            STUFF_AREA,
        )
        what = f"vpsnet unify of official maps (frame {t})"
        assert_maps_agree(official, pan_2ch, np.ones(IMAGE, bool), what, 0)
        # 2. End to end. unify decides on areas (frame 0 keeps a stuff class of exactly
        # STUFF_AREA pixels; one fewer and it is void), so one flipped pixel can change a whole
        # segment: exact, which needs every pixel of both maps clear (the nearest near-tie:
        # 6.9e-6 of the scale, 3.4x MARGIN).
        panoptic, semantic = reference_logits(theirs, t)
        clear = (clear_argmax(panoptic) & clear_argmax(semantic)).numpy()
        assert_maps_agree(ours["maps"], pan_2ch, clear, f"vpsnet unified maps (frame {t})", 0)
        # the official copy off instances (constants: the recorded maps)
        instance = pan_2ch[..., 1] > 0
        copied = np.where(theirs["panoptic"].numpy() < NUM_STUFF, theirs["panoptic"].numpy(), 0)
        assert np.array_equal(pan_2ch[..., 2][~instance], copied[~instance]), t

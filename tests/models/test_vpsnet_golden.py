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

import numpy as np
import pytest
import torch

from models.vpsnet.fusion import BFPTcea, correlation, warp
from models.vpsnet.heads import TrackHead
from models.vpsnet.panoptic import panoptic_logits, remove_overlaps, select_detections, unify
from models.vpsnet.semantic import UPSNetFPN
from models.vpsnet.tracking import TrackMemory
from tools.golden_vpsnet import (
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
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def golden() -> dict:
    return torch.load(GOLDEN, weights_only=False)


def layout(model: torch.nn.Module) -> list[list]:
    return [[k, list(v.shape)] for k, v in model.state_dict().items()]


def seeded(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    model.load_state_dict(seeded_state_dict(model, seed), strict=True)
    return model.eval()


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float((a.float() - b.float()).abs().max()) if a.numel() else 0.0


def test_golden_is_from_the_official_commit(golden: dict) -> None:
    assert golden["commit"].startswith("138503e")
    assert golden["seeds"] == SEEDS


# --------------------------------------------------------------------------- extra_neck


@pytest.fixture(scope="module")
def neck() -> BFPTcea:
    return seeded(BFPTcea(CHANNELS), SEEDS["extra_neck"])


def test_fusion_layout_matches_official(golden: dict, neck: BFPTcea) -> None:
    assert layout(neck) == golden["extra_neck"]["layout"]


@torch.no_grad()
def test_fusion_steps_match_official(golden: dict, neck: BFPTcea) -> None:
    expected = golden["extra_neck"]
    current, reference, flow = fusion_inputs()
    centre = neck.gather(current)
    warped = warp(neck.gather(reference), flow)
    flow_fine = neck.liteflownet(centre, warped, flow)
    assert max_diff(flow_fine, expected["flow_fine"]) < TOLERANCE
    assert float(expected["flow_fine"].abs().max()) > 0.5  # the second warp really moves
    warped = warp(warped, flow_fine)
    assert max_diff(warped, expected["warp2"]) < TOLERANCE
    fused = neck.tcea_fusion(torch.stack([centre, warped], dim=1))
    assert max_diff(fused, expected["tcea"]) < TOLERANCE


@torch.no_grad()
def test_fusion_outputs_match_official(golden: dict, neck: BFPTcea) -> None:
    current, reference, flow = fusion_inputs()
    outputs = neck(current, reference, flow)
    expected = golden["extra_neck"]["outputs"]
    assert len(outputs) == len(expected) == 5
    for ours, theirs in zip(outputs, expected, strict=True):
        assert max_diff(ours, theirs) < TOLERANCE


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


@torch.no_grad()
def test_semantic_head_matches_official(golden: dict) -> None:
    expected = golden["panopticFPN"]
    head = seeded(UPSNetFPN(CHANNELS, (256, 128, 128), 19), SEEDS["panopticFPN"])
    assert layout(head) == expected["layout"]
    current, _, _ = fusion_inputs()
    output, score = head(current)
    assert max_diff(score, expected["fcn_score"]) < TOLERANCE
    assert max_diff(output, expected["fcn_output"]) < TOLERANCE


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


def test_mask_roi_matches_official(golden: dict, video: list[dict]) -> None:
    for _, (theirs, ours) in _frames(golden, video):
        found = ours["found"]
        assert torch.equal(found.classes, theirs["det_classes"])
        assert max_diff(found.scores, theirs["det_scores"]) < TOLERANCE
        assert max_diff(found.boxes, theirs["det_boxes"]) < TOLERANCE


def test_track_scores_and_ids_match_official(golden: dict, video: list[dict]) -> None:
    for t, (theirs, ours) in _frames(golden, video):
        if t == 0:
            assert theirs["comp_scores"] is None and ours["comp"] is None
        else:
            assert max_diff(ours["comp"], theirs["comp_scores"]) < TOLERANCE
        assert torch.equal(ours["ids"], theirs["obj_ids"]), t
    # the scenario: an object stolen back (frame 1: A undone -> new id 5, F takes A's id 1),
    # and D (id 4), missing in frame 1, re-identified in frame 2
    assert golden["video"]["frames"][1]["obj_ids"].tolist() == [0, 5, 2, 6, 3, 1]
    assert 4 in golden["video"]["frames"][2]["obj_ids"].tolist()


def test_mask_removal_and_panoptic_logits_match_official(golden: dict, video: list[dict]) -> None:
    for t, (theirs, ours) in _frames(golden, video):
        assert ours["kept"] == theirs["keep"].tolist(), t
        assert max_diff(ours["instance_logits"], theirs["instance_logits"]) < TOLERANCE
        assert np.array_equal(ours["panoptic"], theirs["panoptic"].numpy())
        assert np.array_equal(ours["semantic"], theirs["semantic"].numpy())
    assert len(golden["video"]["frames"][1]["keep"]) < len(video[1]["found"])  # F was dropped


def test_unified_maps_match_official(golden: dict, video: list[dict]) -> None:
    for t, (theirs, ours) in _frames(golden, video):
        pan_2ch = theirs["pan_2ch"].numpy()
        maps = ours["maps"]
        assert np.array_equal(maps.classes, pan_2ch[..., 0]), t
        assert np.array_equal(maps.instances, pan_2ch[..., 1]), t
        instance = pan_2ch[..., 1] > 0
        assert np.array_equal(maps.track_ids[instance], pan_2ch[..., 2][instance]), t
        # Off instances the official third channel keeps a copy of the panoptic argmax (the
        # stuff class, 0 where an instance was turned into stuff); ours holds 0. The official
        # converter colours stuff by category alone, so both give the same segments.
        assert not maps.track_ids[~instance].any()
        panoptic = theirs["panoptic"].numpy()
        copied = np.where(panoptic < NUM_STUFF, panoptic, 0)
        assert np.array_equal(pan_2ch[..., 2][~instance], copied[~instance]), t

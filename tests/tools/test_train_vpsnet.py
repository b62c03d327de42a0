"""tools/train_vpsnet.py and models/vpsnet/loss.py: targets, RPN labelling, a falling loss,
a loadable file with its sidecar and the VPSNet-style evaluation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from models.vpsnet import build_model, load_weights
from models.vpsnet.loss import PanopticTargets, rpn_loss, vpsnet_losses
from synthetic.categories import STUFF_IDS
from synthetic.generator import generate
from tools.train_vpsnet import (
    CATEGORY_IDS,
    VARIANT,
    batch_of,
    imagenet_backbone,
    main,
    switches_per_100,
    targets,
)

WIDTH, HEIGHT = 160, 128


@pytest.fixture(scope="module")
def sequence():
    return list(generate(1000, 3, WIDTH, HEIGHT))


def test_targets_follow_the_frame(sequence) -> None:
    frame = sequence[1]
    target = targets(frame)
    things = frame.things()
    assert len(target.boxes) == len(things) > 0
    for box, mask, thing in zip(target.boxes, target.masks, things, strict=True):
        ys, xs = np.nonzero(mask.numpy())
        # inclusive boxes: x2 is the last column of the mask
        assert box.tolist() == [xs.min(), ys.min(), xs.max(), ys.max()]
        assert thing.track_id in target.track_ids.tolist()
    semantic = target.semantic.numpy()
    for sid, segment in frame.segments.items():
        channel = CATEGORY_IDS.index(segment.category_id)
        assert (semantic[frame.panoptic == sid] == channel).all()
        assert (channel < len(STUFF_IDS)) == (not segment.isthing)
    assert (semantic[frame.panoptic == 0] == 255).all()


def test_rpn_loss_needs_the_anchor_that_fits() -> None:
    # One box exactly an anchor's (stride 8, ratio 1: 64 x 64): a high logit there lowers the
    # loss by about one positive's share of the 256 samples (its neighbours, IoU 0.78, are
    # positive too); high logits everywhere raise it.
    box = torch.tensor([[4.0 - 28, 4.0 - 28, 4.0 + 35, 4.0 + 35]]) + 64
    target = PanopticTargets(box, torch.tensor([1]), torch.tensor([1]),
                             torch.zeros(1, 256, 256, dtype=torch.bool),
                             torch.zeros(256, 256, dtype=torch.long))  # fmt: skip
    sizes = [(64, 64), (32, 32), (16, 16), (8, 8), (4, 4)]
    blank = [torch.full((1, 3, h, w), -6.0) for h, w in sizes]
    deltas = [torch.zeros(1, 12, h, w) for h, w in sizes]
    torch.manual_seed(0)
    miss = rpn_loss(blank, deltas, [target], (256, 256))
    hit = [x.clone() for x in blank]
    hit[1][0, 1, 8, 8] = 6.0  # level P3, cell (8, 8) = pixel (64, 64), ratio 1
    torch.manual_seed(0)
    found = rpn_loss(hit, deltas, [target], (256, 256))
    torch.manual_seed(0)
    everywhere = rpn_loss([-x for x in blank], deltas, [target], (256, 256))
    assert found["rpn_cls"] < miss["rpn_cls"] - 4 / 256
    assert everywhere["rpn_cls"] > 10 * miss["rpn_cls"]


@pytest.mark.slow
def test_loss_is_finite_and_falls_on_a_fixed_batch(sequence) -> None:
    torch.manual_seed(0)
    model = build_model(VARIANT)
    imagenet_backbone(model)
    batch = batch_of(sequence, [1, 2], [False, False])
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-4)
    model.eval()
    losses = []
    for _ in range(25):
        parts = vpsnet_losses(model, *batch, rpn_samples=64, roi_samples=32)
        assert set(parts) == {"rpn_cls", "rpn_loc", "box_cls", "box_loc", "mask", "semantic",
                              "track"}  # fmt: skip
        loss = sum(parts.values())
        assert torch.isfinite(loss)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5]), losses


def test_switches_count_a_track_changing_its_predicted_id(sequence) -> None:
    truth = sequence[:2]
    predicted = []
    for t, frame in enumerate(truth):
        ids = frame.panoptic.copy()
        things = ids % 1000 > 0
        ids[things] += 100 * t  # every thing gets another id in frame 1
        predicted.append((ids, {int(k): int(k) // 1000 for k in np.unique(ids) if k}))
    assert switches_per_100(predicted[:1] * 2, truth) == 0
    count = len([s for s in truth[1].things() if s.track_id in {
        p.track_id for p in truth[0].things()}])  # fmt: skip
    assert switches_per_100(predicted, truth) == pytest.approx(100 * count / 2)


def test_main_saves_weights_that_load_strictly(tmp_path) -> None:
    out = tmp_path / "vps.pth"
    threads = str(torch.get_num_threads())  # main sets it; leave the session's as it was
    args = ["--out", str(out), "--steps", "2", "--width", str(WIDTH), "--height", str(HEIGHT)]
    args += ["--threads", threads, "--train-sequences", "1", "--frames", "3"]
    args += ["--eval-sequences", "1", "--eval-frames", "20"]
    assert main(args) == 0
    load_weights(build_model(VARIANT), out)
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["variant"] == VARIANT and meta["input_scale"] == [WIDTH, HEIGHT]
    assert meta["category_ids"] == CATEGORY_IDS
    assert set(meta["scores"]) == {"dis", "none", "off"}
    assert {"pq", "vpq_k0", "vpq_k15", "vpq", "id_switches_per_100_frames"} <= set(
        meta["scores"]["dis"]
    )
    with pytest.raises(SystemExit):
        main(["--width", "100"])

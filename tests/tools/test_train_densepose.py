"""tools/train_densepose.py and models/densepose/loss.py: targets, a falling loss, a loadable
file with its sidecar."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from models.densepose import apply_deltas, build_model, load_weights
from models.densepose.loss import PersonTargets, densepose_rcnn_losses, densepose_targets, encode
from synthetic.generator import generate
from tools.train_densepose import VARIANT, batch_of, imagenet_backbone, main

SIZE = 128


def test_encode_inverts_apply_deltas() -> None:
    reference = torch.tensor([[10.0, 20.0, 50.0, 90.0], [0.0, 0.0, 8.0, 4.0]])
    boxes = torch.tensor([[12.0, 18.0, 60.0, 80.0], [1.0, 2.0, 5.0, 9.0]])
    for weights in ((1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)):
        deltas = encode(boxes, reference, weights)
        torch.testing.assert_close(apply_deltas(deltas, reference, weights), boxes)


def test_densepose_targets_sample_the_matched_person_by_nearest_pixel() -> None:
    instances = torch.zeros(8, 8, dtype=torch.long)
    instances[2:6, 2:6] = 1
    instances[0:2, 0:2] = 2  # another person: background for ROIs of person 0
    parts = torch.arange(64).reshape(8, 8) % 24 + 1
    parts = parts * (instances > 0)
    uv = torch.rand(2, 8, 8)
    target = PersonTargets(torch.zeros(2, 4), instances, parts, uv)
    # A ROI of the whole image on an 8x8 grid reads every pixel once.
    person, got_parts, got_uv = densepose_targets(
        torch.tensor([[0.0, 0.0, 8.0, 8.0]]), torch.tensor([0]), target, side=8
    )
    assert torch.equal(person[0], instances == 1)
    assert torch.equal(got_parts[0], parts * (instances == 1))
    torch.testing.assert_close(got_uv[0], uv)
    # A 4x4 ROI on a 16 grid: each pixel becomes a 4x4 block; off-image cells are background.
    person, got_parts, _ = densepose_targets(
        torch.tensor([[2.0, 2.0, 6.0, 6.0], [6.0, 6.0, 10.0, 10.0]]),
        torch.tensor([0, 0]),
        target,
        side=16,
    )
    assert person[0].all()
    assert torch.equal(
        got_parts[0], parts[2:6, 2:6].repeat_interleave(4, 0).repeat_interleave(4, 1)
    )
    assert not person[1, 8:].any() and not person[1, :, 8:].any()


@pytest.mark.slow
def test_loss_is_finite_and_falls_on_a_fixed_batch() -> None:
    torch.manual_seed(0)
    model = build_model(VARIANT)
    imagenet_backbone(model)
    frames = list(generate(1000, 2, SIZE, SIZE))
    images, targets = batch_of(frames, SIZE)
    assert all(len(t.boxes) for t in targets)
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-4)
    losses = []
    for _ in range(30):
        parts = densepose_rcnn_losses(
            model, images, targets, rois_per_image=32, densepose_per_image=2
        )
        assert set(parts) == {
            "rpn_cls",
            "rpn_loc",
            "box_cls",
            "box_loc",
            "dp_coarse",
            "dp_fine",
            "dp_uv",
        }
        loss = sum(parts.values())
        assert torch.isfinite(loss)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5]), losses


def test_main_saves_weights_that_load_strictly(tmp_path) -> None:
    out = tmp_path / "dp.pth"
    threads = str(torch.get_num_threads())  # main sets it; leave the session's as it was
    args = ["--out", str(out), "--steps", "2", "--size", str(SIZE), "--threads", threads]
    args += ["--train-sequences", "1", "--frames", "4", "--eval-sequences", "1"]
    args += ["--eval-frames", "2"]
    assert main(args) == 0
    load_weights(build_model(VARIANT), out)
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["variant"] == VARIANT and meta["input_size"] == SIZE
    assert meta["command"].startswith("python tools/train_densepose.py --out")
    for key in ("person_box_ap", "person_box_ap50", "part_iou", "foreground_iou", "uv_error"):
        assert key in meta
    with pytest.raises(SystemExit):
        main(["--size", str(SIZE)])  # neither --out nor --evaluate

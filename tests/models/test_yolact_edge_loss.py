"""The YOLACT training loss: matching and encoding by hand, and a model that learns from it."""

from __future__ import annotations

import torch

from models import yolact_edge
from models.yolact_edge.loss import Target, encode, match, yolact_loss


def test_encode_inverts_decode() -> None:
    priors = torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.1, 0.3, 0.05, 0.1]])
    boxes = torch.tensor([[0.42, 0.4, 0.62, 0.6], [0.05, 0.2, 0.2, 0.35]])
    assert torch.allclose(yolact_edge.decode(encode(boxes, priors), priors), boxes, atol=1e-6)


def test_match_by_hand() -> None:
    priors = torch.tensor([
        [0.25, 0.25, 0.2, 0.2],  # exactly the object: positive
        [0.27, 0.25, 0.2, 0.2],  # IoU 0.82: positive
        [0.31, 0.25, 0.2, 0.2],  # IoU 0.54: positive
        [0.33, 0.25, 0.2, 0.2],  # IoU 0.43: ignored
        [0.8, 0.8, 0.2, 0.2],  # far away: background
    ])  # fmt: skip
    target = Target(
        torch.tensor([[0.15, 0.15, 0.35, 0.35]]), torch.tensor([3]), torch.zeros(1, 4, 4)
    )
    labels, objects = match(priors, target)
    assert labels.tolist() == [4, 4, 4, -1, 0] and objects[:3].tolist() == [0, 0, 0]
    # An object with no prior above 0.5 still claims its best one.
    small = Target(torch.tensor([[0.78, 0.78, 0.8, 0.8]]), torch.tensor([0]), torch.zeros(1, 4, 4))
    labels, _ = match(priors, small)
    assert labels.tolist() == [0, 0, 0, 0, 1]


def test_loss_is_small_for_the_answer_and_large_for_noise() -> None:
    priors = yolact_edge.priors(128, 128)
    box = torch.tensor([[0.2, 0.3, 0.6, 0.7]])
    mask = torch.zeros(1, 32, 32)
    mask[0, 10:22, 6:19] = 1
    target = Target(box, torch.tensor([1]), mask)
    labels, objects = match(priors, target)
    loc = encode(box[objects], priors)[None]
    logits = torch.full((1, len(priors), 3), -20.0)
    logits[0, torch.arange(len(priors)), labels.clamp(min=0)] = 20.0
    proto = torch.zeros(1, 32, 32, 32)
    proto[0, :, :, 0] = torch.nn.functional.interpolate(mask[None], (32, 32))[0, 0] * 40 - 20
    coeffs = torch.zeros(1, len(priors), 32)
    coeffs[..., 0] = 1.0
    right = yolact_loss(loc, logits, coeffs, proto, priors, [target])
    assert all(float(v) < 1e-3 for v in right.values()), right
    noise = yolact_loss(
        torch.randn_like(loc), torch.randn_like(logits), coeffs, proto * 0, priors, [target]
    )
    assert all(float(noise[k]) > 100 * float(right[k]) + 0.1 for k in ("box", "class", "mask"))


def test_a_model_fits_one_synthetic_frame() -> None:
    from synthetic.generator import generate
    from tools.train_yolact_edge import THINGS, target

    torch.manual_seed(0)
    frame = next(generate(3, 1, 128, 128))
    model = yolact_edge.build_model("yolact_edge_vid_mobilenetv2", THINGS).eval()
    x = yolact_edge.to_input(frame.image, 128)
    goal = [target(frame, x.device)]
    priors = yolact_edge.priors(128, 128)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(15):
        (loc, conf, coeffs, proto), _ = model.keyframe(x, logits=True)
        loss = sum(yolact_loss(loc, conf, coeffs, proto, priors, goal).values())
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(float(loss))
    assert losses[-1] < 0.5 * losses[0], losses

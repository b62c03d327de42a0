"""tools/train_style.py: the perceptual loss falls, the weights load strictly, the sidecar."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from models.translation import build_model, load_weights
from models.translation.losses import (
    CONTENT_INDEX,
    PerceptualNet,
    content_loss,
    gram_matrix,
    style_loss,
)
from tools.train_style import main


def test_gram_matrix_is_normalised_channel_products() -> None:
    features = torch.randn(2, 3, 4, 5)
    gram = gram_matrix(features)
    assert gram.shape == (2, 3, 3)
    flat = features[1].reshape(3, 20)
    torch.testing.assert_close(gram[1], flat @ flat.T / 60)


def test_perceptual_net_is_frozen_and_sees_imagenet_statistics() -> None:
    net = PerceptualNet()
    net.train()  # must not switch BatchNorm to batch statistics
    assert not net.training
    assert not any(p.requires_grad for p in net.parameters())
    x = torch.rand(1, 3, 64, 64) * 255
    maps = net(x)
    assert [tuple(m.shape[1:]) for m in maps] == [(24, 16, 16), (32, 8, 8), (96, 4, 4), (320, 2, 2)]
    assert torch.equal(net(x)[3], maps[3])  # eval BN: deterministic, batch-independent
    torch.testing.assert_close(net(torch.cat([x, x.flip(3)]))[3][:1], maps[3])
    # The style of an image matches itself and not a flat grey frame.
    grams = [gram_matrix(m) for m in maps]
    assert float(style_loss(maps, grams)) == 0
    grey = net(torch.full_like(x, 128.0))
    assert float(style_loss(grey, grams)) > 0
    assert float(content_loss(grey, maps)) > 0
    assert CONTENT_INDEX == 1


@pytest.mark.slow
def test_training_lowers_the_loss_and_saves_official_layout(tmp_path: Path, capsys) -> None:
    out = tmp_path / "style.pth"
    argv = ["--out", str(out), "--steps", "200", "--size", "64", "--batch", "2"]
    argv += ["--window", "20", "--no-progress", "--threads", "2"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "200 steps in" in printed and "(first 20)" in printed and "(last 20)" in printed

    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["command"] == "python tools/train_style.py " + " ".join(argv)
    assert meta["steps"] == 200 and meta["loss_window"] == 20
    assert len(meta["loss_curve"]) == 200 and meta["loss_curve_every"] == 1
    first, last = meta["loss_curve"][:20], meta["loss_curve"][-20:]
    assert meta["loss_first"] == pytest.approx(sum(first) / 20, rel=1e-3)
    assert meta["loss_last"] == pytest.approx(sum(last) / 20, rel=1e-3)
    assert meta["loss_last"] < 0.8 * meta["loss_first"]
    # Both terms must improve: the style term alone could fall by copying the style image.
    assert meta["content_loss_last"] < meta["content_loss_first"]
    assert meta["style_loss_last"] < 0.8 * meta["style_loss_first"]

    model = load_weights(build_model("transformer_net"), out).eval()  # strict
    saved = torch.load(out, weights_only=True)
    assert list(saved) == list(build_model("transformer_net").state_dict())
    with torch.inference_mode():
        y = model(torch.rand(1, 3, 32, 32) * 255)
    assert y.shape == (1, 3, 32, 32) and torch.isfinite(y).all()


def test_rejects_a_size_the_network_cannot_round_trip(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path / "x.pth"), "--size", "66"])

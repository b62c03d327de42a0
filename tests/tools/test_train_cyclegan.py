"""tools/train_cyclegan.py: the cycle loss falls, junyanz file names, strict loads, the pool."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from models.translation import NLayerDiscriminator, ResnetGenerator, build_model, load_weights
from models.translation.losses import cycle_loss, identity_loss, lsgan_loss
from tools.train_cyclegan import ImagePool, main, vintage


def test_vintage_is_a_faded_warm_tone() -> None:
    rgb = torch.rand(2, 3, 8, 8)
    out = vintage(rgb)
    assert out.shape == rgb.shape
    assert out.min() >= 0.06 - 1e-6 and out.max() <= 0.92 + 1e-6
    mean = out.mean(dim=(0, 2, 3))
    assert mean[0] > mean[1] > mean[2]  # sepia: red over green over blue
    grey = torch.full((1, 3, 1, 1), 0.5)
    assert not torch.allclose(vintage(grey), grey, atol=0.02)


def test_gan_losses() -> None:
    ones, zeros = torch.ones(2, 1, 3, 3), torch.zeros(2, 1, 3, 3)
    assert float(lsgan_loss(ones, True)) == 0 and float(lsgan_loss(ones, False)) == 1
    assert float(lsgan_loss(zeros, False)) == 0
    assert float(lsgan_loss(torch.full((1, 1, 2, 2), 0.5), True)) == pytest.approx(0.25)
    a = torch.zeros(1, 3, 4, 4)
    assert float(cycle_loss(a + 0.5, a)) == pytest.approx(0.5)
    assert float(identity_loss(a - 0.25, a)) == pytest.approx(0.25)


def test_image_pool_fills_then_mixes_history() -> None:
    pool = ImagePool(4, torch.Generator().manual_seed(0))
    first = torch.arange(4.0).view(4, 1, 1, 1)
    assert torch.equal(pool.query(first), first)  # filling: passes images through
    returned = [float(pool.query(torch.full((1, 1, 1, 1), 10.0 + i))) for i in range(40)]
    from_history = sum(value != 10.0 + i for i, value in enumerate(returned))
    assert 8 < from_history < 32  # about half come from the history
    assert all(value < 10.0 + i for i, value in enumerate(returned) if value != 10.0 + i)
    assert torch.equal(ImagePool(0, torch.Generator()).query(first), first)


@pytest.mark.slow
def test_training_lowers_the_cycle_loss_and_saves_junyanz_files(tmp_path: Path) -> None:
    out = tmp_path / "vintage"
    argv = ["--out", str(out), "--steps", "150", "--size", "32", "--batch", "2"]
    argv += ["--ngf", "8", "--ndf", "8", "--n-blocks", "6", "--window", "20", "--no-progress"]
    assert main(argv) == 0

    meta = json.loads((out / "train_cyclegan.json").read_text())
    assert meta["command"] == "python tools/train_cyclegan.py " + " ".join(argv)
    assert meta["steps"] == 150 and meta["loss_window"] == 20
    assert meta["lambda_cycle"] == 10 and meta["lambda_identity"] == 0.5
    # Measured over seeds 0-3: last / first 0.60-0.62.
    assert meta["loss_cycle_last"] < 0.75 * meta["loss_cycle_first"]
    assert len(meta["loss_curves"]["cycle"]) == 150
    for key in ("heldout_l1_G_A_vs_vintage", "heldout_l1_G_B_vs_original"):
        assert 0 <= meta[key] < 1

    for name in ("G_A", "G_B"):
        generator = load_weights(ResnetGenerator(ngf=8, n_blocks=6), out / f"latest_net_{name}.pth")
        with torch.inference_mode():
            y = generator.eval()(torch.rand(1, 3, 36, 44) * 2 - 1)
        assert y.shape == (1, 3, 36, 44) and y.abs().max() <= 1
    for name in ("D_A", "D_B"):
        state = torch.load(out / f"latest_net_{name}.pth", weights_only=True)
        NLayerDiscriminator(3, 8, 3, norm="instance").load_state_dict(state, strict=True)
    # The 6-block layout is build_model's resnet_6blocks at width 8: same keys, in order.
    saved = torch.load(out / "latest_net_G_A.pth", weights_only=True)
    assert list(saved) == list(build_model("resnet_6blocks").state_dict())


def test_rejects_too_small_crops(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path), "--size", "28"])

"""Translation generators: official layouts, strict loading of official-format checkpoints
(legacy keys, ``module.`` prefix, dropout mismatches), and parity with vintagify's own
generator on a real image."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data
import torch
import torch.nn.functional as F

from models.translation import (
    NLayerDiscriminator,
    UnetGenerator,
    UnetSkipConnectionBlock,
    build_model,
    init_weights,
    load_vintagify,
    load_weights,
    vintagify_checkpoint,
)
from tests.golden import assert_close

DATA = Path(__file__).resolve().parents[1] / "data" / "translation"
SHARED_MANIFESTS = Path(__file__).resolve().parents[3] / "shared" / "reference" / "manifests"
MANIFESTS = SHARED_MANIFESTS if SHARED_MANIFESTS.is_dir() else DATA
OFFICIAL = {
    "transformer_net": "fast_neural_style_transformernet",
    "resnet_9blocks": "cyclegan_resnet_9blocks",
    "resnet_6blocks": "cyclegan_resnet_6blocks",
    "unet_256": "pix2pix_unet_256",
}


def manifest(name: str) -> list[list]:
    return json.loads((MANIFESTS / f"{name}.json").read_text())


def layout(model: torch.nn.Module) -> list[list]:
    return [[k, list(v.shape), str(v.dtype)] for k, v in model.state_dict().items()]


def seeded(entries: list[list], seed: int) -> dict[str, torch.Tensor]:
    """Tensors in exactly a manifest's layout, values from a seed (counters 0)."""
    generator = torch.Generator().manual_seed(seed)
    out = {}
    for key, shape, dtype in entries:
        if dtype == "torch.int64":
            out[key] = torch.zeros(shape, dtype=torch.int64)
        else:
            out[key] = 0.1 * torch.randn(shape, generator=generator)
    return out


# --------------------------------------------------------------------------- layouts


@pytest.mark.parametrize("variant", list(OFFICIAL))
def test_state_dict_matches_official_manifest(variant: str) -> None:
    assert layout(build_model(variant)) == manifest(OFFICIAL[variant])


@pytest.mark.skipif(not SHARED_MANIFESTS.is_dir(), reason="shared reference not beside the clone")
@pytest.mark.parametrize("name", list(OFFICIAL.values()))
def test_bundled_manifest_copies_are_current(name: str) -> None:
    assert json.loads((DATA / f"{name}.json").read_text()) == manifest(name)


def unet_128_manifest(unet_256: list[list]) -> list[list]:
    """unet_128's layout from unet_256's: one middle 8·ngf level fewer. Level k sits under
    ``model.model.1`` + k x ``.model.3``; unet_256 has middle levels k = 3, 4, 5 and the
    innermost at 6, so drop k = 5 and move the innermost up one level."""
    out = []
    for key, shape, dtype in unet_256:
        match = re.fullmatch(r"model\.model\.1((?:\.model\.3)*)\.(model\.\d+\..+)", key)
        depth = len(match.group(1)) // len(".model.3") if match else -1
        if depth == 5:
            continue
        if depth == 6:
            key = "model.model.1" + ".model.3" * 5 + "." + match.group(2)
        out.append([key, shape, dtype])
    return out


def test_unet_128_layout_derived_from_unet_256() -> None:
    expected = unet_128_manifest(manifest("pix2pix_unet_256"))
    assert len(expected) == len(manifest("pix2pix_unet_256")) - 12  # conv, convT, 2 BNs
    assert layout(build_model("unet_128")) == expected


def test_dropout_and_norm_change_the_layout_as_upstream() -> None:
    keys = build_model("resnet_9blocks", use_dropout=True).state_dict()
    assert "model.10.conv_block.6.weight" in keys and "model.10.conv_block.5.weight" not in keys
    batch = build_model("resnet_6blocks", norm="batch").state_dict()
    assert "model.2.running_mean" in batch and "model.1.bias" not in batch  # no bias before BN
    affine = build_model("resnet_9blocks", norm="instance_affine").state_dict()
    assert "model.2.weight" in affine and "model.2.running_mean" not in affine
    # U-Net dropout is the last layer of a level: same keys either way.
    assert list(UnetGenerator(num_downs=7, ngf=8, use_dropout=False).state_dict()) == list(
        UnetGenerator(num_downs=7, ngf=8, use_dropout=True).state_dict()
    )


def test_patchgan_discriminator_layout_and_output() -> None:
    batch = NLayerDiscriminator(3, 64, 3, norm="batch")
    expected = [
        ["model.0.weight", [64, 3, 4, 4]], ["model.0.bias", [64]],
        ["model.2.weight", [128, 64, 4, 4]],
        *[[f"model.3.{n}", [128]] for n in ("weight", "bias", "running_mean", "running_var")],
        ["model.3.num_batches_tracked", []],
        ["model.5.weight", [256, 128, 4, 4]],
        *[[f"model.6.{n}", [256]] for n in ("weight", "bias", "running_mean", "running_var")],
        ["model.6.num_batches_tracked", []],
        ["model.8.weight", [512, 256, 4, 4]],
        *[[f"model.9.{n}", [512]] for n in ("weight", "bias", "running_mean", "running_var")],
        ["model.9.num_batches_tracked", []],
        ["model.11.weight", [1, 512, 4, 4]], ["model.11.bias", [1]],
    ]  # fmt: skip
    assert [[k, list(v.shape)] for k, v in batch.state_dict().items()] == expected
    instance = NLayerDiscriminator(6, norm="instance")  # pix2pix-style conditional input
    assert [k for k in instance.state_dict() if k.startswith("model.2.")] == [
        "model.2.weight",
        "model.2.bias",
    ]
    with torch.no_grad():
        assert instance(torch.zeros(2, 6, 64, 64)).shape == (2, 1, 6, 6)  # 64/8 - 2


def test_forward_shapes_and_ranges() -> None:
    torch.manual_seed(0)
    with torch.no_grad():
        x = torch.rand(1, 3, 32, 48) * 2 - 1
        y = build_model("resnet_6blocks").eval()(x)
        assert y.shape == x.shape and y.abs().max() <= 1
        # unet_128's structure at ngf=8 (cheap): 7 levels take 128 down to 1x1 and back
        unet = init_weights(UnetGenerator(3, 3, 7, ngf=8, use_dropout=True)).eval()
        y = unet(torch.rand(1, 3, 128, 128) * 2 - 1)
        assert y.shape == (1, 3, 128, 128) and y.abs().max() <= 1
        style = build_model("transformer_net").eval()(torch.rand(1, 3, 64, 64) * 255)
        assert style.shape == (1, 3, 64, 64)
    # upstream's init_net: N(0, 0.02) conv weights, zero biases, BN weights N(1, 0.02)
    outer = build_model("resnet_6blocks").model[23]  # the output conv
    weight = outer.weight.detach()
    assert abs(float(weight.std()) - 0.02) < 0.002 and not outer.bias.any()
    norm = build_model("resnet_6blocks", norm="batch").model[2]
    gamma = norm.weight.detach()
    assert 0.005 < float(gamma.std()) < 0.04 and abs(float(gamma.mean()) - 1) < 0.01


def test_unet_skip_carries_the_activated_input_as_upstream() -> None:
    # Upstream's first layer of a level is an in-place LeakyReLU, so torch.cat([x, model(x)])
    # concatenates LeakyReLU(x); released pix2pix weights were trained with that skip.
    block = UnetSkipConnectionBlock(4, 8, innermost=True).eval()
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(5))
    original = x.clone()
    with torch.no_grad():
        out = block(x)
    assert out.shape == (1, 8, 8, 8)
    assert torch.equal(out[:, :4], F.leaky_relu(original, 0.2))


def test_build_model_rejects_unknown_options() -> None:
    with pytest.raises(ValueError, match="unknown translation variant 'resnet_7blocks'"):
        build_model("resnet_7blocks")
    with pytest.raises(ValueError, match="fixed layout"):
        build_model("transformer_net", norm="batch")
    with pytest.raises(ValueError, match="unknown norm 'group'"):
        build_model("unet_256", norm="group")


# --------------------------------------------------------------------------- loading


def legacy_resnet_checkpoint(seed: int) -> tuple[dict, dict]:
    """(clean, legacy) resnet_9blocks checkpoints; legacy adds what the pretrained CycleGAN
    files carry (junyanz#318): InstanceNorm running stats and num_batches_tracked at every
    norm, i.e. model.2/5/8, each block's conv_block.2/6, model.20/23."""
    clean = seeded(manifest("cyclegan_resnet_9blocks"), seed)
    norms = ["model.2", "model.5", "model.8", "model.20", "model.23"]
    norms += [f"model.{b}.conv_block.{i}" for b in range(10, 19) for i in (2, 6)]
    legacy = dict(clean)
    for i, norm in enumerate(norms):
        channels = {"model.2": 64, "model.5": 128, "model.20": 128, "model.23": 64}.get(norm, 256)
        legacy[f"{norm}.running_mean"] = torch.full((channels,), float(i))
        legacy[f"{norm}.running_var"] = torch.ones(channels)
        legacy[f"{norm}.num_batches_tracked"] = torch.tensor(7)
    return clean, legacy


def test_cyclegan_checkpoint_with_legacy_keys_loads_strictly(tmp_path: Path) -> None:
    clean, legacy = legacy_resnet_checkpoint(1)
    assert len(legacy) == len(clean) + 23 * 3
    path = tmp_path / "latest_net_G.pth"
    torch.save(legacy, path)
    model = load_weights(build_model("resnet_9blocks"), path)
    assert torch.equal(model.model[14].conv_block[5].weight, clean["model.14.conv_block.5.weight"])
    assert torch.equal(model.model[26].bias, clean["model.26.bias"])
    # A checkpoint re-saved from inside DataParallel: every key prefixed with module.
    prefixed = {f"module.{k}": v for k, v in legacy.items()}
    torch.save(prefixed, path)
    model = load_weights(build_model("resnet_9blocks"), path)
    assert all(torch.equal(v, clean[k]) for k, v in model.state_dict().items())


def test_fast_style_checkpoint_with_legacy_running_stats_loads_strictly(tmp_path: Path) -> None:
    clean = seeded(manifest("fast_neural_style_transformernet"), 2)
    legacy = dict(clean)
    norms = [k.removesuffix(".weight") for k in clean if re.search(r"in\d+\.weight$", k)]
    assert len(norms) == 15  # in1..in5 and two per residual block
    for norm in norms:
        legacy[f"{norm}.running_mean"] = torch.zeros_like(clean[f"{norm}.weight"])
        legacy[f"{norm}.running_var"] = torch.ones_like(clean[f"{norm}.weight"])
    path = tmp_path / "candy.pth"
    torch.save(legacy, path)
    model = load_weights(build_model("transformer_net"), path)
    assert all(torch.equal(v, clean[k]) for k, v in model.state_dict().items())


def test_batch_norm_statistics_are_weights_not_legacy() -> None:
    model = build_model("resnet_6blocks", norm="batch")
    state = seeded(layout(model), 3)
    key = "model.15.conv_block.6.running_var"
    state[key] = 1 + state[key].abs()
    assert torch.equal(load_weights(model, state).state_dict()[key], state[key])
    # Files from PyTorch < 0.4.1 have no BatchNorm counters: filled with 0, as torch does.
    old = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    assert len(old) == len(state) - 17
    assert load_weights(model, old).state_dict()["model.2.num_batches_tracked"] == 0
    del state[key]
    with pytest.raises(ValueError, match=rf"missing \(1\): {re.escape(key)}"):
        load_weights(model, state)


def test_dropout_mismatch_names_the_keys_on_one_line() -> None:
    with_dropout = build_model("resnet_9blocks", use_dropout=True).state_dict()
    with pytest.raises(ValueError) as error:
        load_weights(build_model("resnet_9blocks"), with_dropout)
    message = str(error.value)
    assert "\n" not in message
    assert "missing (18): model.10.conv_block.5.weight, model.10.conv_block.5.bias" in message
    assert "unexpected (18): model.10.conv_block.6.weight" in message
    assert "trained with dropout: build the model with use_dropout=True" in message
    without = build_model("resnet_9blocks").state_dict()
    with pytest.raises(ValueError, match=r"missing \(18\): model\.10\.conv_block\.6\.weight.*"
                       r"use_dropout=False"):  # fmt: skip
        load_weights(build_model("resnet_9blocks", use_dropout=True), without)


def test_wrong_architecture_names_shapes(tmp_path: Path) -> None:
    path = tmp_path / "latest_net_G_A.pth"
    torch.save(seeded(manifest("cyclegan_resnet_6blocks"), 4), path)
    with pytest.raises(ValueError) as error:
        load_weights(build_model("resnet_9blocks"), path)
    message = str(error.value)
    assert str(path) in message and "does not fit ResnetGenerator" in message
    # 6 blocks end at model.15; a 9-block net has blocks where the 6-block decoder sits.
    assert "missing (16): model.16.conv_block.1.weight" in message
    assert "unexpected (4): model.16.weight, model.16.bias, model.23.weight" in message
    assert "shape (2): model.19.weight (128, 64, 3, 3) vs (256, 128, 3, 3)" in message


def test_missing_and_foreign_files_are_one_line_errors(tmp_path: Path) -> None:
    model = build_model("resnet_6blocks")
    with pytest.raises(FileNotFoundError, match="weights file not found"):
        load_weights(model, tmp_path / "nothing.pth")
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint\n" * 10)
    with pytest.raises(ValueError, match="is not a PyTorch checkpoint") as error:
        load_weights(model, text)
    assert "\n" not in str(error.value)
    listed = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], listed)
    with pytest.raises(ValueError, match="is not a state_dict"):
        load_weights(model, listed)
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"epoch": 3, "model.1.weight": torch.zeros(1)}, wrapped)
    with pytest.raises(ValueError, match="entry 'epoch' is a int, not a tensor"):
        load_weights(model, wrapped)


# --------------------------------------------------------------------------- vintagify

needs_vintagify = pytest.mark.skipif(
    importlib.util.find_spec("vintagify") is None, reason="vintagify not installed"
)


@pytest.mark.golden
@needs_vintagify
def test_vintagify_matches_its_own_generator_on_a_real_image() -> None:
    # vintagify/__init__ imports matplotlib (not installed): load generator.py on its own.
    path = vintagify_checkpoint().parents[1] / "generator.py"
    spec = importlib.util.spec_from_file_location("vintagify_generator", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    theirs = module.ResnetGenerator()
    theirs.load_state_dict(
        torch.load(vintagify_checkpoint(), map_location="cpu", weights_only=True), strict=True
    )
    theirs.eval()
    ours = load_vintagify()
    assert not ours.training

    # 128x128: the same layers and real-image statistics as 256x256 at a quarter of the cost.
    rgb = cv2.resize(skimage.data.astronaut(), (128, 128), interpolation=cv2.INTER_AREA)
    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float() / 127.5 - 1
    logits: list[torch.Tensor] = []  # each generator's input to its final tanh
    for net in (theirs, ours):
        (tanh,) = (m for m in net.modules() if isinstance(m, torch.nn.Tanh))
        tanh.register_forward_hook(lambda m, args, out: logits.append(args[0]))
    with torch.no_grad():
        expected, got = theirs(x), ours(x)
    assert got.shape == (1, 3, 128, 128)
    # compared before the tanh, relative to the logits' own scale (the same torch ops on both
    # sides: equal here); the outputs follow, tanh's slope being at most 1
    error = assert_close(logits[1], logits[0], 1e-5, "logits (before the tanh)")
    assert float((got - expected).abs().max()) <= error * float(logits[0].abs().max()) + 1e-6
    assert float((got - x).abs().mean()) > 0.02  # it does change the image


def test_vintagify_missing_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps -r requirements-nodeps"):
        load_vintagify()

"""Blind video temporal consistency (Lai ECCV18): official layout, strict loading, and parity
with the official TransformNet (golden outputs recorded by tools/golden_blind_consistency.py
from phoenix104104/fast_blind_video_consistency)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from models.translation.blind_consistency import (
    BlindConsistency,
    BlindConsistencyNet,
    load_blind_consistency,
    resize_bilinear,
    working_size,
)
from tests.golden import assert_close
from tests.models.seeded_blind_consistency import seeded_state_dict

DATA = Path(__file__).resolve().parents[1] / "data" / "translation"
TOLERANCE = 1e-4
"""Relative to the golden's largest value, for every recorded tensor (residuals, ConvLSTM states,
video outputs): convolutions sum in an order that the CPU and the thread count change (largest
measured: 1.6e-6)."""
UNSATURATED = 0.9
"""Bound on the recorded |residual|. The residual is recorded after its tanh (the logits are not),
which is well conditioned relative to its scale only while it does not saturate: the tanh passes
at most all of a logit's rounding, and with |tanh| <= 0.9 the logits are at most atanh(0.9) =
1.64 x the residual's scale (recorded: |residual| <= 0.67). The hidden state, sigmoid(o) *
tanh(cell), is conditioned by the cell (recorded and compared too, |cell| <= 1.41), and the
sigmoid passes at most 1/4 of its gate logit's rounding."""


def layout(model: torch.nn.Module) -> list[list]:
    return [[k, list(v.shape), str(v.dtype)] for k, v in model.state_dict().items()]


@pytest.fixture(scope="module")
def golden() -> dict:
    return torch.load(DATA / "blind_consistency_golden.pt", weights_only=True)


def seeded(norm: str, seed: int) -> BlindConsistencyNet:
    net = BlindConsistencyNet(norm=norm)
    net.load_state_dict(seeded_state_dict(net, seed), strict=True)
    return net.eval()


# --------------------------------------------------------------------------- layout and loading


def test_state_dict_matches_official_manifest() -> None:
    manifest = json.loads((DATA / "blind_consistency_manifest.json").read_text())
    assert layout(BlindConsistencyNet()) == manifest
    assert "conv1a.norm_layer.running_mean" in dict((k, s) for k, s, _ in manifest)


@pytest.mark.parametrize("norm", ["BN", "none"])
def test_other_norm_layouts_match_official(golden: dict, norm: str) -> None:
    assert layout(BlindConsistencyNet(norm=norm)) == golden["layouts"][norm]


@pytest.mark.parametrize("prefix", ["", "module."])
def test_official_checkpoint_format_loads_strictly(tmp_path: Path, prefix: str) -> None:
    state = seeded_state_dict(BlindConsistencyNet(), 3)
    optimizer = {"state": {}, "param_groups": [{"lr": 1e-4, "betas": (0.9, 0.999), "params": []}]}
    path = tmp_path / "ECCV18_blind_consistency.pth"
    torch.save({"model": {prefix + k: v for k, v in state.items()}, "optimizer": optimizer}, path)
    net = load_blind_consistency(path)
    assert not net.training
    for key, value in net.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_pytorch_040_checkpoint_without_counters_loads() -> None:
    state = seeded_state_dict(BlindConsistencyNet(), 3)
    old = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    assert len(old) < len(state)
    net = load_blind_consistency({"model": old})
    assert torch.equal(net.deconv1.norm_layer.running_var, state["deconv1.norm_layer.running_var"])


def test_mismatched_checkpoint_names_the_key() -> None:
    state = seeded_state_dict(BlindConsistencyNet(), 3)
    del state["convlstm.Gates.weight"]
    with pytest.raises(ValueError, match=r"missing \(1\): convlstm\.Gates\.weight$"):
        load_blind_consistency({"model": state})
    bn = seeded_state_dict(BlindConsistencyNet(norm="BN"), 3)  # -norm BN file, IN model
    with pytest.raises(ValueError, match=r"missing \(\d+\): conv1a\.conv2d\.bias") as error:
        load_blind_consistency({"model": bn})
    assert "unexpected (34): conv1a.norm_layer.weight" in str(error.value)
    small = seeded_state_dict(BlindConsistencyNet(nf=16), 3)
    with pytest.raises(ValueError, match=r"shape \(\d+\): conv1a\.conv2d\.weight \(16, 6, 7, 7\)"):
        load_blind_consistency(small)
    load_blind_consistency(small, nf=16)  # the architecture comes from the caller


def test_foreign_files_fail_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="weights file not found"):
        load_blind_consistency(tmp_path / "absent.pth")
    text = tmp_path / "opts.pth"
    text.write_text("not a checkpoint\nat all\n")
    flownet = tmp_path / "FlowNet2_checkpoint.pth.tar"
    torch.save({"epoch": 1, "state_dict": {"conv.weight": torch.zeros(1)}}, flownet)
    for path, pattern in [(text, "is not a PyTorch checkpoint"), (flownet, "no 'model'")]:
        with pytest.raises(ValueError, match=pattern) as error:
            load_blind_consistency(path)
        assert "\n" not in str(error.value)


# --------------------------------------------------------------------------- parity


@pytest.mark.golden
@pytest.mark.parametrize("norm", ["IN", "BN"])
def test_steps_match_official(golden: dict, norm: str) -> None:
    net, theirs = seeded(norm, golden["seeds"][norm]), golden[norm]
    assert theirs["residual"].abs().max() < UNSATURATED  # else compare before the tanh
    state = None
    with torch.no_grad():
        for t in range(3):  # each step on the official inputs (which hold the official O_t-1)
            residual, state = net(theirs["inputs"][t][None], state)
            for name, ours in (("residual", residual), ("hidden", state[0]), ("cell", state[1])):
                what = f"blind {norm} {name} t={t + 1}"
                assert_close(ours[0], theirs[name][t], TOLERANCE, what)


@pytest.mark.golden
@pytest.mark.parametrize("norm", ["IN", "BN"])
def test_video_matches_official_test_loop(golden: dict, norm: str) -> None:
    run = BlindConsistency(seeded(norm, golden["seeds"][norm]))
    frames, processed, theirs = golden["frames"], golden["processed"], golden[norm]["outputs"]
    outputs = torch.cat([run.step(frames[t][None], processed[t][None]) for t in range(len(frames))])
    # frame 0 is passed through: P_0 clipped to 0..1, where it already lies (no arithmetic)
    assert torch.equal(outputs[0], processed[0])
    # O_t = clip(P_t + residual resized), fed back at t + 1: the clip passes rounding on without
    # growing it, so our own O_t-1 carries it into the next step without amplifying it
    assert_close(outputs, theirs, TOLERANCE, f"blind {norm} video outputs")
    assert (theirs[1:] - processed[1:]).abs().mean() > 0.05  # the network did something
    run.reset()
    assert torch.equal(run.step(frames[2][None], processed[2][None])[0], processed[2])


def test_instance_norm_layers_are_never_applied() -> None:
    net = seeded("IN", 0)
    x = torch.rand(1, 12, 16, 24, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before = net(x)[0]
        for module in net.modules():
            if isinstance(module, torch.nn.InstanceNorm2d):
                module.running_mean.fill_(5)
                module.running_var.fill_(100)
        net.train()  # the official bug holds in training mode too
        assert torch.equal(net(x)[0], before)


# --------------------------------------------------------------------------- sizes


def test_forward_needs_multiples_of_four() -> None:
    with pytest.raises(ValueError, match="18x24: H and W must be multiples of 4"):
        BlindConsistencyNet()(torch.zeros(1, 12, 18, 24))


@pytest.mark.parametrize("size", [(37, 53), (18, 26), (5, 7), (16, 24)])
def test_resize_round_trips_odd_sizes_like_cv2(size: tuple[int, int]) -> None:
    height, width = size
    work = working_size(height, width)
    assert all(s % 4 == 0 and 0 <= s - o < 4 for s, o in zip(work, size, strict=True))
    ys, xs = torch.meshgrid(
        torch.linspace(0, 1, height), torch.linspace(0, 1, width), indexing="ij"
    )
    smooth = torch.stack([0.5 + 0.4 * torch.sin(2 * xs + ys), xs * ys, 0.5 * (xs + ys)])[None]
    up = resize_bilinear(smooth, work)
    back = resize_bilinear(up, size)
    assert back.shape == smooth.shape
    assert (back - smooth).abs().max() < 0.05  # bilinear there and back blurs a little
    image = smooth[0].permute(1, 2, 0).numpy().astype(np.float32)
    reference = cv2.resize(image, (work[1], work[0]))  # the official test script's resize
    assert np.abs(up[0].permute(1, 2, 0).numpy() - reference).max() < 1e-5
    if work == size:
        assert up is smooth


def test_video_rejects_a_size_change() -> None:
    run = BlindConsistency(BlindConsistencyNet())
    run.step(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="reset"):
        run.step(torch.rand(1, 3, 8, 12), torch.rand(1, 3, 8, 12))


def test_bgr_uint8_frames_take_the_tensor_path(golden: dict) -> None:
    """Calling on BGR uint8 images (the FlowBlend interface) = step on RGB / 255, rounded."""

    def bgr(t: torch.Tensor) -> np.ndarray:  # [3, H, W] RGB 0..1 -> BGR uint8 [H, W, 3]
        return np.ascontiguousarray(t.permute(1, 2, 0).mul(255).round().byte().numpy()[..., ::-1])

    net = seeded("IN", 0)
    images, tensors = BlindConsistency(net), BlindConsistency(net)
    for t in range(3):
        frame, processed = bgr(golden["frames"][t]), bgr(golden["processed"][t])
        assert (images.previous_output is None) == (t == 0)
        out = images(frame, processed)
        expected = tensors.step(
            *(torch.from_numpy(a[..., ::-1].copy()).permute(2, 0, 1)[None] / 255.0
              for a in (frame, processed))
        )  # fmt: skip
        assert out.dtype == np.uint8 and out.shape == frame.shape
        assert np.array_equal(out, bgr(expected[0]))
        if t == 0:
            assert np.array_equal(out, processed)

"""FlowNet2 (models/vpsnet/flownet2.py): the official state_dict layout, parity with the
official modules (goldens recorded by tools/golden_flownet2.py on seeded weights: FlowNet2's
forward with each sub-network's output, and VPSNet's ``compute_flow`` with its padding), the
parameter-free pieces on hand cases, and strict loading from either checkpoint form.

Not covered: trained weights (no check that the flow is right, only that it is computed as
officially), and the CUDA kernels themselves: the golden side runs plain-torch stand-ins of
Correlation / Resample2d / ChannelNorm written from the kernels' source.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from models.vpsnet import FlowNet2, denormalise, flownet2_flow, load_flownet2
from models.vpsnet.flownet2 import channel_norm, flownet2_padding, resample2d
from models.vpsnet.fusion import correlation
from models.vpsnet.weights import flownet2_state_dict, official_state_dict
from tests.golden import assert_close
from tests.models.seeded_flownet2 import (
    COMPUTE_FLOW_SIZE,
    FORWARD_SIZE,
    GOLDEN,
    MANIFEST,
    SEED,
    flow_frames,
    normalised,
)
from tests.models.seeded_vpsnet import seeded_state_dict

PARTS = ("flownetc", "flownets_1", "flownets_2", "flownets_d")
TOLERANCE = 1e-4
"""Relative to the golden's largest value, for every flow compared: the sub-networks' (flow / 20,
|x| <~ 1.3) and the final ones (up to ~47 px). Flows are regressed, no activation after them;
five cascaded networks of 162 M weights sum in an order that the CPU and the thread count change
(largest measured: 1.3e-5, the 200 x 400 compute_flow)."""


@pytest.fixture(scope="module")
def golden() -> dict:
    return torch.load(GOLDEN, weights_only=True)


@pytest.fixture(scope="module")
def model() -> FlowNet2:
    """The one FlowNet2 of this module (~0.65 GB), with the golden's seeded weights."""
    net = FlowNet2()
    net.load_state_dict(seeded_state_dict(net, SEED), strict=True)
    return net.eval()


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float((a - b).abs().max())


def test_layout_is_the_official_manifest(model: FlowNet2) -> None:
    ours = [[k, list(v.shape), str(v.dtype)] for k, v in model.state_dict().items()]
    assert ours == json.loads(MANIFEST.read_text())
    assert sum(p.numel() for p in model.parameters()) == 162_518_834
    assert not any(p.requires_grad for p in model.parameters())  # frozen, as officially


@pytest.mark.golden
def test_forward_matches_the_official_flownet2(model: FlowNet2, golden: dict) -> None:
    seen = {}
    hooks = [
        getattr(model, name).register_forward_hook(
            lambda module, args, out, name=name: seen.__setitem__(name, out)
        )
        for name in PARTS
    ]
    try:
        current, reference = flow_frames(FORWARD_SIZE)
        with torch.no_grad():
            flow = model(torch.stack([current, reference], dim=2))
    finally:
        for hook in hooks:
            hook.remove()
    expected = golden["forward"]
    for name in PARTS:
        assert_close(seen[name], expected[name], TOLERANCE, f"flownet2 {name}")
    assert_close(flow, expected["flow"], TOLERANCE, "flownet2 flow")
    assert expected["flow"].abs().max() > 5  # the random net does move things


@pytest.mark.golden
def test_flownet2_flow_is_the_official_compute_flow(model: FlowNet2, golden: dict) -> None:
    """200 x 400 normalised frames: de-normalised, padded to 256 x 448 (the zeros count in the
    mean), FlowNet2, cropped: as ``PanopticFuseTrack.compute_flow``."""
    current, reference = (normalised(x) for x in flow_frames(COMPUTE_FLOW_SIZE, seed=1))
    flow = flownet2_flow(model, denormalise(current), denormalise(reference))
    expected = golden["compute_flow"]["flow"]
    assert flow.shape == (1, 2, *COMPUTE_FLOW_SIZE)
    assert_close(flow, expected, TOLERANCE, "flownet2 compute_flow")


def test_padding_is_the_officials_and_else_to_multiples_of_64() -> None:
    assert flownet2_padding(200, 400) == (56, 48)
    assert flownet2_padding(800, 1600) == (32, 64)  # official: 64 columns more than needed
    assert flownet2_padding(1024, 2048) == (0, 0)
    assert flownet2_padding(160, 96) == (32, 32)


def test_resample2d_samples_at_pixel_plus_flow_with_border_clamping() -> None:
    image = torch.arange(20.0).view(1, 1, 4, 5)  # value = 5 * y + x
    flow = torch.zeros(1, 2, 4, 5)
    assert torch.equal(resample2d(image, flow), image)  # zero flow: identity
    flow[:, 0] = 1.0  # one pixel right: the right neighbour, the last column repeated
    assert torch.equal(resample2d(image, flow)[0, 0, :, :4], image[0, 0, :, 1:])
    assert torch.equal(resample2d(image, flow)[0, 0, :, 4], image[0, 0, :, 4])
    flow[:, 0], flow[:, 1] = 0.25, 0.5  # bilinear between neighbours, no half-pixel shift
    out = resample2d(image, flow)[0, 0]
    assert torch.allclose(out[:3, :4], image[0, 0, :3, :4] + 0.25 + 2.5)
    flow[:, 0], flow[:, 1] = -7.5, 0.0  # far outside: the first column
    assert torch.equal(resample2d(image, flow)[0, 0], image[0, 0, :, :1].expand(4, 5))
    # Same as grid_sample(border, align_corners=True) on a random field, up to rounding.
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 6, 7, generator=generator)
    flow = 3 * torch.randn(2, 2, 6, 7, generator=generator)
    ys, xs = torch.meshgrid(torch.arange(6.0), torch.arange(7.0), indexing="ij")
    grid = torch.stack([(xs + flow[:, 0]) / 3 - 1, (ys + flow[:, 1]) / 2.5 - 1], dim=-1)
    sampled = F.grid_sample(x, grid, padding_mode="border", align_corners=True)
    assert max_diff(resample2d(x, flow), sampled) < 1e-5


def test_correlation_with_stride2_and_channel_norm() -> None:
    generator = torch.Generator().manual_seed(1)
    a = torch.randn(1, 4, 9, 11, generator=generator)
    b = torch.randn(1, 4, 9, 11, generator=generator)
    corr = correlation(a, b, max_displacement=4, stride2=2)
    assert corr.shape == (1, 25, 9, 11)  # displacements -4, -2, 0, 2, 4 in each axis
    for j, i in ((0, 0), (-2, 1), (1, -2), (2, 2)):
        dy, dx = 2 * j, 2 * i
        channel = (j + 2) * 5 + (i + 2)
        y, x = 4, 5
        expected = (a[0, :, y, x] * b[0, :, y + dy, x + dx]).mean()
        assert torch.isclose(corr[0, channel, y, x], expected, atol=1e-6)
    assert (corr[0, :5, :4] == 0).all()  # dy = -4 looks above the image there
    # stride2 1 keeps the fusion neck's correlation
    assert torch.equal(correlation(a, b, 2, stride2=1), correlation(a, b, 2))
    assert correlation(a[:, :, :8, :8], b[:, :, :8, :8], 20, stride2=2).shape[1] == 441
    assert torch.allclose(channel_norm(a), a.norm(dim=1, keepdim=True))


def test_flownet2_weights_load_strictly_from_either_checkpoint_form(model: FlowNet2) -> None:
    state = model.state_dict()
    vpsnet_file = {
        "meta": {},
        "state_dict": {
            "module.backbone.conv1.weight": torch.zeros(1),
            **{f"module.flownet2.{k}": v for k, v in state.items()},
        },
    }
    assert list(flownet2_state_dict(vpsnet_file)) == list(state)
    assert "flownet2.flownetc.conv1.0.weight" not in official_state_dict(vpsnet_file)
    load_flownet2(model, vpsnet_file)  # the flownet2.* part, prefix stripped
    nvidia_file = {"epoch": 0, "best_EPE": 1.0, "state_dict": dict(state)}
    load_flownet2(model, nvidia_file)  # a bare FlowNet2 state_dict
    broken = dict(state)
    del broken["flownetc.conv1.0.bias"]
    broken["flownets_d.conv0.0.weight"] = torch.zeros(64, 3, 3, 3)
    with pytest.raises(ValueError, match=r"does not fit FlowNet2: missing \(1\): flownetc.conv1"):
        load_flownet2(model, {"state_dict": broken}, "x.pth")
    with pytest.raises(ValueError, match=r"shape \(1\): flownets_d.conv0.0.weight"):
        load_flownet2(model, broken)
    assert flownet2_state_dict({"state_dict": {"backbone.conv1.weight": torch.zeros(1)}}) == {}


def test_missing_file_is_a_one_line_error(model: FlowNet2, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="weights file not found"):
        load_flownet2(model, tmp_path / "FlowNet2_checkpoint.pth.tar")

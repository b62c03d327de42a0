"""Flow-guided temporal feature fusion (``extra_neck``: mcahny/vps ``BFPTcea``).

The current frame's pyramid and the previous frame's are each gathered into one stride-4
map (every level resized to P2 by nearest neighbour, averaged); the previous map is warped
by the optical flow, the flow is refined by a small correlation network
(``liteflownet``) and the warped map warped once more by that residual; EDVR's
temporal-spatial attention (``tcea_fusion``) merges the two, a 3x3 conv + ReLU
(``refine``) cleans up, and the result is max-pooled back to every level and added.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .neck import ConvModule

MAX_DISPLACEMENT = 4
"""The correlation compares each position with the (2 * 4 + 1)^2 = 81 around it."""


def warp(x: Tensor, flow: Tensor) -> Tensor:
    """Samples ``x`` [N, C, H, W] at ``position + flow`` (flow [N, 2, H, W], dx then dy, in
    pixels of ``x``), bilinear, zeros outside: the official ``WarpingLayer``.

    Its grid is built align-corners style (``linspace(-1, 1)``, flow / ((size - 1) / 2)) but
    sampled with ``grid_sample``'s default ``align_corners=False``, as the official code runs
    on PyTorch >= 1.3, so even a zero flow resamples slightly (source
    ``x_src = (x + dx) * W / (W - 1) - 0.5``). Kept for checkpoint fidelity.
    """
    height, width = x.shape[2:]
    ys = torch.linspace(-1.0, 1.0, height, device=x.device, dtype=x.dtype)
    xs = torch.linspace(-1.0, 1.0, width, device=x.device, dtype=x.dtype)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    # new_full, not new_tensor: a host-to-device copy cannot be captured in a CUDA graph
    scale = torch.cat([flow.new_full((1, 1, 1, 1), (width - 1) / 2.0),
                       flow.new_full((1, 1, 1, 1), (height - 1) / 2.0)], dim=1)  # fmt: skip
    grid = torch.stack([gx, gy])[None] + flow / scale
    return F.grid_sample(x, grid.permute(0, 2, 3, 1), align_corners=False)


def correlation(
    a: Tensor, b: Tensor, max_displacement: int = MAX_DISPLACEMENT, stride2: int = 1
) -> Tensor:
    """FlowNet correlation (kernel 1, stride1 1, padding = ``max_displacement``), as the official
    CUDA ``Correlation``: with ``r = max_displacement // stride2``, channel
    ``(j + r) * (2r + 1) + (i + r)`` at (y, x) is ``mean_c a[c, y, x] * b[c, y + dy, x + dx]``
    for the displacement ``(dy, dx) = (j * stride2, i * stride2)``, zero outside ``b``.

    Args:
        a, b: [N, C, H, W].
        max_displacement: the largest displacement (4 in the fusion neck, 20 in FlowNetC).
        stride2: the step between displacements (1 in the fusion neck, 2 in FlowNetC).

    Returns:
        [N, (2r + 1)^2, H, W], dy-major.
    """
    d, r = max_displacement, max_displacement // stride2
    height, width = a.shape[2:]
    padded = F.pad(b, (d, d, d, d))
    shifts = [d + k * stride2 for k in range(-r, r + 1)]
    out = [
        (a * padded[:, :, dy : dy + height, dx : dx + width]).mean(dim=1)
        for dy in shifts
        for dx in shifts
    ]
    return torch.stack(out, dim=1)


class _ConvLeaky(nn.Sequential):
    """``convs.i``: a 3x3 conv (key ``i.0``) + LeakyReLU(0.1)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.LeakyReLU(0.1))


class FlowEstimator(nn.Module):
    """``flow_estimator``: 3 x (3x3 conv + LeakyReLU) to 64, 64, 32, then a 3x3 conv to the
    two flow channels."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            _ConvLeaky(in_channels, 64),
            _ConvLeaky(64, 64),
            _ConvLeaky(64, 32),
            nn.Conv2d(32, 2, 3, padding=1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.convs(x)


class LiteFlowNetCorr(nn.Module):
    """``liteflownet``: the residual flow [N, 2, H, W] from the current map, its correlation
    with the warped reference and the initial flow."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.flow_estimator = FlowEstimator(channels + (2 * MAX_DISPLACEMENT + 1) ** 2 + 2)

    def forward(self, current: Tensor, warped: Tensor, flow: Tensor) -> Tensor:
        return self.flow_estimator(torch.cat([current, correlation(current, warped), flow], 1))


class TCEAFusion(nn.Module):
    """``tcea_fusion``: EDVR's temporal and spatial attention over [current, warped reference]
    (the current frame is the centre).

    Temporal: each frame's ``tAtt_1`` embedding dotted with the centre's ``tAtt_2`` embedding,
    a sigmoid per pixel weighting that frame. Spatial: a stride-2 pyramid of max- and
    average-pooled ``sAtt_1`` features, upsampled back; out = fused * sigmoid(att) * 2 + add.
    """

    def __init__(self, channels: int, frames: int = 2) -> None:
        super().__init__()
        c = channels
        self.tAtt_1 = nn.Conv2d(c, c, 3, padding=1)
        self.tAtt_2 = nn.Conv2d(c, c, 3, padding=1)
        self.fea_fusion = nn.Conv2d(frames * c, c, 1)
        self.sAtt_1 = nn.Conv2d(frames * c, c, 1)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.avgpool = nn.AvgPool2d(3, stride=2, padding=1)
        self.sAtt_2 = nn.Conv2d(2 * c, c, 1)
        self.sAtt_3 = nn.Conv2d(c, c, 3, padding=1)
        self.sAtt_4 = nn.Conv2d(c, c, 3, padding=1)
        self.sAtt_add_1 = nn.Conv2d(c, c, 1)
        self.sAtt_add_2 = nn.Conv2d(c, c, 1)

    def forward(self, frames: Tensor) -> Tensor:
        """[N, T, C, H, W], frame 0 the centre -> [N, C, H, W]."""
        n, t, c, height, width = frames.shape
        lrelu = F.leaky_relu
        centre = self.tAtt_2(frames[:, 0])
        embedded = self.tAtt_1(frames.reshape(n * t, c, height, width)).view(frames.shape)
        weights = torch.sigmoid((embedded * centre[:, None]).sum(dim=2, keepdim=True))
        attended = (frames * weights).reshape(n, t * c, height, width)
        fused = lrelu(self.fea_fusion(attended), 0.1)
        att = lrelu(self.sAtt_1(attended), 0.1)
        att = lrelu(self.sAtt_2(torch.cat([self.maxpool(att), self.avgpool(att)], 1)), 0.1)
        att = lrelu(self.sAtt_3(att), 0.1)
        att = F.interpolate(att, scale_factor=2.0, mode="bilinear", align_corners=False)
        att = self.sAtt_4(att)
        add = self.sAtt_add_2(lrelu(self.sAtt_add_1(att), 0.1))
        return fused * torch.sigmoid(att) * 2 + add


class BFPTcea(nn.Module):
    """``extra_neck``: fuses the previous frame's pyramid into the current one.

    Args:
        channels: FPN width.
    """

    def __init__(self, channels: int = 256) -> None:
        super().__init__()
        self.liteflownet = LiteFlowNetCorr(channels)
        self.tcea_fusion = TCEAFusion(channels)
        self.refine = ConvModule(channels, channels, 3, relu=True)

    @staticmethod
    def gather(levels: list[Tensor]) -> Tensor:
        """P2..P6 resized to P2 (nearest) and averaged: [N, C, H/4, W/4]."""
        size = levels[0].shape[2:]
        return sum(F.interpolate(x, size=size, mode="nearest") for x in levels) / len(levels)

    def forward(self, current: list[Tensor], reference: list[Tensor], flow: Tensor) -> list[Tensor]:
        """Fused P2..P6.

        Args:
            current: this frame's P2..P6 [N, C, H/s, W/s].
            reference: the previous frame's (the frame itself on a video's first frame).
            flow: [N, 2, H/4, W/4], from this frame to the reference, in P2 pixels (the
                full-resolution flow resized by 1/4, values times 1/4).
        """
        centre = self.gather(current)
        warped = warp(self.gather(reference), flow)
        warped = warp(warped, self.liteflownet(centre, warped, flow))
        fused = self.refine(self.tcea_fusion(torch.stack([centre, warped], dim=1)))
        return [adaptive_max_pool(fused, x.shape[2:]) + x for x in current]


def adaptive_max_pool(x: Tensor, size: Sequence[int]) -> Tensor:
    """``F.adaptive_max_pool2d(x, size)`` in operators ONNX can export at fixed shapes.

    Where the sizes divide, it is a max pool with kernel = stride = the ratio (the same
    windows); otherwise, while tracing for export, the row and column maxima over adaptive
    pooling's own windows (rows ``floor(i H / h)`` to ``ceil((i + 1) H / h)``).

    Args:
        x: [N, C, H, W].
        size: (h, w), at most (H, W).

    Returns:
        [N, C, h, w].
    """
    (height, width), (h, w) = (int(n) for n in x.shape[2:]), (int(n) for n in size)
    if height % h == 0 and width % w == 0:
        return F.max_pool2d(x, (height // h, width // w))
    if not torch.jit.is_tracing():
        return F.adaptive_max_pool2d(x, (h, w))
    rows = [x[:, :, i * height // h : -(-(i + 1) * height // h)].amax(2) for i in range(h)]
    pooled = torch.stack(rows, 2)
    columns = [pooled[..., j * width // w : -(-(j + 1) * width // w)].amax(3) for j in range(w)]
    return torch.stack(columns, 3)

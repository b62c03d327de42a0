"""The semantic head (``panopticFPN``: UPSNet's FPN subnet with deformable convs, as VPSNet
configures it: three DCN + GroupNorm(32) + ReLU stages shared over P2..P5)."""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import deform_conv2d

from .neck import ConvModule


class DeformConvWithOffset(nn.Module):
    """A 3x3 conv predicting 18 offsets (``conv_offset``, with bias) for a 3x3 deformable
    conv without bias (``conv``). The offsets are (dy, dx) per tap, taps row-major, which is
    both mmdet v1's DeformConv layout and ``torchvision.ops.deform_conv2d``'s.

    With ``deformable=False`` (our light variant) there is no ``conv_offset`` and ``conv`` is a
    plain 3x3 conv: torchvision's deformable conv backward is ~40x slower than a conv's on a
    CPU, which would make CPU training impractical.
    """

    def __init__(self, in_channels: int, out_channels: int, deformable: bool = True) -> None:
        super().__init__()
        if deformable:
            self.conv_offset = nn.Conv2d(in_channels, 18, 3, padding=1)
            nn.init.zeros_(self.conv_offset.weight)  # start as a plain conv
            nn.init.zeros_(self.conv_offset.bias)
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.deformable = deformable

    def forward(self, x: Tensor) -> Tensor:
        if not self.deformable:
            return self.conv(x)
        return deform_conv2d(x, self.conv_offset(x), self.conv.weight, padding=(1, 1))


def _stage(in_channels: int, out_channels: int, deformable: bool) -> list[nn.Module]:
    return [
        DeformConvWithOffset(in_channels, out_channels, deformable),
        nn.GroupNorm(32, out_channels),
        nn.ReLU(),
    ]


class UPSNetFPN(nn.Module):
    """Semantic logits at stride 4 and at full resolution.

    One subnet (``deform_convs.0``: DCN-GN-ReLU x 3, keys ``0``/``3``/``6`` for the convs and
    ``1``/``4``/``7`` for the GroupNorms) runs on each of P2..P5; P3..P5 are upsampled
    bilinearly to P2, the four concatenated and scored by a 1x1 conv (``conv_pred``).

    Args:
        in_channels: FPN width.
        channels: the subnet's widths (first, second, third conv).
        num_classes: semantic classes (stuff first, then things).
        deformable: deformable convs (official) or plain ones.
    """

    def __init__(
        self,
        in_channels: int = 256,
        channels: tuple[int, int, int] = (256, 128, 128),
        num_classes: int = 19,
        deformable: bool = True,
    ) -> None:
        super().__init__()
        widths = (in_channels, *channels)
        layers = [m for a, b in itertools.pairwise(widths) for m in _stage(a, b, deformable)]
        self.deform_convs = nn.ModuleList([nn.Sequential(*layers)])
        self.conv_pred = ConvModule(4 * channels[-1], num_classes, 1)

    def forward(self, features: list[Tensor]) -> tuple[Tensor, Tensor]:
        """P2..P5 (P6 ignored) -> ``(fcn_output [N, K, H, W], fcn_score [N, K, H/4, W/4])``."""
        subnet = self.deform_convs[0]
        maps = [subnet(x) for x in features[:4]]
        maps = [maps[0]] + [
            F.interpolate(x, scale_factor=2.0**k, mode="bilinear", align_corners=False)
            for k, x in enumerate(maps[1:], start=1)
        ]
        score = self.conv_pred(torch.cat(maps, dim=1))
        output = F.interpolate(score, scale_factor=4.0, mode="bilinear", align_corners=False)
        return output, score

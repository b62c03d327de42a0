"""VPSNet's backbone (``backbone.*``) and FPN (``neck.*``), mmdetection v1 layouts.

The ResNet is mmdet's pytorch-style one, whose keys and layers are torchvision's (stride in
the 3x3 conv, ``layerN.i.downsample.{0,1}``, plain BatchNorm run in eval mode); without
``fc``. The FPN's convs are mmcv ``ConvModule``s, hence ``lateral_convs.i.conv``.
"""

from __future__ import annotations

import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

from ..mobilenet import MobileNetV2Taps


class ResNet(nn.Module):
    """torchvision's ResNet-50 trunk returning C2..C5 ([N, 256|512|1024|2048, H/4..H/32])."""

    def __init__(self) -> None:
        super().__init__()
        trunk = torchvision.models.resnet50(weights=None)
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):
            self.add_module(name, getattr(trunk, name))
        self.out_channels = [256, 512, 1024, 2048]

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        outs = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            outs.append(x)
        return outs


class ConvModule(nn.Module):
    """mmcv's ``ConvModule`` without norm: ``.conv`` (with bias), optional ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, relu: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2)
        self.relu = relu

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        return F.relu(x) if self.relu else x


class FPN(nn.Module):
    """mmdet v1 FPN: 1x1 laterals, nearest x2 top-down sums, 3x3 outputs, and P6 =
    ``max_pool2d(P5, 1, stride=2)`` (no extra convs).

    Args:
        in_channels: the backbone's C2..C5 widths.
        channels: output width.
    """

    def __init__(self, in_channels: list[int], channels: int = 256) -> None:
        super().__init__()
        self.lateral_convs = nn.ModuleList(ConvModule(c, channels, 1) for c in in_channels)
        self.fpn_convs = nn.ModuleList(ConvModule(channels, channels, 3) for _ in in_channels)
        for module in self.modules():  # mmdet's xavier_init(distribution="uniform")
            if isinstance(module, nn.Conv2d):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, inputs: list[Tensor]) -> list[Tensor]:
        """C2..C5 -> P2..P6 [N, channels, H/s, W/s], s = 4..64."""
        laterals = [conv(x) for conv, x in zip(self.lateral_convs, inputs, strict=True)]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + F.interpolate(
                laterals[i], scale_factor=2.0, mode="nearest"
            )
        outs = [conv(x) for conv, x in zip(self.fpn_convs, laterals, strict=True)]
        outs.append(F.max_pool2d(outs[-1], 1, stride=2))
        return outs


def build_backbone(name: str) -> nn.Module:
    """The trunk: "resnet50" (official) or "mobilenetv2" (our light variant)."""
    if name == "resnet50":
        return ResNet()
    if name == "mobilenetv2":
        return MobileNetV2Taps()
    raise ValueError(f"unknown VPSNet backbone {name!r}; one of ['mobilenetv2', 'resnet50']")

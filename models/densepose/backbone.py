"""The detectron2 ResNet (``backbone.bottom_up``), a MobileNetV2 alternative and the FPN.

Key names and their order follow detectron2: the FPN registers ``fpn_lateral{2..5}`` /
``fpn_output{2..5}`` before ``bottom_up``; a ResNet block registers ``shortcut`` before
``conv1..3``; every conv carries its norm as ``<conv>.norm``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..mobilenet import MobileNetV2Taps


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm with fixed statistics and affine terms: ``(x - mean) / sqrt(var + eps) * w + b``.

    All four tensors are buffers, not parameters (as in detectron2, so they never train and
    the optimiser never sees them); there is no ``num_batches_tracked``. The initial values are
    the identity (``running_var = 1 - eps``).
    """

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features) - eps)

    def forward(self, x: Tensor) -> Tensor:
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        shift = self.bias - self.running_mean * scale
        return x * scale.view(1, -1, 1, 1).to(x.dtype) + shift.view(1, -1, 1, 1).to(x.dtype)

    def extra_repr(self) -> str:
        return f"{len(self.weight)}, eps={self.eps}"


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` followed by an optional ``norm`` submodule (keys ``<name>.norm.*``), as
    detectron2's wrapper; the activation stays with the caller."""

    def __init__(self, *args, norm: nn.Module | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.norm = norm

    def forward(self, x: Tensor) -> Tensor:
        x = super().forward(x)
        return self.norm(x) if self.norm is not None else x


class BasicStem(nn.Module):
    """7x7/2 conv, FrozenBN, ReLU, 3x3/2 max-pool: [N, 3, H, W] -> [N, 64, H/4, W/4]."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = Conv2d(3, 64, 7, stride=2, padding=3, bias=False, norm=FrozenBatchNorm2d(64))

    def forward(self, x: Tensor) -> Tensor:
        return F.max_pool2d(F.relu(self.conv1(x)), kernel_size=3, stride=2, padding=1)


class BottleneckBlock(nn.Module):
    """detectron2's bottleneck with ``STRIDE_IN_1X1``: the stride sits in ``conv1`` (1x1), not
    in ``conv2`` (3x3) as in torchvision, because the MSRA weights were trained that way."""

    def __init__(self, in_channels: int, bottleneck: int, out_channels: int, stride: int) -> None:
        super().__init__()
        if in_channels != out_channels:
            self.shortcut = Conv2d(
                in_channels,
                out_channels,
                1,
                stride=stride,
                bias=False,
                norm=FrozenBatchNorm2d(out_channels),
            )
        else:
            self.shortcut = None
        self.conv1 = Conv2d(
            in_channels,
            bottleneck,
            1,
            stride=stride,
            bias=False,
            norm=FrozenBatchNorm2d(bottleneck),
        )
        self.conv2 = Conv2d(
            bottleneck, bottleneck, 3, padding=1, bias=False, norm=FrozenBatchNorm2d(bottleneck)
        )
        self.conv3 = Conv2d(
            bottleneck, out_channels, 1, bias=False, norm=FrozenBatchNorm2d(out_channels)
        )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.conv1(x))
        out = F.relu(self.conv2(out))
        out = self.conv3(out)
        return F.relu(out + (self.shortcut(x) if self.shortcut is not None else x))


class ResNet(nn.Module):
    """ResNet-50 / 101 (``stem``, ``res2``..``res5``) returning C2..C5.

    Args:
        blocks: bottlenecks per stage ([3, 4, 6, 3] for R-50, [3, 4, 23, 3] for R-101).
    """

    def __init__(self, blocks: list[int]) -> None:
        super().__init__()
        self.stem = BasicStem()
        self.out_channels = [256, 512, 1024, 2048]
        in_channels = 64
        for index, count in enumerate(blocks):
            out_channels = self.out_channels[index]
            stride = 1 if index == 0 else 2
            stage = [BottleneckBlock(in_channels, out_channels // 4, out_channels, stride)]
            stage += [
                BottleneckBlock(out_channels, out_channels // 4, out_channels, 1)
                for _ in range(1, count)
            ]
            self.add_module(f"res{index + 2}", nn.Sequential(*stage))
            in_channels = out_channels

    def forward(self, x: Tensor) -> list[Tensor]:
        """[N, 3, H, W] -> C2..C5: [N, 256|512|1024|2048, H/4|8|16|32, W/4|8|16|32]."""
        x = self.stem(x)
        outs = []
        for name in ("res2", "res3", "res4", "res5"):
            x = getattr(self, name)(x)
            outs.append(x)
        return outs


class FPN(nn.Module):
    """Feature pyramid over ``bottom_up``'s four maps: P2..P5 by 1x1 laterals, nearest x2
    top-down sums and 3x3 outputs, and P6 = max-pool (kernel 1, stride 2) of P5.

    Args:
        bottom_up: returns four maps at strides 4, 8, 16, 32; has ``out_channels``.
        channels: FPN width.
    """

    def __init__(self, bottom_up: nn.Module, channels: int = 256) -> None:
        super().__init__()
        for level, in_channels in enumerate(bottom_up.out_channels, start=2):
            self.add_module(f"fpn_lateral{level}", nn.Conv2d(in_channels, channels, 1))
            self.add_module(f"fpn_output{level}", nn.Conv2d(channels, channels, 3, padding=1))
        self.bottom_up = bottom_up
        for module in self.children():
            if module is not bottom_up:  # detectron2's c2_xavier_fill
                nn.init.kaiming_uniform_(module.weight, a=1)
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> list[Tensor]:
        """[N, 3, H, W] (H, W multiples of 32) -> P2..P6: [N, 256, H/s, W/s], s = 4..64."""
        c = self.bottom_up(x)
        inner = self.fpn_lateral5(c[3])
        outs = [self.fpn_output5(inner)]
        for level in (4, 3, 2):
            top_down = F.interpolate(inner, scale_factor=2.0, mode="nearest")
            inner = getattr(self, f"fpn_lateral{level}")(c[level - 2]) + top_down
            outs.insert(0, getattr(self, f"fpn_output{level}")(inner))
        outs.append(F.max_pool2d(outs[-1], kernel_size=1, stride=2, padding=0))
        return outs


def build_backbone(name: str) -> FPN:
    """The FPN over "resnet50", "resnet101" or "mobilenetv2"."""
    if name == "mobilenetv2":
        return FPN(MobileNetV2Taps())
    blocks = {"resnet50": [3, 4, 6, 3], "resnet101": [3, 4, 23, 3]}
    if name not in blocks:
        raise ValueError(f"unknown DensePose backbone {name!r}; one of {sorted(blocks)}")
    return FPN(ResNet(blocks[name]))

"""YolactEdge's backbones with the official parameter names (``backbone.*``).

Both return the three feature maps the FPN uses, C3 / C4 / C5 at strides 8 / 16 / 32, and with
``partial=True`` only C3: what a non-keyframe needs (the expensive later stages are skipped).
"""

from __future__ import annotations

from torch import Tensor, nn


def _selected_outputs(
    layers: nn.ModuleList, x: Tensor, selected: tuple[int, ...], partial: bool
) -> list[Tensor]:
    """Runs ``layers`` in order up to the last selected one, collecting the selected outputs
    (only the first when ``partial``); later layers never run."""
    outs = []
    for index, layer in enumerate(layers[: selected[-1] + 1]):
        x = layer(x)
        if index in selected:
            outs.append(x)
            if partial:
                break
    return outs


class Bottleneck(nn.Module):
    """torchvision-style ResNet bottleneck: stride on the 3x3 conv, BN after every conv.

    Blocks without a projection hold an empty ``downsample`` Sequential (no keys), as official.
    """

    expansion = 4

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample if downsample is not None else nn.Sequential()

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + self.downsample(x))


class ResNetBackbone(nn.Module):
    """ResNet-50 / 101 trunk; ``layers`` is registered before the stem, as in the checkpoints.

    Args:
        blocks: bottlenecks per stage ([3, 4, 6, 3] for R-50, [3, 4, 23, 3] for R-101).
    """

    def __init__(self, blocks: list[int]) -> None:
        super().__init__()
        self.layers = nn.ModuleList()
        self.channels: list[int] = []
        inplanes = 64
        for stage, count in enumerate(blocks):
            planes, stride = 64 * 2**stage, 1 if stage == 0 else 2
            downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes * 4, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * 4),
            )
            stage_blocks = [Bottleneck(inplanes, planes, stride, downsample)]
            stage_blocks += [Bottleneck(planes * 4, planes) for _ in range(1, count)]
            self.layers.append(nn.Sequential(*stage_blocks))
            self.channels.append(planes * 4)
            inplanes = planes * 4
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.selected = (1, 2, 3)

    def forward(self, x: Tensor, partial: bool = False) -> list[Tensor]:
        """Feature maps ``[C3, C4, C5]`` (512 / 1024 / 2048 channels), or ``[C3]`` if partial.

        Args:
            x: float [N, 3, H, W], normalised RGB.
            partial: stop after C3 (stem, layer 1 and layer 2 only).
        """
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return _selected_outputs(self.layers, x, self.selected, partial)


def _conv_bn_relu6(inp: int, out: int, kernel: int = 3, stride: int = 1, groups: int = 1):
    return nn.Sequential(
        nn.Conv2d(inp, out, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    """MobileNetV2 block (torchvision's layout: ``conv`` = [pw], dw, pw-linear, BN)."""

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = round(inp * expand_ratio)
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(_conv_bn_relu6(inp, hidden, kernel=1))
        layers += [
            _conv_bn_relu6(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, oup, 1, 1, 0, bias=False),
            nn.BatchNorm2d(oup),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


MOBILENETV2_SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                       (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))  # fmt: skip
"""(expansion t, channels c, blocks n, stride s) per group, width 1.0."""


class MobileNetV2Backbone(nn.Module):
    """MobileNetV2 (width 1.0); ``layers[1..7]`` group the inverted residuals as official.

    ``layers[8]`` (1x1 to 1280) is kept for the checkpoint layout but never run: nothing uses it.
    """

    def __init__(self) -> None:
        super().__init__()
        self.channels: list[int] = [32]
        self.layers = nn.ModuleList([_conv_bn_relu6(3, 32, stride=2)])
        inp = 32
        for t, c, n, s in MOBILENETV2_SETTING:
            blocks = [
                InvertedResidual(inp if i == 0 else c, c, s if i == 0 else 1, t) for i in range(n)
            ]
            self.layers.append(nn.Sequential(*blocks))
            self.channels.append(c)
            inp = c
        self.layers.append(_conv_bn_relu6(inp, 1280, kernel=1))
        self.channels.append(1280)
        self.selected = (3, 4, 6)

    def forward(self, x: Tensor, partial: bool = False) -> list[Tensor]:
        """Feature maps ``[C3, C4, C5]`` (32 / 64 / 160 channels), or ``[C3]`` if partial."""
        return _selected_outputs(self.layers, x, self.selected, partial)


def build_backbone(name: str) -> ResNetBackbone | MobileNetV2Backbone:
    """ "resnet101", "resnet50" or "mobilenetv2"."""
    if name == "resnet101":
        return ResNetBackbone([3, 4, 23, 3])
    if name == "resnet50":
        return ResNetBackbone([3, 4, 6, 3])
    if name == "mobilenetv2":
        return MobileNetV2Backbone()
    raise ValueError(f"unknown backbone {name!r}")


def selected_channels(backbone: nn.Module) -> list[int]:
    """Channels of C3 / C4 / C5."""
    return [backbone.channels[i] for i in backbone.selected]  # type: ignore[attr-defined,index]

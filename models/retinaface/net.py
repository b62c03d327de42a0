"""RetinaFace with the parameter names of biubug6/Pytorch_Retinaface.

The module tree reproduces the official one key for key (see
``reference/manifests/retinaface_{mnet,re50}.json``), so the released
``mobilenet0.25_Final.pth`` and ``Resnet50_Final.pth`` load with ``strict=True``
once the ``module.`` prefix is stripped (``weights.load_weights`` does that):

- ``body.*``: the backbone cut after its last returned stage, the way torchvision's
  ``IntermediateLayerGetter`` cuts it (no avgpool / fc). MobileNetV1-0.25 has
  ``body.stage1..3``; ResNet-50 has torchvision's ``body.conv1``, ``body.bn1``,
  ``body.layer1..4``.
- ``fpn.output1..3`` (1x1 conv + BN + act), ``fpn.merge1/2`` (3x3 conv + BN + act).
- ``ssh1..3`` with ``conv3X3``, ``conv5X5_1``, ``conv5X5_2``, ``conv7X7_2`` and
  ``conv7x7_3`` (lower-case x, as upstream spells it).
- ``ClassHead``/``BboxHead``/``LandmarkHead``: ModuleLists of three 1x1 convs
  (``.conv1x1``), one per pyramid level.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["VARIANTS", "RetinaFace", "RetinaFaceConfig", "build_model"]

NUM_ANCHORS = 2  # one per min_size at every location


@dataclass(frozen=True)
class RetinaFaceConfig:
    """The architectural part of upstream's ``cfg_mnet`` / ``cfg_re50``.

    Attributes:
        name: Variant name ("mobilenet0.25" or "resnet50").
        in_channel: Channels of the first returned backbone stage divided by 2; the
            FPN inputs have ``in_channel * (2, 4, 8)`` channels.
        out_channel: FPN / SSH / head width.
    """

    name: str
    in_channel: int
    out_channel: int


VARIANTS: dict[str, RetinaFaceConfig] = {
    "mobilenet0.25": RetinaFaceConfig("mobilenet0.25", in_channel=32, out_channel=64),
    "resnet50": RetinaFaceConfig("resnet50", in_channel=256, out_channel=256),
}


def _act(leaky: float) -> nn.Module:
    # Upstream writes LeakyReLU(negative_slope=0) for the wide (R50) variant, which is ReLU.
    return nn.LeakyReLU(leaky, inplace=True) if leaky > 0 else nn.ReLU(inplace=True)


def _conv_bn(cin: int, cout: int, stride: int = 1, leaky: float = 0.0) -> nn.Sequential:
    """3x3 conv (no bias) + BN + activation: keys ``.0.weight``, ``.1.*``."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), _act(leaky)
    )


def _conv_bn_no_relu(cin: int, cout: int) -> nn.Sequential:
    """3x3 conv (no bias) + BN, no activation."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))


def _conv_bn1x1(cin: int, cout: int, leaky: float = 0.0) -> nn.Sequential:
    """1x1 conv (no bias) + BN + activation."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, 1, 1, 0, bias=False), nn.BatchNorm2d(cout), _act(leaky)
    )


def _conv_dw(cin: int, cout: int, stride: int, leaky: float = 0.1) -> nn.Sequential:
    """Depthwise 3x3 + BN + act, then pointwise 1x1 + BN + act (indices 0..5)."""
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False),
        nn.BatchNorm2d(cin),
        _act(leaky),
        nn.Conv2d(cin, cout, 1, 1, 0, bias=False),
        nn.BatchNorm2d(cout),
        _act(leaky),
    )


class MobileNetV1Body(nn.Module):
    """MobileNetV1 x0.25 up to ``stage3`` (upstream's avg/fc are cut off).

    forward: float32 [N, 3, H, W] -> three maps with 64 / 128 / 256 channels at
    strides 8 / 16 / 32.
    """

    def __init__(self) -> None:
        super().__init__()
        self.stage1 = nn.Sequential(
            _conv_bn(3, 8, 2, leaky=0.1),
            _conv_dw(8, 16, 1),
            _conv_dw(16, 32, 2),
            _conv_dw(32, 32, 1),
            _conv_dw(32, 64, 2),
            _conv_dw(64, 64, 1),
        )
        self.stage2 = nn.Sequential(
            _conv_dw(64, 128, 2), *(_conv_dw(128, 128, 1) for _ in range(5))
        )
        self.stage3 = nn.Sequential(_conv_dw(128, 256, 2), _conv_dw(256, 256, 1))

    def forward(self, x: Tensor) -> list[Tensor]:
        c1 = self.stage1(x)
        c2 = self.stage2(c1)
        c3 = self.stage3(c2)
        return [c1, c2, c3]


class ResNet50Body(nn.Module):
    """torchvision ResNet-50 cut after ``layer4`` with torchvision's child names.

    forward: float32 [N, 3, H, W] -> ``layer2`` / ``layer3`` / ``layer4`` outputs
    (512 / 1024 / 2048 channels at strides 8 / 16 / 32).
    """

    def __init__(self) -> None:
        super().__init__()
        from torchvision.models import resnet50

        net = resnet50(weights=None)
        self.conv1 = net.conv1
        self.bn1 = net.bn1
        self.relu = net.relu
        self.maxpool = net.maxpool
        self.layer1 = net.layer1
        self.layer2 = net.layer2
        self.layer3 = net.layer3
        self.layer4 = net.layer4

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c1 = self.layer2(self.layer1(x))
        c2 = self.layer3(c1)
        c3 = self.layer4(c2)
        return [c1, c2, c3]


class FPN(nn.Module):
    """Three-level top-down pyramid (upstream ``models/net.py`` FPN).

    Level 3 is only projected; level 2 adds nearest-upsampled level 3 and goes
    through ``merge2``; level 1 adds nearest-upsampled (merged) level 2 and goes
    through ``merge1``. The upsampling target is the next level's exact size, so
    odd input sizes work.
    """

    def __init__(self, in_channels: list[int], out_channels: int) -> None:
        super().__init__()
        leaky = 0.1 if out_channels <= 64 else 0.0
        self.output1 = _conv_bn1x1(in_channels[0], out_channels, leaky)
        self.output2 = _conv_bn1x1(in_channels[1], out_channels, leaky)
        self.output3 = _conv_bn1x1(in_channels[2], out_channels, leaky)
        self.merge1 = _conv_bn(out_channels, out_channels, leaky=leaky)
        self.merge2 = _conv_bn(out_channels, out_channels, leaky=leaky)

    def forward(self, feats: list[Tensor]) -> list[Tensor]:
        o1 = self.output1(feats[0])
        o2 = self.output2(feats[1])
        o3 = self.output3(feats[2])
        o2 = self.merge2(o2 + F.interpolate(o3, size=o2.shape[-2:], mode="nearest"))
        o1 = self.merge1(o1 + F.interpolate(o2, size=o1.shape[-2:], mode="nearest"))
        return [o1, o2, o3]


class SSH(nn.Module):
    """Single-stage context module: concat of 3x3, "5x5" and "7x7" branches, then ReLU.

    The 5x5 and 7x7 branches share ``conv5X5_1``. Output has ``out_channel``
    channels (C/2 + C/4 + C/4).
    """

    def __init__(self, in_channel: int, out_channel: int) -> None:
        super().__init__()
        if out_channel % 4:
            raise ValueError(f"SSH out_channel must be a multiple of 4, got {out_channel}")
        leaky = 0.1 if out_channel <= 64 else 0.0
        q = out_channel // 4
        self.conv3X3 = _conv_bn_no_relu(in_channel, out_channel // 2)
        self.conv5X5_1 = _conv_bn(in_channel, q, leaky=leaky)
        self.conv5X5_2 = _conv_bn_no_relu(q, q)
        self.conv7X7_2 = _conv_bn(q, q, leaky=leaky)
        self.conv7x7_3 = _conv_bn_no_relu(q, q)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.conv3X3(x)
        t = self.conv5X5_1(x)
        b5 = self.conv5X5_2(t)
        b7 = self.conv7x7_3(self.conv7X7_2(t))
        return F.relu(torch.cat([b3, b5, b7], dim=1))


class _Head(nn.Module):
    """1x1 conv predicting ``k`` values per anchor; [N, C, h, w] -> [N, h*w*A, k]."""

    def __init__(self, channels: int, k: int, num_anchors: int = NUM_ANCHORS) -> None:
        super().__init__()
        self.k = k
        self.conv1x1 = nn.Conv2d(channels, num_anchors * k, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1x1(x).permute(0, 2, 3, 1)
        return out.reshape(out.shape[0], -1, self.k)


class RetinaFace(nn.Module):
    """RetinaFace (biubug6 layout), inference phase.

    Args:
        variant: "mobilenet0.25" or "resnet50".

    forward:
        x: float32 [N, 3, H, W], BGR pixels 0..255 minus (104, 117, 123); any H, W.

    Returns:
        ``(loc, conf, landmarks)`` with P = 2 * sum over s in (8, 16, 32) of
        ceil(H/s) * ceil(W/s), ordered (level, row, col, anchor) like ``priors()``:

        - loc: float32 [N, P, 4], box offsets (dx, dy, dw, dh) to decode with priors.
        - conf: float32 [N, P, 2], softmax over (background, face), as upstream's
          ``phase='test'`` returns it.
        - landmarks: float32 [N, P, 10], five (dx, dy) offsets.
    """

    def __init__(self, variant: str = "mobilenet0.25") -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(
                f"unknown RetinaFace variant {variant!r}; expected one of {list(VARIANTS)}"
            )
        cfg = VARIANTS[variant]
        self.variant = variant
        self.body = MobileNetV1Body() if variant == "mobilenet0.25" else ResNet50Body()
        c = cfg.in_channel
        self.fpn = FPN([c * 2, c * 4, c * 8], cfg.out_channel)
        self.ssh1 = SSH(cfg.out_channel, cfg.out_channel)
        self.ssh2 = SSH(cfg.out_channel, cfg.out_channel)
        self.ssh3 = SSH(cfg.out_channel, cfg.out_channel)
        self.ClassHead = nn.ModuleList(_Head(cfg.out_channel, 2) for _ in range(3))
        self.BboxHead = nn.ModuleList(_Head(cfg.out_channel, 4) for _ in range(3))
        self.LandmarkHead = nn.ModuleList(_Head(cfg.out_channel, 10) for _ in range(3))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        p1, p2, p3 = self.fpn(self.body(x))
        feats = [self.ssh1(p1), self.ssh2(p2), self.ssh3(p3)]
        loc = torch.cat([h(f) for h, f in zip(self.BboxHead, feats, strict=True)], dim=1)
        logits = torch.cat([h(f) for h, f in zip(self.ClassHead, feats, strict=True)], dim=1)
        landmarks = torch.cat([h(f) for h, f in zip(self.LandmarkHead, feats, strict=True)], dim=1)
        return loc, F.softmax(logits, dim=-1), landmarks


def build_model(variant: str = "mobilenet0.25") -> RetinaFace:
    """Build a randomly initialised RetinaFace with the official parameter names.

    Args:
        variant: "mobilenet0.25" (upstream ``cfg_mnet``) or "resnet50" (``cfg_re50``).

    Returns:
        The module in training mode with random weights; load weights with
        ``weights.load_weights`` (or use ``weights.pretrained``) and call ``.eval()``.

    Raises:
        ValueError: for any other variant name.
    """
    return RetinaFace(variant)

"""YolactEdge's FPN, protonet, prediction head and video modules, with the official names.

Official layouts kept for checkpoint compatibility (see ../shared/reference/models-video.md A1):
the FPN's ``lat_layers`` / ``pred_layers`` are stored in reverse (index 0 belongs to C5/P5);
only ``prediction_layers.0`` holds weights and serves every level; the flow network keeps its
``pred1`` / ``upfeat2`` / ``upflow2`` weights although inference (warping P4 and P5) never runs
them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

FEATURES = 256
MASK_DIM = 32
ANCHORS = 3  # aspect ratios 1, 1/2, 2 per location


def _upsample(x: Tensor, like: Tensor) -> Tensor:
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


class FPNPhase1(nn.Module):
    """Lateral 1x1 convs and the top-down sum (no 3x3 smoothing): the features that video
    mode caches and warps.

    Args:
        in_channels: channels of C3, C4, C5.
    """

    def __init__(self, in_channels: list[int]) -> None:
        super().__init__()
        self.lat_layers = nn.ModuleList(
            nn.Conv2d(c, FEATURES, kernel_size=1) for c in reversed(in_channels)
        )

    def forward(self, c3: Tensor, c4: Tensor, c5: Tensor) -> tuple[list[Tensor], Tensor]:
        """``([P3', P4', P5'], lateral(C3))``, each 256 channels at the input's stride."""
        convs = [c3, c4, c5]
        outs: list[Tensor] = [c3] * 3
        laterals: list[Tensor] = [c3] * 3
        x: Tensor | None = None
        for i, lat_layer in enumerate(self.lat_layers):
            j = 2 - i
            laterals[j] = lat_layer(convs[j])
            x = laterals[j] if x is None else _upsample(x, convs[j]) + laterals[j]
            outs[j] = x
        return outs, laterals[0]


class FPNPhase2(nn.Module):
    """3x3 smoothing convs (+ ReLU) on P3'..P5' and two stride-2 convs for P6, P7."""

    def __init__(self) -> None:
        super().__init__()
        self.pred_layers = nn.ModuleList(
            nn.Conv2d(FEATURES, FEATURES, kernel_size=3, padding=1) for _ in range(3)
        )
        self.downsample_layers = nn.ModuleList(
            nn.Conv2d(FEATURES, FEATURES, kernel_size=3, padding=1, stride=2) for _ in range(2)
        )

    def forward(self, p3: Tensor, p4: Tensor, p5: Tensor) -> list[Tensor]:
        """``[P3, P4, P5, P6, P7]``."""
        outs = [p3, p4, p5]
        for i, pred_layer in enumerate(self.pred_layers):
            outs[2 - i] = F.relu(pred_layer(outs[2 - i]))
        for layer in self.downsample_layers:
            outs.append(layer(outs[-1]))
        return outs


class Interpolate(nn.Module):
    """Bilinear x2 upsampling as a module (a step of the protonet)."""

    def forward(self, x: Tensor) -> Tensor:
        return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


def build_proto_net() -> nn.Sequential:
    """3 x (conv3x3 + ReLU), x2 upsample + ReLU, conv3x3 + ReLU, conv1x1 to 32 prototypes.

    Weighted indices 0, 2, 4, 8, 10 as official; the final ReLU is applied by the caller.
    """
    layers: list[nn.Module] = []
    for _ in range(3):
        layers += [nn.Conv2d(FEATURES, FEATURES, 3, padding=1), nn.ReLU(inplace=True)]
    layers += [Interpolate(), nn.ReLU(inplace=True)]
    layers += [nn.Conv2d(FEATURES, FEATURES, 3, padding=1), nn.ReLU(inplace=True)]
    layers.append(nn.Conv2d(FEATURES, MASK_DIM, 1))
    return nn.Sequential(*layers)


class PredictionModule(nn.Module):
    """The shared head: boxes, class logits and mask coefficients per anchor.

    Args:
        num_classes: classes including background.
    """

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.upfeature = nn.Sequential(
            nn.Conv2d(FEATURES, FEATURES, 3, padding=1), nn.ReLU(inplace=True)
        )
        self.bbox_layer = nn.Conv2d(FEATURES, ANCHORS * 4, 3, padding=1)
        self.conf_layer = nn.Conv2d(FEATURES, ANCHORS * num_classes, 3, padding=1)
        self.mask_layer = nn.Conv2d(FEATURES, ANCHORS * MASK_DIM, 3, padding=1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(loc [N, h*w*3, 4], conf logits [N, h*w*3, C], coeffs [N, h*w*3, 32] in (-1, 1))``,
        anchors in row-major (y, x, anchor) order."""
        x = self.upfeature(x)
        n = x.shape[0]

        def flat(t: Tensor, width: int) -> Tensor:
            return t.permute(0, 2, 3, 1).reshape(n, -1, width)

        return (
            flat(self.bbox_layer(x), 4),
            flat(self.conf_layer(x), self.num_classes),
            torch.tanh(flat(self.mask_layer(x), MASK_DIM)),
        )


def _conv_lrelu(inp: int, out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(inp, out, 3, stride=stride, padding=1), nn.LeakyReLU(0.1, inplace=True)
    )


class FlowNetPreConvs(nn.Module):
    """Reduces a 256-channel C3 lateral to 64 channels before the flow network."""

    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.Sequential(_conv_lrelu(FEATURES, 64))

    def forward(self, x: Tensor) -> Tensor:
        return self.convs(x)


class FlowPrediction(nn.Module):
    """Flow (2 channels) plus a per-channel scale and bias for the warped features."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 2, 3, padding=1, bias=False)
        self.scale = nn.Conv2d(in_channels, FEATURES, 1)
        self.bias = nn.Conv2d(in_channels, FEATURES, 1)
        nn.init.constant_(self.scale.bias, 1.0)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return self.conv(x), self.scale(x), self.bias(x)


class FlowNetMini(nn.Module):
    """The small flow network between the current frame's and the keyframe's C3 laterals.

    Encoder: conv1 (stride 1, 128->64->64), conv2 (stride 2, ->128->128), conv3 (stride 2,
    ->256->256), each 3x3 + LeakyReLU(0.1). ``pred3`` on conv3 gives the stride-32 (P5) flow;
    conv3 and its flow upsampled to conv2's size, through ``upfeat3`` / ``upflow3`` and
    concatenated with conv2, give ``pred2``: the stride-16 (P4) flow.
    """

    def __init__(self, in_channels: int = 128) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(_conv_lrelu(in_channels, 64), _conv_lrelu(64, 64))
        self.conv2 = nn.Sequential(_conv_lrelu(64, 128, stride=2), _conv_lrelu(128, 128))
        self.conv3 = nn.Sequential(_conv_lrelu(128, 256, stride=2), _conv_lrelu(256, 256))
        self.pred3 = FlowPrediction(256)
        self.pred2 = FlowPrediction(256 + 2)
        self.pred1 = FlowPrediction(128 + 2)
        self.upfeat3 = nn.Conv2d(256, 128, 3, padding=1, bias=False)
        self.upflow3 = nn.Conv2d(2, 2, 3, padding=1, bias=False)
        self.upfeat2 = nn.Conv2d(256 + 2, 64, 3, padding=1, bias=False)
        self.upflow2 = nn.Conv2d(2, 2, 3, padding=1, bias=False)

    def forward(self, current: Tensor, key: Tensor) -> list[tuple[Tensor, Tensor, Tensor]]:
        """``[(flow, scale, bias) at stride 16, (flow, scale, bias) at stride 32]``.

        Args:
            current: float [N, 64, h, w], pre-convolved C3 lateral of the current frame.
            key: the same for the keyframe.
        """
        conv1 = self.conv1(torch.cat((current, key), dim=1))
        conv2 = self.conv2(conv1)
        conv3 = self.conv3(conv2)
        flow3, scale3, bias3 = self.pred3(conv3)
        up_feat = self.upfeat3(_upsample(conv3, conv2))
        up_flow = self.upflow3(_upsample(flow3, conv2))
        flow2, scale2, bias2 = self.pred2(torch.cat((conv2, up_feat, up_flow), dim=1))
        return [(flow2, scale2, bias2), (flow3, scale3, bias3)]


class SPA(nn.Module):
    """Shallow refinement of warped P4', P5' with the current frame's C3 lateral."""

    def __init__(self) -> None:
        super().__init__()
        self.refine_convs = nn.ModuleList(_conv_lrelu(2 * FEATURES, FEATURES) for _ in range(2))

    def forward(self, lateral: Tensor, p4: Tensor, p5: Tensor) -> list[Tensor]:
        """``[P4' + refine(P4', C3 lateral resized), P5' + ...]``."""
        outs = []
        source = lateral
        for refine, x in zip(self.refine_convs, (p4, p5), strict=True):
            # Resized step by step (C3 -> P4 size -> P5 size), as official.
            source = _upsample(source, x)
            outs.append(x + refine(torch.cat((x, source), dim=1)))
        return outs


def warp(features: Tensor, flow: Tensor) -> Tensor:
    """Backward-warps ``features`` by ``flow`` (YolactEdge's convention).

    Args:
        features: float [N, C, h, w].
        flow: float [N, 2, h, w]; channel 0 is x, 1 is y, in normalised coordinates ([-1, 1]
            across the map) times 8.

    Returns:
        float [N, C, h, w] sampled bilinearly at (grid + flow / 8), zeros outside.
    """
    _, _, h, w = flow.shape
    # Pixel index scaled to [-1, 1] (align_corners=True), as official. arange, not linspace:
    # the ONNX exporter turns linspace into float64, which GridSample rejects.
    xs = torch.arange(w, device=flow.device, dtype=flow.dtype) * (2 / max(w - 1, 1)) - 1
    ys = torch.arange(h, device=flow.device, dtype=flow.dtype) * (2 / max(h - 1, 1)) - 1
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=0).unsqueeze(0)
    grid = (grid + flow / 8).permute(0, 2, 3, 1)
    return F.grid_sample(features, grid, mode="bilinear", padding_mode="zeros", align_corners=True)

"""FlowNet2 (NVIDIA flownet2-pytorch) as VPSNet registers it: the official model's ``flownet2``
submodule, which gives the temporal fusion its flow.

Pure PyTorch, with the official state_dict keys and shapes (the ``batchNorm=False`` variant,
``div_flow`` 20, ``rgb_max`` 255, float32) so that NVIDIA's ``FlowNet2_checkpoint.pth.tar`` or
the ``flownet2.*`` part of an official VPSNet checkpoint loads strictly. The five networks are
``flownetc`` (FlowNetC), ``flownets_1`` / ``flownets_2`` (FlowNetS on 12 channels),
``flownets_d`` (FlowNetSD) and ``flownetfusion``; everything else is parameter-free:

- correlation (FlowNetC): ``fusion.correlation`` with padding 20, kernel 1, max displacement
  20, stride1 1, stride2 2: 21 x 21 = 441 channels (dy-major), the mean over input channels,
  then LeakyReLU(0.1) (``corr_activation``);
- ``Resample2d`` (:func:`resample2d`): the CUDA kernel's bilinear warp, ``out[y, x] =
  in(y + dy, x + dx)`` with pixel-centre coordinates (no half-pixel shift) and each of the four
  neighbour indices clamped to the image separately, so samples outside repeat the border
  (what ``grid_sample(padding_mode="border", align_corners=True)`` does, up to rounding);
- ``ChannelNorm``: the L2 norm over channels, [N, 1, H, W];
- upsampling x4: bilinear (``align_corners=False``) after ``flownetc`` and ``flownets_1``,
  nearest after ``flownets_2`` and ``flownets_d``.

``div_flow`` as officially: the sub-networks predict flow / 20 at 1/4 resolution; FlowNetC's
and both FlowNetS outputs are multiplied by 20 before upsampling (pixels), and divided again
where they are fed on. FlowNetSD's output is *divided* by 20 before upsampling (NVIDIA's code
does this and the released fusion weights were trained with it). ``flownetfusion`` outputs
the full-resolution flow in pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn import init

from .fusion import correlation

DIV_FLOW = 20.0
RGB_MAX = 255.0
SIZE_MULTIPLE = 64
"""FlowNet2's input height and width must be multiples of this."""

CORRELATION = {"max_displacement": 20, "stride2": 2}
"""FlowNetC's ``Correlation(pad_size=20, kernel_size=1, max_displacement=20, stride1=1,
stride2=2)``."""

OFFICIAL_PADDING = {(800, 1600): (32, 64), (200, 400): (56, 48)}
"""(rows, columns) the official ``compute_flow`` zero-pads these input sizes by (bottom /
right); 1600 is already a multiple of 64, yet 64 columns are added."""


def _conv(in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1):
    """``conv(batchNorm=False, ...)``: conv (key ``.0``, bias, 'same' padding) + LeakyReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, (kernel_size - 1) // 2),
        nn.LeakyReLU(0.1),
    )


def _deconv(in_channels: int, out_channels: int) -> nn.Sequential:
    """``deconv``: 4x4 stride-2 transposed conv (key ``.0``) + LeakyReLU(0.1): x2 size."""
    return nn.Sequential(nn.ConvTranspose2d(in_channels, out_channels, 4, 2, 1), nn.LeakyReLU(0.1))


def channel_norm(x: Tensor) -> Tensor:
    """``ChannelNorm``: the L2 norm over channels, [N, C, H, W] -> [N, 1, H, W]."""
    return (x * x).sum(dim=1, keepdim=True).sqrt()


def resample2d(x: Tensor, flow: Tensor) -> Tensor:
    """``Resample2d`` (kernel_size 1, bilinear): ``x`` [N, C, H, W] sampled at
    ``(x + dx, y + dy)`` (flow [N, 2, H, W], dx then dy, in pixels).

    As the CUDA kernel: ``alpha = xf - floor(xf)``; the left / right columns ``floor(xf)`` and
    ``floor(xf) + 1`` (rows likewise) are each clamped to the image, so a sample outside takes
    the nearest border pixel (no zeros, no half-pixel offset).
    """
    n, c, height, width = x.shape
    if flow.shape[2:] != x.shape[2:]:
        raise ValueError(f"resample2d: flow {tuple(flow.shape)} for an input {tuple(x.shape)}")
    xs = flow[:, 0] + torch.arange(width, dtype=flow.dtype, device=flow.device)
    ys = flow[:, 1] + torch.arange(height, dtype=flow.dtype, device=flow.device)[:, None]
    x0, y0 = xs.floor(), ys.floor()
    alpha, beta = (xs - x0)[:, None], (ys - y0)[:, None]
    left, right = x0.clamp(0, width - 1).long(), (x0 + 1).clamp(0, width - 1).long()
    top, bottom = y0.clamp(0, height - 1).long(), (y0 + 1).clamp(0, height - 1).long()
    flat = x.reshape(n, c, height * width)

    def at(row: Tensor, column: Tensor) -> Tensor:
        index = (row * width + column).view(n, 1, -1).expand(n, c, -1)
        return flat.gather(2, index).view(n, c, height, width)

    return (
        (1 - alpha) * (1 - beta) * at(top, left)
        + alpha * (1 - beta) * at(top, right)
        + (1 - alpha) * beta * at(bottom, left)
        + alpha * beta * at(bottom, right)
    )


class ChannelNorm(nn.Module):
    """:func:`channel_norm` as a module (``channelnorm``)."""

    def forward(self, x: Tensor) -> Tensor:
        return channel_norm(x)


class Resample2d(nn.Module):
    """:func:`resample2d` as a module (``resample1`` .. ``resample4``)."""

    def forward(self, x: Tensor, flow: Tensor) -> Tensor:
        return resample2d(x, flow)


class _FlowDecoder(nn.Module):
    """The FlowNet refinement decoder shared by the sub-networks, registered (and so keyed) in
    the official order: ``deconv{l}``, [``inter_conv{l}``], ``predict_flow{l}`` (top level
    first), ``upsampled_flow{l+1}_to_{l}``."""

    def _add_decoder(
        self,
        top: int,
        channels: int,
        steps: tuple[tuple[int, int], ...],
        inter: bool,
        upsample_bias: bool,
    ) -> None:
        """``top``: the coarsest level (its feature map has ``channels``); ``steps``: per finer
        level, (skip channels, deconv channels); ``inter``: FlowNetSD / Fusion's extra 3x3 conv
        (no activation) before each prediction."""
        self._levels = tuple(range(top - 1, top - 1 - len(steps), -1))
        self._top, self._inter = top, inter
        deconvs, inters, predict_in = {}, {}, [channels]
        for level, (skip, out) in zip(self._levels, steps, strict=True):
            deconvs[level] = _deconv(channels, out)
            channels = skip + out + 2
            if inter:
                inters[level] = nn.Sequential(nn.Conv2d(channels, out, 3, padding=1))
            predict_in.append(out if inter else channels)
        for level, module in deconvs.items():
            self.add_module(f"deconv{level}", module)
        for level, module in inters.items():
            self.add_module(f"inter_conv{level}", module)
        for level, in_channels in zip((top, *self._levels), predict_in, strict=True):
            self.add_module(f"predict_flow{level}", nn.Conv2d(in_channels, 2, 3, padding=1))
        for level in self._levels:
            upsample = nn.ConvTranspose2d(2, 2, 4, 2, 1, bias=upsample_bias)
            self.add_module(f"upsampled_flow{level + 1}_to_{level}", upsample)

    def _decode(self, x: Tensor, skips: list[Tensor]) -> Tensor:
        """The finest flow prediction from the coarsest features and the finer skips."""
        flow = getattr(self, f"predict_flow{self._top}")(x)
        for level, skip in zip(self._levels, skips, strict=True):
            upsampled = getattr(self, f"upsampled_flow{level + 1}_to_{level}")(flow)
            x = torch.cat((skip, getattr(self, f"deconv{level}")(x), upsampled), dim=1)
            features = getattr(self, f"inter_conv{level}")(x) if self._inter else x
            flow = getattr(self, f"predict_flow{level}")(features)
        return flow


_DECODER_STEPS = ((512, 512), (512, 256), (256, 128), (128, 64))
"""Levels 5..2 of FlowNetC / S / SD: (skip channels, deconv channels)."""


class FlowNetC(_FlowDecoder):
    """``flownetc``: a shared conv tower on each image, their correlation (+ LeakyReLU) beside a
    1x1 ``conv_redir`` of the first, an encoder to 1/64 and the decoder: flow / 20 at 1/4
    resolution, [N, 2, H/4, W/4]. Input [N, 6, H, W]: the two normalised images."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = _conv(3, 64, kernel_size=7, stride=2)
        self.conv2 = _conv(64, 128, kernel_size=5, stride=2)
        self.conv3 = _conv(128, 256, kernel_size=5, stride=2)
        self.conv_redir = _conv(256, 32, kernel_size=1)
        self.conv3_1 = _conv(32 + 441, 256)
        self.conv4 = _conv(256, 512, stride=2)
        self.conv4_1 = _conv(512, 512)
        self.conv5 = _conv(512, 512, stride=2)
        self.conv5_1 = _conv(512, 512)
        self.conv6 = _conv(512, 1024, stride=2)
        self.conv6_1 = _conv(1024, 1024)
        self._add_decoder(6, 1024, _DECODER_STEPS, inter=False, upsample_bias=True)

    def forward(self, x: Tensor) -> Tensor:
        conv2a = self.conv2(self.conv1(x[:, :3]))
        conv3a = self.conv3(conv2a)
        conv3b = self.conv3(self.conv2(self.conv1(x[:, 3:])))
        corr = F.leaky_relu(correlation(conv3a, conv3b, **CORRELATION), 0.1)
        conv3 = self.conv3_1(torch.cat((self.conv_redir(conv3a), corr), dim=1))
        conv4 = self.conv4_1(self.conv4(conv3))
        conv5 = self.conv5_1(self.conv5(conv4))
        conv6 = self.conv6_1(self.conv6(conv5))
        return self._decode(conv6, [conv5, conv4, conv3, conv2a])


class FlowNetS(_FlowDecoder):
    """``flownets_1`` / ``flownets_2``: a plain encoder-decoder on ``in_channels`` (12: both
    images, the warped second image, the flow / 20 and the brightness error): flow / 20 at 1/4
    resolution."""

    def __init__(self, in_channels: int = 12) -> None:
        super().__init__()
        self.conv1 = _conv(in_channels, 64, kernel_size=7, stride=2)
        self.conv2 = _conv(64, 128, kernel_size=5, stride=2)
        self.conv3 = _conv(128, 256, kernel_size=5, stride=2)
        self.conv3_1 = _conv(256, 256)
        self.conv4 = _conv(256, 512, stride=2)
        self.conv4_1 = _conv(512, 512)
        self.conv5 = _conv(512, 512, stride=2)
        self.conv5_1 = _conv(512, 512)
        self.conv6 = _conv(512, 1024, stride=2)
        self.conv6_1 = _conv(1024, 1024)
        self._add_decoder(6, 1024, _DECODER_STEPS, inter=False, upsample_bias=False)

    def forward(self, x: Tensor) -> Tensor:
        conv2 = self.conv2(self.conv1(x))
        conv3 = self.conv3_1(self.conv3(conv2))
        conv4 = self.conv4_1(self.conv4(conv3))
        conv5 = self.conv5_1(self.conv5(conv4))
        conv6 = self.conv6_1(self.conv6(conv5))
        return self._decode(conv6, [conv5, conv4, conv3, conv2])


class FlowNetSD(_FlowDecoder):
    """``flownets_d``: FlowNet for small displacements (3x3 kernels, a full-resolution first
    conv, ``inter_conv`` before each prediction) on both images: flow / 20 at 1/4."""

    def __init__(self) -> None:
        super().__init__()
        self.conv0 = _conv(6, 64)
        self.conv1 = _conv(64, 64, stride=2)
        self.conv1_1 = _conv(64, 128)
        self.conv2 = _conv(128, 128, stride=2)
        self.conv2_1 = _conv(128, 128)
        self.conv3 = _conv(128, 256, stride=2)
        self.conv3_1 = _conv(256, 256)
        self.conv4 = _conv(256, 512, stride=2)
        self.conv4_1 = _conv(512, 512)
        self.conv5 = _conv(512, 512, stride=2)
        self.conv5_1 = _conv(512, 512)
        self.conv6 = _conv(512, 1024, stride=2)
        self.conv6_1 = _conv(1024, 1024)
        self._add_decoder(6, 1024, _DECODER_STEPS, inter=True, upsample_bias=True)

    def forward(self, x: Tensor) -> Tensor:
        conv1 = self.conv1_1(self.conv1(self.conv0(x)))
        conv2 = self.conv2_1(self.conv2(conv1))
        conv3 = self.conv3_1(self.conv3(conv2))
        conv4 = self.conv4_1(self.conv4(conv3))
        conv5 = self.conv5_1(self.conv5(conv4))
        conv6 = self.conv6_1(self.conv6(conv5))
        return self._decode(conv6, [conv5, conv4, conv3, conv2])


class FlowNetFusion(_FlowDecoder):
    """``flownetfusion``: a small full-resolution encoder-decoder over 11 channels (the first
    image, FlowNetSD's and FlowNetS2's flows, their norms and brightness errors): the final
    flow [N, 2, H, W] in pixels."""

    def __init__(self) -> None:
        super().__init__()
        self.conv0 = _conv(11, 64)
        self.conv1 = _conv(64, 64, stride=2)
        self.conv1_1 = _conv(64, 128)
        self.conv2 = _conv(128, 128, stride=2)
        self.conv2_1 = _conv(128, 128)
        self._add_decoder(2, 128, ((128, 32), (64, 16)), inter=True, upsample_bias=True)

    def forward(self, x: Tensor) -> Tensor:
        conv0 = self.conv0(x)
        conv1 = self.conv1_1(self.conv1(conv0))
        conv2 = self.conv2_1(self.conv2(conv1))
        return self._decode(conv2, [conv1, conv0])


class FlowNet2(nn.Module):
    """FlowNet2-CSS-SD with fusion (~162.5 M parameters), keyed as the official ``flownet2``.

    Args:
        requires_grad: officially False (the flow network is frozen).
    """

    def __init__(self, requires_grad: bool = False) -> None:
        super().__init__()
        self.div_flow, self.rgb_max = DIV_FLOW, RGB_MAX
        self.channelnorm = ChannelNorm()
        self.flownetc = FlowNetC()
        self.upsample1 = nn.Upsample(scale_factor=4, mode="bilinear", align_corners=False)
        self.resample1 = Resample2d()
        self.flownets_1 = FlowNetS()
        self.upsample2 = nn.Upsample(scale_factor=4, mode="bilinear", align_corners=False)
        self.resample2 = Resample2d()
        self.flownets_2 = FlowNetS()
        self.flownets_d = FlowNetSD()
        self.upsample3 = nn.Upsample(scale_factor=4, mode="nearest")
        self.upsample4 = nn.Upsample(scale_factor=4, mode="nearest")
        self.resample3 = Resample2d()
        self.resample4 = Resample2d()
        self.flownetfusion = FlowNetFusion()
        for module in self.modules():  # the official initialisation
            if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
                if module.bias is not None:
                    init.uniform_(module.bias)
                init.xavier_uniform_(module.weight)
        self.requires_grad_(requires_grad)

    def forward(self, frames: Tensor) -> Tensor:
        """Flow from frame 0 to frame 1, [N, 2, H, W] in pixels (dx, dy), on frame 0's grid.

        Args:
            frames: [N, 3, 2, H, W] RGB 0..255, H and W multiples of 64. Each channel's mean
                over both frames and all pixels is subtracted, then it is divided by 255.
        """
        mean = frames.reshape(*frames.shape[:2], -1).mean(dim=-1).view(*frames.shape[:2], 1, 1, 1)
        x = (frames - mean) / self.rgb_max
        x = torch.cat((x[:, :, 0], x[:, :, 1]), dim=1)
        first, second = x[:, :3], x[:, 3:]
        div = self.div_flow

        flow_c = self.upsample1(self.flownetc(x) * div)
        warped = self.resample1(second, flow_c)
        error = self.channelnorm(first - warped)
        flow_s1 = self.flownets_1(torch.cat((x, warped, flow_c / div, error), dim=1))
        flow_s1 = self.upsample2(flow_s1 * div)
        warped = self.resample2(second, flow_s1)
        error = self.channelnorm(first - warped)
        flow_s2 = self.flownets_2(torch.cat((x, warped, flow_s1 / div, error), dim=1))
        flow_s2 = self.upsample4(flow_s2 * div)
        norm_s2 = self.channelnorm(flow_s2)
        error_s2 = self.channelnorm(first - self.resample4(second, flow_s2))

        flow_sd = self.upsample3(self.flownets_d(x) / div)
        norm_sd = self.channelnorm(flow_sd)
        error_sd = self.channelnorm(first - self.resample3(second, flow_sd))

        fused = (first, flow_sd, flow_s2, norm_sd, norm_s2, error_sd, error_s2)
        return self.flownetfusion(torch.cat(fused, dim=1))


def flownet2_padding(height: int, width: int) -> tuple[int, int]:
    """(rows, columns) of zeros :func:`flownet2_flow` adds below / right of a height x width
    input: the official ``compute_flow``'s for the two sizes it handles
    (:data:`OFFICIAL_PADDING`), else up to the next multiples of 64 (where the official code
    only accepts sizes that already are)."""
    return OFFICIAL_PADDING.get((height, width), (-height % SIZE_MULTIPLE, -width % SIZE_MULTIPLE))


@torch.no_grad()
def flownet2_flow(model: FlowNet2, current_rgb: Tensor, reference_rgb: Tensor) -> Tensor:
    """VPSNet's ``compute_flow`` at full resolution: the flow from each current frame to its
    reference, [N, 2, H, W] in input pixels (dx, dy; the fusion neck's ``flow``).

    Both frames are stacked [current, reference], zero-padded bottom / right
    (:func:`flownet2_padding`; the zeros count in FlowNet2's mean), run through ``model``, and
    the flow is cropped back to H x W.

    Args:
        model: a :class:`FlowNet2` (in eval mode).
        current_rgb, reference_rgb: [N, 3, H, W] RGB 0..255 float, e.g.
            ``preprocess.denormalise`` of the network input (then the padding to 32 holds the
            mean colour, as officially).
    """
    if current_rgb.shape != reference_rgb.shape:
        raise ValueError(
            f"flownet2_flow: frames of shapes {tuple(current_rgb.shape)} and "
            f"{tuple(reference_rgb.shape)}"
        )
    height, width = current_rgb.shape[2:]
    rows, columns = flownet2_padding(height, width)
    frames = torch.stack((current_rgb, reference_rgb), dim=2).float()
    flow = model(F.pad(frames, (0, columns, 0, rows)))
    return flow[:, :, :height, :width]

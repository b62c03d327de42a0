"""pytorch/examples fast neural style ``TransformerNet`` with its parameter names.

pytorch/examples fast_neural_style (Johnson et al. 2016 with instance norm):
    ``TransformerNet``: attribute names ``conv1``/``in1`` ... ``res1..res5`` ... ``deconv3``;
    every conv is reflect-padded (``ConvLayer.conv2d``), the two upsampling layers are nearest
    x2 then conv (no transposed convs, hence no checkerboard), instance norms are affine and keep
    no running statistics, and there is no output activation. Input and output are RGB 0..255.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class ConvLayer(nn.Module):
    """Reflect pad ``kernel_size // 2`` then conv (with bias): key ``conv2d``.

    Args:
        in_channels: C_in.
        out_channels: C_out.
        kernel_size: k (odd).
        stride: s; the output is [N, C_out, ceil(H / s), ceil(W / s)].
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int) -> None:
        super().__init__()
        self.reflection_pad = nn.ReflectionPad2d(kernel_size // 2)
        self.conv2d = nn.Conv2d(in_channels, out_channels, kernel_size, stride)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv2d(self.reflection_pad(x))


class UpsampleConvLayer(ConvLayer):
    """Nearest-neighbour x``upsample`` then :class:`ConvLayer` (stride 1): [N, C, H, W] ->
    [N, C_out, upsample·H, upsample·W]."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, upsample: int
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=1)
        self.upsample = upsample

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(F.interpolate(x, scale_factor=self.upsample, mode="nearest"))


class ResidualBlock(nn.Module):
    """x + in2(conv2(relu(in1(conv1(x))))) at constant width (no ReLU after the sum)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = ConvLayer(channels, channels, 3, 1)
        self.in1 = nn.InstanceNorm2d(channels, affine=True)
        self.conv2 = ConvLayer(channels, channels, 3, 1)
        self.in2 = nn.InstanceNorm2d(channels, affine=True)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.in2(self.conv2(F.relu(self.in1(self.conv1(x)))))


class TransformerNet(nn.Module):
    """pytorch/examples' fast-neural-style network (one style per set of weights).

    Encoder conv9 3->32, conv3 s2 32->64, conv3 s2 64->128; five residual blocks at 128;
    decoder nearest x2 + conv3 128->64, nearest x2 + conv3 64->32, conv9 32->3. Every conv but
    the last is followed by affine instance norm and ReLU. 1,679,235 parameters.

    ``forward``: float [N, 3, H, W] RGB in 0..255 (no mean / std) -> float [N, 3, H', W'] RGB,
    roughly 0..255 but unclamped (upstream clamps to 0..255 when saving). H' = H and W' = W when
    H and W are multiples of 4.
    """

    def __init__(self) -> None:
        super().__init__()
        # Attribute order is the state_dict order of the released .pth files.
        self.conv1 = ConvLayer(3, 32, 9, 1)
        self.in1 = nn.InstanceNorm2d(32, affine=True)
        self.conv2 = ConvLayer(32, 64, 3, 2)
        self.in2 = nn.InstanceNorm2d(64, affine=True)
        self.conv3 = ConvLayer(64, 128, 3, 2)
        self.in3 = nn.InstanceNorm2d(128, affine=True)
        self.res1 = ResidualBlock(128)
        self.res2 = ResidualBlock(128)
        self.res3 = ResidualBlock(128)
        self.res4 = ResidualBlock(128)
        self.res5 = ResidualBlock(128)
        self.deconv1 = UpsampleConvLayer(128, 64, 3, upsample=2)
        self.in4 = nn.InstanceNorm2d(64, affine=True)
        self.deconv2 = UpsampleConvLayer(64, 32, 3, upsample=2)
        self.in5 = nn.InstanceNorm2d(32, affine=True)
        self.deconv3 = ConvLayer(32, 3, 9, 1)

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.in1(self.conv1(x)))
        y = F.relu(self.in2(self.conv2(y)))
        y = F.relu(self.in3(self.conv3(y)))
        y = self.res5(self.res4(self.res3(self.res2(self.res1(y)))))
        y = F.relu(self.in4(self.deconv1(y)))
        y = F.relu(self.in5(self.deconv2(y)))
        return self.deconv3(y)

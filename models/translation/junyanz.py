"""junyanz (pytorch-CycleGAN-and-pix2pix) generators and discriminator with their names.

junyanz/pytorch-CycleGAN-and-pix2pix networks.py:
    ``ResnetGenerator`` (CycleGAN), ``UnetGenerator`` (pix2pix) and ``NLayerDiscriminator``
    (PatchGAN), each an ``nn.Sequential`` called ``model``, so keys are ``model.<index>...``
    and every layer, parameter-free or not, takes an index. Two upstream rules decide the
    layout and must be kept: (1) convs before a norm have a bias only when the norm is instance
    norm (``use_bias``), since a bias before BatchNorm is cancelled by the mean; (2) dropout is
    a layer in the same Sequential, so switching it on shifts every later index of a residual
    block (``conv_block.5`` -> ``conv_block.6``), which is why a dropout checkpoint never loads
    into a no-dropout net. Input and output are RGB in [-1, 1] (tanh).

Norm names follow junyanz's ``--norm``: "instance" (InstanceNorm2d, no affine, no running
stats: no keys at all), "batch" (BatchNorm2d with running stats), "none" (Identity). We add
"instance_affine" (InstanceNorm2d with scale and shift, still no running stats), the layout of
vintagify's CycleGAN generator.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

NORMS = ("instance", "instance_affine", "batch", "none")


def _norm_layer(norm: str) -> Callable[[int], nn.Module]:
    if norm == "instance":
        return lambda c: nn.InstanceNorm2d(c, affine=False, track_running_stats=False)
    if norm == "instance_affine":
        return lambda c: nn.InstanceNorm2d(c, affine=True, track_running_stats=False)
    if norm == "batch":
        return lambda c: nn.BatchNorm2d(c, affine=True, track_running_stats=True)
    if norm == "none":
        return lambda c: nn.Identity()
    raise ValueError(f"unknown norm {norm!r}; expected one of {list(NORMS)}")


def _use_bias(norm: str) -> bool:
    # Upstream: use_bias = (norm layer is InstanceNorm2d). With "none" its norm factory is a
    # plain function, so the test is false and those convs have no bias either.
    return norm.startswith("instance")


class ResnetBlock(nn.Module):
    """x + conv_block(x), conv_block = [pad, conv3, norm, ReLU, (Dropout 0.5), pad, conv3, norm]
    with reflection padding; keys ``conv_block.1`` and ``conv_block.5`` (``.6`` with dropout).

    Args:
        dim: C, input and output channels.
        norm: One of :data:`NORMS`.
        use_dropout: Insert Dropout(0.5) after the first ReLU.
    """

    def __init__(self, dim: int, norm: str = "instance", use_dropout: bool = False) -> None:
        super().__init__()
        norm_layer, bias = _norm_layer(norm), _use_bias(norm)
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, 3, bias=bias),
            norm_layer(dim),
            nn.ReLU(True),
        ]
        if use_dropout:
            layers.append(nn.Dropout(0.5))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), norm_layer(dim)]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """CycleGAN's generator: conv7, two stride-2 convs, ``n_blocks`` residual blocks at 4·ngf,
    two transposed convs, conv7, tanh.

    Indices of ``model`` (9 blocks): 1 conv7, 4 and 7 downsampling convs (zero padding, as
    upstream), 10..18 ResnetBlock, 19 and 22 ConvTranspose2d (k3 s2 p1 op1), 26 the output conv;
    norms at 2, 5, 8, 20, 23. With 6 blocks: 10..15, 16, 19, 23.

    ``forward``: float [N, input_nc, H, W] in [-1, 1], H and W multiples of 4 (otherwise the
    output size differs) -> float [N, output_nc, H, W] in [-1, 1].

    Args:
        input_nc: Input channels.
        output_nc: Output channels.
        ngf: Width of the first conv.
        norm: One of :data:`NORMS` (CycleGAN: "instance").
        use_dropout: Dropout in the residual blocks (CycleGAN trains without).
        n_blocks: Residual blocks (9 for ``resnet_9blocks``, 6 for ``resnet_6blocks``).
    """

    def __init__(
        self,
        input_nc: int = 3,
        output_nc: int = 3,
        ngf: int = 64,
        norm: str = "instance",
        use_dropout: bool = False,
        n_blocks: int = 9,
    ) -> None:
        super().__init__()
        norm_layer, bias = _norm_layer(norm), _use_bias(norm)
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(input_nc, ngf, 7, bias=bias),
            norm_layer(ngf),
            nn.ReLU(True),
        ]
        for i in range(2):
            c = ngf * 2**i
            layers += [nn.Conv2d(c, 2 * c, 3, 2, 1, bias=bias), norm_layer(2 * c), nn.ReLU(True)]
        layers += [ResnetBlock(ngf * 4, norm, use_dropout) for _ in range(n_blocks)]
        for i in range(2):
            c = ngf * 2 ** (2 - i)
            layers += [
                nn.ConvTranspose2d(c, c // 2, 3, 2, 1, output_padding=1, bias=bias),
                norm_layer(c // 2),
                nn.ReLU(True),
            ]
        # The output conv always has a bias: no norm follows it.
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


class UnetSkipConnectionBlock(nn.Module):
    """One level of pix2pix's U-Net: down (conv4 s2), ``submodule``, up (convT4 s2), and a skip.

    Layout of ``model`` (the index is part of every key, hence the nesting
    ``model.model.1.model.3.model...``):
        outermost: [0 conv, 1 submodule, 2 ReLU, 3 convT (bias), 4 Tanh]
        innermost: [0 LeakyReLU 0.2, 1 conv, 2 ReLU, 3 convT, 4 norm]
        otherwise: [0 LeakyReLU 0.2, 1 conv, 2 norm, 3 submodule, 4 ReLU, 5 convT, 6 norm,
                    (7 Dropout 0.5)]

    ``forward``: [N, input_nc, H, W] -> [N, outer_nc, H, W] at the outermost level, else
    cat([x, block(x)]) = [N, input_nc + outer_nc, H, W]; H and W even.

    Args:
        outer_nc: Channels this level returns (before the skip concatenation).
        inner_nc: Channels of the down conv's output.
        input_nc: Input channels (default ``outer_nc``).
        submodule: The next-inner level (None at the innermost).
        outermost: The top level (no norm, tanh output, no skip).
        innermost: The bottom level (no submodule).
        norm: One of :data:`NORMS` (pix2pix: "batch").
        use_dropout: Dropout after a middle level's up path.
    """

    def __init__(
        self,
        outer_nc: int,
        inner_nc: int,
        input_nc: int | None = None,
        submodule: nn.Module | None = None,
        outermost: bool = False,
        innermost: bool = False,
        norm: str = "batch",
        use_dropout: bool = False,
    ) -> None:
        super().__init__()
        self.outermost = outermost
        norm_layer, bias = _norm_layer(norm), _use_bias(norm)
        input_nc = outer_nc if input_nc is None else input_nc
        downconv = nn.Conv2d(input_nc, inner_nc, 4, 2, 1, bias=bias)
        layers: list[nn.Module]
        if outermost:
            upconv = nn.ConvTranspose2d(2 * inner_nc, outer_nc, 4, 2, 1)
            layers = [downconv, _required(submodule), nn.ReLU(True), upconv, nn.Tanh()]
        elif innermost:
            upconv = nn.ConvTranspose2d(inner_nc, outer_nc, 4, 2, 1, bias=bias)
            layers = [
                nn.LeakyReLU(0.2, True),
                downconv,
                nn.ReLU(True),
                upconv,
                norm_layer(outer_nc),
            ]
        else:
            upconv = nn.ConvTranspose2d(2 * inner_nc, outer_nc, 4, 2, 1, bias=bias)
            layers = [
                nn.LeakyReLU(0.2, True),
                downconv,
                norm_layer(inner_nc),
                _required(submodule),
                nn.ReLU(True),
                upconv,
                norm_layer(outer_nc),
            ]
            if use_dropout:
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        if self.outermost:
            return self.model(x)
        # The first layer is upstream's in-place LeakyReLU, so by the time cat reads x it holds
        # LeakyReLU(x): the skip carries the activated features. Released weights were trained
        # that way; an out-of-place copy would change every output.
        return torch.cat([x, self.model(x)], 1)


def _required(submodule: nn.Module | None) -> nn.Module:
    if submodule is None:
        raise ValueError("a U-Net level other than the innermost needs a submodule")
    return submodule


class UnetGenerator(nn.Module):
    """pix2pix's U-Net generator: ``num_downs`` stride-2 levels (8 for 256x256, 7 for 128x128).

    Widths from the top: ngf, 2·ngf, 4·ngf, then 8·ngf for the remaining levels; the
    ``num_downs - 5`` middle 8·ngf levels carry the dropout. 54,413,955 parameters for unet_256.

    ``forward``: float [N, input_nc, H, W] in [-1, 1], H and W multiples of 2**num_downs ->
    float [N, output_nc, H, W] in [-1, 1]. Note upstream's test.py runs pix2pix in train mode
    (batch statistics of the test image, dropout on) unless ``--eval`` is given; call
    ``.train()`` to reproduce its outputs.

    Args:
        input_nc: Input channels.
        output_nc: Output channels.
        num_downs: Levels; the bottleneck is 1x1 at H = 2**num_downs.
        ngf: Width of the outermost level.
        norm: One of :data:`NORMS` (pix2pix: "batch").
        use_dropout: Dropout in the middle levels (pix2pix trains with it).
    """

    def __init__(
        self,
        input_nc: int = 3,
        output_nc: int = 3,
        num_downs: int = 8,
        ngf: int = 64,
        norm: str = "batch",
        use_dropout: bool = False,
    ) -> None:
        super().__init__()
        if num_downs < 5:
            raise ValueError(f"num_downs must be at least 5, got {num_downs}")
        block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, norm=norm, innermost=True)
        for _ in range(num_downs - 5):
            block = UnetSkipConnectionBlock(
                ngf * 8, ngf * 8, submodule=block, norm=norm, use_dropout=use_dropout
            )
        for mult in (4, 2, 1):
            block = UnetSkipConnectionBlock(ngf * mult, ngf * mult * 2, submodule=block, norm=norm)
        self.model = UnetSkipConnectionBlock(
            output_nc, ngf, input_nc=input_nc, submodule=block, outermost=True, norm=norm
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


class NLayerDiscriminator(nn.Module):
    """PatchGAN discriminator (``--netD basic`` is ``n_layers=3``, a 70x70 receptive field).

    ``model``: [0 conv4 s2 (bias), 1 LeakyReLU 0.2], then per layer [conv4 s2, norm, LeakyReLU]
    with widths ndf·min(2**n, 8), one more stride-1 [conv4, norm, LeakyReLU], and a stride-1
    conv4 to one channel (bias). Keys for n_layers=3: ``model.0``, ``model.2``, ``model.5``,
    ``model.8``, ``model.11`` (+ norms at 3, 6, 9 when "batch").

    ``forward``: float [N, input_nc, H, W] in [-1, 1] -> float [N, 1, H', W'] logits (no
    sigmoid; upstream's LSGAN / vanilla losses apply their own), H' = H/8 - 2 for n_layers=3.

    Args:
        input_nc: Input channels (pix2pix: input + output channels, conditional).
        ndf: Width of the first conv.
        n_layers: Stride-2 conv layers after the first.
        norm: One of :data:`NORMS` (the class default upstream is "batch"; CycleGAN passes
            "instance").
    """

    def __init__(
        self, input_nc: int = 3, ndf: int = 64, n_layers: int = 3, norm: str = "batch"
    ) -> None:
        super().__init__()
        norm_layer, bias = _norm_layer(norm), _use_bias(norm)
        layers: list[nn.Module] = [nn.Conv2d(input_nc, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        # n_layers - 1 stride-2 layers, then one stride-1 layer (also when n_layers is 0)
        for n in [*range(1, n_layers), n_layers]:
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < n_layers else 1
            layers += [
                nn.Conv2d(ndf * prev, ndf * mult, 4, stride, 1, bias=bias),
                norm_layer(ndf * mult),
                nn.LeakyReLU(0.2, True),
            ]
        layers.append(nn.Conv2d(ndf * mult, 1, 4, 1, 1))
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


def init_weights(net: nn.Module, gain: float = 0.02) -> nn.Module:
    """junyanz's default ``init_net`` ("normal"): conv and linear weights ~ N(0, gain²),
    their biases 0, BatchNorm weight ~ N(1, gain²) and bias 0. Instance norms keep their
    PyTorch defaults (upstream matches only class names containing "BatchNorm2d").

    Returns:
        ``net``, initialised in place.
    """
    for module in net.modules():
        if isinstance(module, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            nn.init.normal_(module.weight, 0.0, gain)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.normal_(module.weight, 1.0, gain)
            nn.init.zeros_(module.bias)
    return net


# variant -> (class, keyword defaults); the defaults are upstream's: CycleGAN trains resnet
# generators with instance norm and --no_dropout, pix2pix trains U-Nets with batch norm and
# dropout on.

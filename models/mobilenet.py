"""ImageNet MobileNetV2 as a four-stride feature extractor: the light backbone of our demos."""

from __future__ import annotations

import torchvision
from torch import Tensor, nn


class MobileNetV2Taps(nn.Module):
    """torchvision's MobileNetV2 ``features`` (keys ``features.N.*``, so ImageNet weights load
    as they are) returning the last map of each stride 4 / 8 / 16 / 32.

    Its BatchNorms are ordinary (trainable, with ``num_batches_tracked``): the demo models
    (DensePose, VPSNet) are trained end to end from ImageNet
    (``models.checkpoints.imagenet_mobilenet_v2``).
    """

    TAPS = (3, 6, 13, 18)
    """Indices in ``features`` whose outputs are the strides 4, 8, 16, 32 maps."""

    def __init__(self) -> None:
        super().__init__()
        self.features = torchvision.models.mobilenet_v2(weights=None).features
        self.out_channels = [24, 32, 96, 1280]

    def forward(self, x: Tensor) -> list[Tensor]:
        """[N, 3, H, W] -> [N, 24|32|96|1280, H/4|8|16|32, W/4|8|16|32]."""
        outs = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in self.TAPS:
                outs.append(x)
        return outs

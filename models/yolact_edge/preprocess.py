"""Images -> the network's input: resize to 550x550, normalise, BGR -> RGB (official)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .config import MAX_SIZE, MEAN_BGR, STD_BGR


def to_input(
    images: np.ndarray | Tensor, size: int = MAX_SIZE, device: str | torch.device = "cpu"
) -> Tensor:
    """BGR uint8 images -> normalised RGB float input.

    Args:
        images: uint8 [H, W, 3] or [N, H, W, 3], BGR.
        size: network input side (the image is stretched to it, aspect ratio ignored).
        device: where the tensor goes (the resize runs there).

    Returns:
        float32 [N, 3, size, size].
    """
    x = torch.as_tensor(images, device=device)
    if x.dim() == 3:
        x = x[None]
    x = x.permute(0, 3, 1, 2).float()
    x = F.interpolate(x, (size, size), mode="bilinear", align_corners=False)
    mean = torch.tensor(MEAN_BGR, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(STD_BGR, device=x.device).view(1, 3, 1, 1)
    return ((x - mean) / std)[:, [2, 1, 0]].contiguous()

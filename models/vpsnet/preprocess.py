"""A BGR frame -> VPSNet's input (mmdet v1 test pipeline): keep-ratio resize to fit a scale,
RGB, mean / std normalisation, zero padding to a multiple of 32."""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .config import RGB_MEAN, RGB_STD, SIZE_DIVISOR

TEST_SCALE = (2048, 1024)
"""Official test scale: the longer edge fits 2048 and the shorter 1024 (Cityscapes stays
1024 x 2048)."""


def rescaled_size(height: int, width: int, scale: tuple[int, int] = TEST_SCALE) -> tuple[int, int]:
    """mmcv ``imrescale``'s output (height, width): the largest factor keeping the long edge
    within ``max(scale)`` and the short one within ``min(scale)``, rounded half up."""
    factor = min(max(scale) / max(height, width), min(scale) / min(height, width))
    return int(height * factor + 0.5), int(width * factor + 0.5)


def resize_frame(image: np.ndarray, scale: tuple[int, int] = TEST_SCALE) -> np.ndarray:
    """A BGR uint8 frame [H, W, 3] resized (OpenCV bilinear, as mmcv's ``imresize``) to
    :func:`rescaled_size`; returned as is when that is its size."""
    height, width = rescaled_size(*image.shape[:2], scale)
    if (height, width) == image.shape[:2]:
        return image
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)


def normalise(image: np.ndarray, device: str | torch.device = "cpu") -> Tensor:
    """A BGR uint8 frame [H, W, 3] -> RGB, (x - mean) / std, zero-padded bottom / right to
    multiples of 32: [1, 3, H', W']."""
    x = torch.from_numpy(np.ascontiguousarray(image[..., ::-1])).to(device).float()
    mean = torch.tensor(RGB_MEAN, device=device)
    std = torch.tensor(RGB_STD, device=device)
    x = ((x - mean) / std).permute(2, 0, 1)[None]
    height, width = image.shape[:2]
    return F.pad(x, (0, -width % SIZE_DIVISOR, 0, -height % SIZE_DIVISOR))


def denormalise(image: Tensor) -> Tensor:
    """The inverse of :func:`normalise`'s mean / std step (the official ``denormalize``):
    ``x * std + mean`` per channel of [N, 3, H, W], RGB 0..255 (the padding becomes the mean
    colour)."""
    mean = torch.tensor(RGB_MEAN, device=image.device, dtype=image.dtype).view(1, 3, 1, 1)
    std = torch.tensor(RGB_STD, device=image.device, dtype=image.dtype).view(1, 3, 1, 1)
    return image * std + mean


def to_input(
    image: np.ndarray, scale: tuple[int, int] = TEST_SCALE, device: str | torch.device = "cpu"
) -> tuple[Tensor, tuple[int, int]]:
    """One BGR uint8 frame [H, W, 3] -> ``(input [1, 3, H', W'], (height, width) inside the
    padding)``: :func:`resize_frame` then :func:`normalise`."""
    resized = resize_frame(image, scale)
    return normalise(resized, device), resized.shape[:2]

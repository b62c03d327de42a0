"""Images -> detectron2's input: BGR 0..255 minus the pixel mean (std 1), shortest edge
resized, zero-padded to a multiple of 32."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .config import MAX_SIZE, MIN_SIZE, PIXEL_MEAN_BGR, SIZE_DIVISIBILITY


def resized_size(height: int, width: int, min_size: int = MIN_SIZE, max_size: int = MAX_SIZE):
    """detectron2's ``ResizeShortestEdge`` output size: the shortest edge to ``min_size``
    unless the longest would exceed ``max_size``, then the longest to ``max_size``.

    Returns:
        (new_height, new_width), rounded half up.
    """
    scale = min_size / min(height, width)
    new_h, new_w = height * scale, width * scale
    if max(new_h, new_w) > max_size:
        shrink = max_size / max(new_h, new_w)
        new_h, new_w = new_h * shrink, new_w * shrink
    return int(new_h + 0.5), int(new_w + 0.5)


def to_input(
    images: Sequence[np.ndarray | Tensor] | np.ndarray | Tensor,
    min_size: int = MIN_SIZE,
    max_size: int = MAX_SIZE,
    device: str | torch.device = "cpu",
) -> tuple[Tensor, list[tuple[int, int]], list[tuple[int, int]]]:
    """BGR images -> the normalised, padded batch ``DensePoseRCNN.forward`` takes.

    Resizing is bilinear with antialiasing on the float image, rounded back to 0..255 integers:
    close to (not bit-exact with) the PIL bilinear resize detectron2 applies to uint8 images.

    Args:
        images: uint8 (or 0..255 float) [H, W, 3] BGR, one or a list (sizes may differ), or
            [N, H, W, 3].
        min_size: shortest edge after resizing (detectron2 tests at 800).
        max_size: cap on the longest edge.
        device: where the batch goes (the resize runs there).

    Returns:
        ``(batch, image_sizes, original_sizes)``: float32 [N, 3, H', W'] with H', W' multiples
        of 32 (padding is 0 after mean subtraction); per image the resized (height, width)
        inside the padding and the original (height, width).
    """
    if isinstance(images, (np.ndarray, Tensor)) and images.ndim == 3:
        images = [images]
    mean = torch.tensor(PIXEL_MEAN_BGR, device=device).view(3, 1, 1)
    resized, sizes, originals = [], [], []
    for image in images:
        x = torch.as_tensor(np.asarray(image) if not isinstance(image, Tensor) else image)
        x = x.to(device).permute(2, 0, 1).float()
        height, width = x.shape[1:]
        size = resized_size(height, width, min_size, max_size)
        if size != (height, width):
            x = (
                F.interpolate(
                    x[None],
                    size,
                    mode="bilinear",
                    align_corners=False,
                    antialias=size[0] < height,
                )[0]
                .round()
                .clamp(0, 255)
            )
        resized.append(x - mean)
        sizes.append(size)
        originals.append((int(height), int(width)))
    pad_h = -(-max(s[0] for s in sizes) // SIZE_DIVISIBILITY) * SIZE_DIVISIBILITY
    pad_w = -(-max(s[1] for s in sizes) // SIZE_DIVISIBILITY) * SIZE_DIVISIBILITY
    batch = torch.zeros(len(resized), 3, pad_h, pad_w, device=device)
    for i, x in enumerate(resized):
        batch[i, :, : x.shape[1], : x.shape[2]] = x
    return batch, sizes, originals

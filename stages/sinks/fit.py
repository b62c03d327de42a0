"""Fitting frames to an encoder: yuv420p wants even sizes, and a stream keeps the
size of its first frame."""

from __future__ import annotations

import cv2
import numpy as np


def even_size(image: np.ndarray) -> tuple[int, int]:
    """(width, height) of ``image`` rounded down to even numbers."""
    height, width = image.shape[:2]
    return width - width % 2, height - height % 2


def fit(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` at ``size`` (width, height): cropped when it is at most one pixel
    larger (an odd size made even), otherwise resized."""
    width, height = size
    if image.shape[1] == width and image.shape[0] == height:
        return image
    if 0 <= image.shape[1] - width <= 1 and 0 <= image.shape[0] - height <= 1:
        return image[:height, :width]
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)

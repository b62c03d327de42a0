"""YolactEdge's anchors, exactly as official (square anchors included)."""

from __future__ import annotations

import math
from functools import cache

import torch
from torch import Tensor

from .config import MAX_SIZE

SCALES = (24, 48, 96, 192, 384)
"""Anchor size in pixels (of the 550 input) for P3..P7."""
ASPECT_RATIOS = (1.0, 0.5, 2.0)


def level_sizes(height: int, width: int) -> tuple[tuple[int, int], ...]:
    """Feature-map sizes of P3..P7 for an input of ``height`` x ``width``.

    Every downsampling step (stride-2 conv or pool with padding) maps ``n`` to ``ceil(n / 2)``;
    P3 is three steps down. 550 gives 69, 35, 18, 9, 5.
    """
    sizes = []
    h, w = height, width
    for step in range(7):
        h, w = -(-h // 2), -(-w // 2)
        if step >= 2:
            sizes.append((h, w))
    return tuple(sizes)


@cache
def _priors(sizes: tuple[tuple[int, int], ...]) -> Tensor:
    levels = []
    for (h, w), scale in zip(sizes, SCALES, strict=True):
        ys, xs = torch.meshgrid(
            (torch.arange(h, dtype=torch.float64) + 0.5) / h,
            (torch.arange(w, dtype=torch.float64) + 0.5) / w,
            indexing="ij",
        )
        # Official: w = scale * sqrt(ar) / 550 and, through use_square_anchors (a bug kept for
        # compatibility with the released weights), h = w.
        sides = torch.tensor([scale * math.sqrt(ar) / MAX_SIZE for ar in ASPECT_RATIOS])
        centre = torch.stack([xs, ys], -1)[:, :, None, :].expand(h, w, len(sides), 2)
        side = sides.view(1, 1, -1, 1).expand(h, w, len(sides), 2)
        levels.append(torch.cat([centre, side], -1).reshape(-1, 4))
    return torch.cat(levels).float()


def priors(
    height: int = MAX_SIZE, width: int = MAX_SIZE, device: torch.device | str = "cpu"
) -> Tensor:
    """Anchors for an input of ``height`` x ``width``.

    Returns:
        float32 [P, 4] ``(cx, cy, w, h)`` relative to the image; row-major over each level's
        grid, 3 anchors per location, levels P3..P7. 19,248 at 550x550.
    """
    return _priors(level_sizes(height, width)).to(device)

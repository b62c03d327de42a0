"""Anchor priors of upstream ``layers/functions/prior_box.py`` (cfg_mnet = cfg_re50).

Priors depend only on the network input size, so they are computed once per
(H, W, device) with tensor ops and cached (upstream rebuilds them per image in a
Python loop, which costs more than the forward pass, biubug6#1 and #3).
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
from torch import Tensor

__all__ = ["MIN_SIZES", "STEPS", "VARIANCES", "feature_sizes", "num_priors", "priors"]

STEPS: tuple[int, ...] = (8, 16, 32)
MIN_SIZES: tuple[tuple[int, ...], ...] = ((16, 32), (64, 128), (256, 512))
VARIANCES: tuple[float, float] = (0.1, 0.2)


def feature_sizes(height: int, width: int) -> list[tuple[int, int]]:
    """Head map sizes [(ceil(H/s), ceil(W/s)) for s in STEPS]."""
    return [(math.ceil(height / s), math.ceil(width / s)) for s in STEPS]


def num_priors(height: int, width: int) -> int:
    """Number of priors P for an input of ``height`` x ``width``."""
    return sum(
        fh * fw * len(m)
        for (fh, fw), m in zip(feature_sizes(height, width), MIN_SIZES, strict=True)
    )


@lru_cache(maxsize=64)
def _priors(height: int, width: int, device: torch.device) -> Tensor:
    levels = []
    for (fh, fw), step, sizes in zip(feature_sizes(height, width), STEPS, MIN_SIZES, strict=True):
        # float64 with upstream's operation order ((j + 0.5) * step / W), then float32:
        # bit-identical to upstream's Python-float loop.
        cx = (torch.arange(fw, dtype=torch.float64) + 0.5) * step / width
        cy = (torch.arange(fh, dtype=torch.float64) + 0.5) * step / height
        sw = torch.tensor([m / width for m in sizes], dtype=torch.float64)
        sh = torch.tensor([m / height for m in sizes], dtype=torch.float64)
        a = len(sizes)
        shape = (fh, fw, a)
        level = torch.stack(
            [
                cx.view(1, fw, 1).expand(shape),
                cy.view(fh, 1, 1).expand(shape),
                sw.view(1, 1, a).expand(shape),
                sh.view(1, 1, a).expand(shape),
            ],
            dim=-1,
        )
        levels.append(level.reshape(-1, 4))
    return torch.cat(levels).to(device=device, dtype=torch.float32)


def priors(height: int, width: int, device: torch.device | str | None = None) -> Tensor:
    """Priors for an ``height`` x ``width`` network input, cached per (H, W, device).

    Args:
        height: Network input height in pixels.
        width: Network input width in pixels.
        device: Where the tensor lives (default CPU).

    Returns:
        float32 [P, 4] (cx, cy, w, h) normalised by the input width/height, ordered
        (level, row, col, anchor) exactly like upstream's PriorBox with clip=False.
        The tensor is shared by all callers: do not modify it in place.
    """
    return _priors(int(height), int(width), torch.device(device or "cpu"))

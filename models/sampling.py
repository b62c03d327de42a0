"""Sampling of training anchors / RoIs, shared by the two-stage detectors' losses."""

from __future__ import annotations

import torch
from torch import Tensor


def sample_labels(labels: Tensor, total: int, fg_fraction: float) -> tuple[Tensor, Tensor]:
    """Random foreground (label 1) and background (label 0) indices: at most
    ``total * fg_fraction`` foreground, the rest background (others, e.g. -1, are ignored).

    Args:
        labels: int64 [N] with 1, 0 or -1.

    Returns:
        ``(foreground indices, background indices)``.
    """
    fg = torch.nonzero(labels == 1).squeeze(1)
    bg = torch.nonzero(labels == 0).squeeze(1)
    n_fg = min(len(fg), int(total * fg_fraction))
    n_bg = min(len(bg), total - n_fg)
    fg = fg[torch.randperm(len(fg), device=labels.device)[:n_fg]]
    bg = bg[torch.randperm(len(bg), device=labels.device)[:n_bg]]
    return fg, bg

"""FlowNet2's seeded inputs, shared by the golden recorder (tools/golden_flownet2.py, on the
official modules) and the tests (on our port); both seed the weights with
``seeded_vpsnet.seeded_state_dict(model, SEED)``.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

DATA = Path(__file__).resolve().parents[1] / "data" / "vpsnet"
GOLDEN = DATA / "flownet2_golden.pt"
MANIFEST = DATA / "flownet2.json"

# The official mean / std (PanopticFuseTrack.__init__, as img_norm_cfg).
MEAN = (123.675, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)

SEED = 5
FORWARD_SIZE = (64, 64)
COMPUTE_FLOW_SIZE = (200, 400)
SHIFT = (2, -3)  # (dy, dx): the reference is the current frame moved by this (plus noise)


def flow_frames(size: tuple[int, int], seed: int = 0) -> tuple[Tensor, Tensor]:
    """(current, reference) [1, 3, H, W] RGB 0..255 (whole numbers, as decoded frames): smooth
    colour blobs plus fine texture; the reference is the current frame rolled by
    :data:`SHIFT` with a little noise."""
    generator = torch.Generator().manual_seed(seed)
    height, width = size
    coarse = torch.rand(1, 3, max(height // 16, 2), max(width // 16, 2), generator=generator)
    smooth = F.interpolate(coarse, size=size, mode="bicubic", align_corners=False)
    texture = torch.rand(1, 3, height, width, generator=generator)
    current = (200 * smooth + 55 * texture).clamp(0, 255).round()
    moved = torch.roll(current, shifts=SHIFT, dims=(2, 3))
    noise = 4 * torch.randn(moved.shape, generator=generator)
    reference = (moved + noise).clamp(0, 255).round()
    return current, reference


def normalised(rgb: Tensor) -> Tensor:
    """mmdet's Normalize of RGB 0..255 [N, 3, H, W] (the official ``compute_flow`` input)."""
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (rgb - mean) / std

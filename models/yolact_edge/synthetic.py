"""Synthetic YolactEdge head outputs, for timing and testing the post-processing without a
trained network (random weights give no confident detection at all)."""

from __future__ import annotations

import torch


def peaky_head_outputs(num_priors: int, num_classes: int) -> dict[str, torch.Tensor]:
    """Head outputs, as the network's after their softmax / tanh / ReLU, holding confident,
    overlapping detections: for timing or testing decoding, Fast NMS and mask assembly.

    About 3% of the (prior, class) logits are raised by 6, so every class has many confident,
    overlapping candidates for the NMS to sort out. Deterministic (one fixed seed):
    tests/data/yolact_edge/golden.pt holds them with the official code's detections on them.

    Args:
        num_priors: P, the number of priors (``len(priors())``).
        num_classes: C, background included (81 for COCO).

    Returns:
        ``loc`` float [1, P, 4] box deltas, ``conf`` float [1, P, C] class probabilities,
        ``mask`` float [1, P, 32] mask coefficients in (-1, 1), ``proto`` float [1, 16, 24, 32]
        prototypes (height, width, 32), >= 0.
    """
    generator = torch.Generator().manual_seed(11)
    logits = torch.randn(1, num_priors, num_classes, generator=generator)
    logits[:, :, 1:] += 6 * (torch.rand(1, num_priors, num_classes - 1, generator=generator) > 0.97)
    return {
        "loc": 0.5 * torch.randn(1, num_priors, 4, generator=generator),
        "conf": torch.softmax(logits, -1),
        "mask": torch.tanh(torch.randn(1, num_priors, 32, generator=generator)),
        "proto": torch.relu(torch.randn(1, 16, 24, 32, generator=generator)),
    }

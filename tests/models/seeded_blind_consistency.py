"""Seeded weights of the blind-consistency network, shared by the golden recorder
(tools/golden_blind_consistency.py, on the official TransformNet) and the tests (on our port).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def seeded_state_dict(model: nn.Module, seed: int) -> dict[str, Tensor]:
    """Deterministic, well-scaled weights for every key of ``model`` (in state_dict order).

    Conv weights ~ N(0, 1 / fan_in) (LeakyReLU and five residual sums stay O(1), so tanh and
    the LSTM gates do not saturate); biases and running means 0.1 N; norm weights and running
    variances 1 + 0.1 N (|N| for variances); counters 0. The official network and ours have the
    same keys in the same order, so the same seed gives both the same weights.
    """
    generator = torch.Generator().manual_seed(seed)
    out = {}
    for key, tensor in model.state_dict().items():
        shape = tuple(tensor.shape)
        if key.endswith("num_batches_tracked"):
            out[key] = torch.zeros((), dtype=tensor.dtype)
            continue
        noise = torch.randn(shape, generator=generator)
        if key.endswith("running_var"):
            value = 1 + 0.1 * noise.abs()
        elif tensor.dim() == 1 and key.endswith("norm_layer.weight"):
            value = 1 + 0.1 * noise
        elif tensor.dim() == 1:  # conv bias, norm bias, running mean
            value = 0.1 * noise
        else:
            value = noise / math.sqrt(math.prod(shape[1:]))
        out[key] = value.to(tensor.dtype)
    return out

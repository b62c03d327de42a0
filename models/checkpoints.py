"""Checkpoint helpers shared by the model families: what a state_dict lacks or has too much
of, and compact storage for the demo weights we train and commit.

A trained state_dict in float32 is too big to commit (YolactEdge MobileNetV2 with its video
modules: 13 M parameters, 52 MB). The compact form keeps every key, shape and the state_dict's
order, and stores each weight tensor of two or more dimensions as int8 with one float32 scale
per output channel (symmetric, round to nearest), everything else (biases, BatchNorm) as
float16, integers as they are: about a quarter of the size. ``expand`` gives back a float32
state_dict that loads strictly into the model; the accuracy we report for such weights is
always measured after this round trip.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

FORMAT = "framegraph-compact-v1"


def mismatches(
    expected: Mapping[str, Tensor], state_dict: Mapping[str, Tensor]
) -> tuple[list[str], list[str], list[tuple[str, tuple[int, ...], tuple[int, ...]]]]:
    """Why ``state_dict`` would not load strictly into a model whose state_dict is ``expected``.

    Returns:
        ``(missing keys, unexpected keys, [(key, checkpoint shape, model shape)])``, each in
        the model's (or the checkpoint's) key order; all empty when it fits.
    """
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    shapes = [
        (k, tuple(state_dict[k].shape), tuple(v.shape))
        for k, v in expected.items()
        if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    return missing, unexpected, shapes


def compact(state_dict: Mapping[str, Tensor]) -> dict:
    """The compact form of a state_dict (see the module docstring)."""
    tensors: dict[str, dict] = {}
    for key, value in state_dict.items():
        value = value.detach().cpu()
        if not value.is_floating_point():
            tensors[key] = {"raw": value}
        elif value.dim() >= 2:
            flat = value.float().reshape(len(value), -1)
            scale = flat.abs().amax(dim=1).clamp(min=1e-12) / 127
            quantised = torch.round(flat / scale[:, None]).clamp(-127, 127).to(torch.int8)
            tensors[key] = {"int8": quantised.reshape(value.shape), "scale": scale}
        else:
            tensors[key] = {"half": value.half()}
    return {"format": FORMAT, "tensors": tensors}


def is_compact(obj: object) -> bool:
    """True for what :func:`compact` returns."""
    return isinstance(obj, Mapping) and obj.get("format") == FORMAT


def expand(obj: Mapping) -> dict[str, Tensor]:
    """The float32 state_dict of a compact checkpoint, keys in their original order."""
    out: dict[str, Tensor] = {}
    for key, entry in obj["tensors"].items():
        if "raw" in entry:
            out[key] = entry["raw"]
        elif "int8" in entry:
            q = entry["int8"]
            out[key] = (q.reshape(len(q), -1).float() * entry["scale"][:, None]).reshape(q.shape)
        else:
            out[key] = entry["half"].float()
    return out

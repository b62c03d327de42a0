"""Strict loading of YolactEdge (and YOLACT) checkpoints.

The official loader is lenient: unknown keys, missing keys and mismatched shapes only warn, and
mismatched tensors silently stay at their random initial values (yolact_edge #43). Here every
key must match after the documented remaps, or loading fails naming the first bad keys. The
variant comes from the caller, never from the file name.

Documented remaps (the official ``load_weights`` applies the same ones):
- YOLACT checkpoints: ``fpn.lat_layers.*`` -> ``fpn_phase_1.lat_layers.*``; every other
  ``fpn.*`` -> ``fpn_phase_2.*`` (``fpn.downsample_layers.N`` with N >= 2 dropped).
- Old-style ``backbone.layerN.*`` keys (not ``backbone.layers.*``) are dropped.
- A ``module.`` prefix (DataParallel) is stripped.

Our own committed demo weights are stored compactly (``models.checkpoints``) and expanded here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from torch import Tensor, nn

from models.checkpoints import (  # noqa: F401  (weights_meta: re-exported)
    expand,
    is_compact,
    load_strict,
    read_checkpoint,
    weights_meta,
)


def remap(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Applies the documented key remaps (see the module docstring)."""
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        key = key.removeprefix("module.")
        if key.startswith("backbone.layer") and not key.startswith("backbone.layers"):
            continue
        if key.startswith("fpn."):
            match = re.match(r"fpn\.downsample_layers\.(\d+)\.", key)
            if match and int(match.group(1)) >= 2:
                continue
            phase = "fpn_phase_1" if key.startswith("fpn.lat_layers") else "fpn_phase_2"
            key = phase + key[len("fpn") :]
        out[key] = value
    return out


def load_weights(model: nn.Module, weights: str | os.PathLike | Mapping[str, Tensor]) -> nn.Module:
    """Loads a checkpoint (path or state_dict) into ``model`` with ``strict=True``.

    Raises:
        ValueError: a key is missing, unexpected or of another shape (the message names them).
        FileNotFoundError: the path does not exist.
    """
    if isinstance(weights, Mapping):
        state_dict, name = weights, "state_dict"
    else:
        name = os.fspath(weights)
        state_dict = read_checkpoint(name)
        if is_compact(state_dict):
            state_dict = expand(state_dict)
        if not isinstance(state_dict, Mapping):
            raise ValueError(f"{name} is not a state_dict")
    return load_strict(model, remap(state_dict), f"{name} does not fit {model.config.name}")  # type: ignore[attr-defined]

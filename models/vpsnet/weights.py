"""Strict loading of VPSNet checkpoints.

The released files (``cityscapes_vps_fusetrack_latest.pth``, ``cityscapes_fuse_latest.pth``,
``viper_fuse_latest.pth``) are mmcv checkpoints: ``{"meta": ..., "state_dict": ...,
"optimizer": ...}``. Documented remaps, and nothing else:

- the ``state_dict`` entry is used (a bare state_dict loads too); ``module.`` is stripped;
- ``flownet2.*`` (the official model registers NVIDIA's FlowNet2, ~162 M parameters, as a
  submodule) is set aside: VPSNet loads without it, and :func:`load_flownet2` loads it (prefix
  stripped) into a separate :class:`~models.vpsnet.flownet2.FlowNet2` when the flow is to come
  from FlowNet2;
- BatchNorm ``num_batches_tracked`` counters are added when an old file lacks them.

Every other key must match in name and shape, or loading fails in one line naming the keys.
:func:`load_flownet2` also takes NVIDIA's own ``FlowNet2_checkpoint.pth.tar`` (its tensors under
``state_dict``, keys without the ``flownet2.`` prefix).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from models.checkpoints import expand, is_compact, load_strict, read_checkpoint

FLOWNET2_PREFIX = "flownet2."


def _tensors(obj: object, name: str) -> dict[str, Tensor]:
    """The state_dict of a loaded checkpoint (mmcv dict, bare state_dict or compact),
    ``module.`` stripped."""
    if is_compact(obj):
        obj = expand(obj)
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ValueError(f"{name} holds no state_dict of tensors")
    return {key.removeprefix("module."): value for key, value in obj.items()}


def official_state_dict(obj: object, name: str = "checkpoint") -> dict[str, Tensor]:
    """The model's tensors from a loaded checkpoint (mmcv dict, bare state_dict or compact),
    ``module.`` stripped, ``flownet2.*`` dropped."""
    return {k: v for k, v in _tensors(obj, name).items() if not k.startswith(FLOWNET2_PREFIX)}


def _flownet2_part(tensors: Mapping[str, Tensor]) -> dict[str, Tensor]:
    return {
        key.removeprefix(FLOWNET2_PREFIX): value
        for key, value in tensors.items()
        if key.startswith(FLOWNET2_PREFIX)
    }


def flownet2_state_dict(obj: object, name: str = "checkpoint") -> dict[str, Tensor]:
    """The ``flownet2.*`` tensors of a loaded official VPSNet checkpoint, prefix (and
    ``module.``) stripped; empty when it has none."""
    return _flownet2_part(_tensors(obj, name))


def _read(weights: str | os.PathLike | Mapping, name: str | None) -> tuple[object, str]:
    if isinstance(weights, Mapping):
        return weights, name or "state_dict"
    path = os.fspath(weights)
    return read_checkpoint(path), name or path


def load_weights(
    model: nn.Module, weights: str | os.PathLike | Mapping, name: str | None = None
) -> nn.Module:
    """Loads a checkpoint into ``model`` (a ``VPSNet`` of the file's variant) strictly.

    Args:
        weights: a path, or a checkpoint already loaded (then ``name`` names it in errors).

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: not a checkpoint, or keys that do not fit (one line naming them).
    """
    obj, name = _read(weights, name)
    state = official_state_dict(obj, name)
    expected = model.state_dict()
    for key in expected:
        if key.endswith(".num_batches_tracked") and key not in state:
            state[key] = torch.zeros((), dtype=torch.long)
    return load_strict(model, state, f"{name} does not fit VPSNet {model.config.name}")


def load_flownet2(
    model: nn.Module, weights: str | os.PathLike | Mapping, name: str | None = None
) -> nn.Module:
    """Loads FlowNet2 weights into ``model`` (a ``FlowNet2``) strictly: the ``flownet2.*`` part
    of an official VPSNet checkpoint (prefix stripped) or, when no key has that prefix, the
    whole state_dict (NVIDIA's ``FlowNet2_checkpoint.pth.tar``).

    Args:
        weights: a path, or a checkpoint already loaded (then ``name`` names it in errors).

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: not a checkpoint, or keys that do not fit (one line naming them).
    """
    obj, name = _read(weights, name)
    tensors = _tensors(obj, name)
    state = _flownet2_part(tensors) or tensors
    return load_strict(model, state, f"{name} does not fit FlowNet2")

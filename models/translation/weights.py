"""Strict loading of translation checkpoints: fast-neural-style ``.pth``, junyanz
``latest_net_G*.pth``, and vintagify's packaged CycleGAN generator.

Upstream loaders each delete keys before ``load_state_dict``; the same deletions happen here,
and then every key must match (``strict=True``) or loading fails naming the first bad keys.
The architecture (variant, norm, dropout) comes from the caller's model, never from the file.

Documented clean-ups (``remap``):
- A ``module.`` prefix (a net saved inside DataParallel) is stripped. junyanz saves
  ``net.module.state_dict()``, so its files have none, but copies re-saved by other tools do.
- Legacy instance-norm buffers are dropped: ``running_mean``, ``running_var`` and
  ``num_batches_tracked`` whose owner in *our model* is an InstanceNorm2d that keeps no running
  statistics. PyTorch < 0.4 saved running stats for every InstanceNorm (and 0.4.0 still tracked
  them by default), so the released fast-neural-style models (``candy.pth``, ...) carry
  ``inN.running_mean/var`` (pytorch/examples#367; upstream's ``stylize`` deletes keys matching
  ``in\\d+\\.running_(mean|var)$``) and the pretrained CycleGAN generators carry them plus
  ``num_batches_tracked`` at ``model.2``, ``conv_block.2/6``, ... (junyanz#318; upstream's
  ``__patch_instance_norm_state_dict`` deletes them). Deciding by the model's module type,
  not by a name pattern, gives exactly those deletions on both layouts and never drops
  BatchNorm statistics, which are real weights.
- BatchNorm ``num_batches_tracked`` counters missing from a file written by PyTorch < 0.4.1
  (which had no such buffer) are filled with 0, as PyTorch's own BatchNorm loader does for
  such files; the counter only matters for momentum-free training.

Nothing else is renamed for official files. vintagify names its residual Sequential ``block``
instead of junyanz's ``conv_block``; ``load_vintagify`` renames that and nothing else.

A dropout / no-dropout mismatch is the classic failure (junyanz#461, #671, #296, #1579): dropout
is a layer inside ``conv_block``, so the second conv is ``conv_block.6`` instead of
``conv_block.5``. The error names those keys and says which setting the file was trained with.
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from models.checkpoints import load_strict, mismatches, read_checkpoint

from .generators import ResnetGenerator

__all__ = [
    "VINTAGIFY_FILE",
    "load_vintagify",
    "load_weights",
    "remap",
    "vintagify_checkpoint",
]

VINTAGIFY_FILE = "resources/G_A2B_epoch33.pth"  # inside the vintagify package folder

_LEGACY_NORM_BUFFERS = {"running_mean", "running_var", "num_batches_tracked"}


def remap(state_dict: Mapping[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """The documented clean-ups (see the module docstring), in the checkpoint's key order.

    Args:
        state_dict: Checkpoint tensors in the official layout.
        model: The module the checkpoint is meant for (decides which norm buffers are legacy).

    Returns:
        A new dict; tensors are shared, not copied.
    """
    modules = dict(model.named_modules())
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        key = key.removeprefix("module.")
        owner, _, name = key.rpartition(".")
        module = modules.get(owner)
        if (
            name in _LEGACY_NORM_BUFFERS
            and isinstance(module, nn.InstanceNorm2d)
            and not module.track_running_stats
        ):
            continue
        out[key] = value
    for key, value in model.state_dict().items():
        stem = key.removesuffix("num_batches_tracked")
        if stem != key and key not in out and f"{stem}running_mean" in out:
            out[key] = torch.zeros_like(value)
    return out


def _dropout_hint(missing: list[str], unexpected: list[str]) -> str:
    # Without dropout a ResnetBlock's second conv is conv_block.5; with it, conv_block.6.
    def has(keys: list[str], index: int) -> bool:
        return any(f".conv_block.{index}.weight" in k for k in keys)

    if has(missing, 5) and has(unexpected, 6):
        return " (the file was trained with dropout: build the model with use_dropout=True)"
    if has(missing, 6) and has(unexpected, 5):
        return " (the file was trained without dropout: build the model with use_dropout=False)"
    return ""


def _load_strict(model: nn.Module, state_dict: Mapping[str, Tensor], name: str) -> nn.Module:
    """Clean up, check every key and shape, then ``load_state_dict(strict=True)``.

    Raises:
        ValueError: one line naming the first missing, unexpected and mis-shaped keys.
    """
    bad = [k for k, v in state_dict.items() if not isinstance(v, Tensor)]
    if bad:
        raise ValueError(
            f"{name} is not a plain state_dict: entry {bad[0]!r} is a "
            f"{type(state_dict[bad[0]]).__name__}, not a tensor"
        )
    state_dict = remap(state_dict, model)
    missing, unexpected, _ = mismatches(model.state_dict(), state_dict)
    hint = _dropout_hint(missing, unexpected)
    return load_strict(model, state_dict, f"{name} does not fit {type(model).__name__}", hint)


def _read(path: str | os.PathLike) -> tuple[Mapping[str, Tensor], str]:
    name = os.fspath(path)
    obj = read_checkpoint(name)
    if not isinstance(obj, Mapping):
        raise ValueError(f"{name} is not a state_dict (it holds a {type(obj).__name__})")
    return obj, name


def load_weights(model: nn.Module, weights: str | os.PathLike | Mapping[str, Tensor]) -> nn.Module:
    """Loads an official checkpoint (path or state_dict) into ``model`` with ``strict=True``.

    Args:
        model: From ``build_model``, with the file's architecture (variant, norm, dropout).
        weights: A fast-neural-style ``.pth`` (``candy.pth``, ...), a junyanz
            ``<epoch>_net_G*.pth`` / pretrained ``<name>.pth``, anything saved from our
            modules' ``state_dict()``, or such a state_dict itself.

    Returns:
        ``model`` with the weights loaded (train / eval mode unchanged).

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: the file is not a PyTorch state_dict, or it does not fit ``model`` (one
            line naming the first missing, unexpected and mis-shaped keys).
    """
    if isinstance(weights, Mapping):
        return _load_strict(model, weights, "state_dict")
    state_dict, name = _read(weights)
    return _load_strict(model, state_dict, name)


def vintagify_checkpoint() -> Path:
    """``vintagify/resources/G_A2B_epoch33.pth`` of the installed vintagify package.

    Located with ``importlib.util.find_spec``, which runs nothing of the package (its
    ``__init__`` imports matplotlib, which we do not install).

    Raises:
        FileNotFoundError: vintagify is not installed, or its file is missing.
    """
    spec = importlib.util.find_spec("vintagify")
    roots = list(spec.submodule_search_locations or []) if spec else []
    for root in roots:
        path = Path(root) / VINTAGIFY_FILE
        if path.is_file():
            return path
    raise FileNotFoundError(
        "vintagify's CycleGAN weights come from the vintagify package "
        "(pip install --no-deps -r requirements-nodeps.txt)"
        + (f"; {VINTAGIFY_FILE} is missing under {roots[0]}" if roots else "")
    )


def load_vintagify(device: str | torch.device = "cpu") -> ResnetGenerator:
    """vintagify 0.1.2's modern -> vintage CycleGAN generator (MIT), in eval mode.

    The file is a junyanz ``resnet_9blocks`` generator with affine instance norms (94 tensors,
    11,388,675 parameters); its residual Sequentials are named ``block``, renamed here to
    ``conv_block``. Only the A -> B direction is shipped. The file holds CUDA tensors; it is
    read onto the CPU first, so it loads on machines without a GPU.

    ``forward``: float [N, 3, H, W] RGB in [-1, 1], H and W multiples of 4 -> same shape in
    [-1, 1].

    Args:
        device: Where to put the model.

    Raises:
        FileNotFoundError: vintagify is not installed.
        ValueError: the packaged file does not fit (another vintagify version).
    """
    state_dict, name = _read(vintagify_checkpoint())
    renamed = {re.sub(r"\.block\.", ".conv_block.", k): v for k, v in state_dict.items()}
    model = ResnetGenerator(norm="instance_affine", use_dropout=False, n_blocks=9)
    _load_strict(model, renamed, name)
    return model.to(device).eval()

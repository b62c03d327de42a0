"""Strict loading of DensePose R-CNN checkpoints: detectron2 model-zoo ``.pkl`` files and
PyTorch ``.pth`` state_dicts.

A model-zoo ``model_final_*.pkl`` is a pickle (latin1) of ``{"model": {name: numpy array},
"__author__": ...}`` holding detectron2's own parameter names, so it loads with no renaming
(detectron2 itself applies name heuristics only to Caffe2 / Detectron1 pickles, which are a
different model and are refused here). The pickle is read with an unpickler that can build
nothing but numpy arrays, dtypes and dicts: a file asking for anything else fails.

Every key must match, or loading fails in one line naming the first bad keys. Notes:
- FrozenBN holds weight, bias, running_mean and running_var (all buffers) and needs no
  ``num_batches_tracked``; a file carrying such counters for FrozenBN layers (e.g. saved
  from a BatchNorm model) has them dropped, since FrozenBN has nothing to put them in.
  The MobileNetV2 variant has real BatchNorms and needs its counters.
- ``pixel_mean`` / ``pixel_std`` (persistent buffers in older detectron2, non-persistent now)
  are dropped when they equal our constants and refused otherwise (the model would be fed
  wrongly normalised input).
- A detectron2 training checkpoint (``{"model": state_dict, "optimizer": ..., ...}``, .pth)
  loads its ``model`` entry; a ``module.`` prefix (DataParallel) is stripped.
"""

from __future__ import annotations

import importlib
import os
import pickle
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from models.checkpoints import expand, is_compact, load_strict, read_checkpoint

from .config import PIXEL_MEAN_BGR

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("collections", "OrderedDict"),
    ("_codecs", "encode"),  # how Python 3 writes bytes in protocol-2 pickles
}


class _ArrayUnpickler(pickle.Unpickler):
    """Builds numpy arrays, dtypes and containers only; any other global is refused."""

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refused global {module}.{name}")
        if module.startswith("numpy.core") and int(np.__version__.split(".")[0]) >= 2:
            module = "numpy._core" + module[len("numpy.core") :]  # numpy 1 pickles under 2
        return getattr(importlib.import_module(module), name)


def read_model_zoo_pkl(path: str | os.PathLike) -> dict[str, Tensor]:
    """The state_dict in a detectron2 model-zoo ``.pkl``, arrays converted to tensors.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a pickle of arrays, or not in the detectron2 model-zoo format.
    """
    name = os.fspath(path)
    if not Path(name).is_file():
        raise FileNotFoundError(f"weights file not found: {name}")
    try:
        with open(name, "rb") as f:
            data = _ArrayUnpickler(f, encoding="latin1").load()
    except Exception as error:  # pickle raises many kinds on foreign bytes
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ValueError(f"{name} is not a pickle of numpy arrays ({first[:120]})") from None
    if not (isinstance(data, Mapping) and "model" in data and "__author__" in data):
        kind = "a Caffe2 / Detectron1 pickle" if isinstance(data, Mapping) else "not a dict"
        raise ValueError(
            f"{name} is not a detectron2 model-zoo pkl ({kind}; expected 'model' and "
            "'__author__' entries)"
        )
    return _to_tensors(data["model"], name)


def _to_tensors(state: object, name: str) -> dict[str, Tensor]:
    if not isinstance(state, Mapping):
        raise ValueError(f"{name} holds no state_dict")
    out = {}
    for key, value in state.items():
        if isinstance(value, np.ndarray):
            value = torch.from_numpy(np.array(value))  # a writable, contiguous copy
        if not isinstance(value, Tensor):
            raise ValueError(f"{name}: {key} is a {type(value).__name__}, not an array")
        out[key] = value
    return out


def _remap(state: Mapping[str, Tensor], model: nn.Module, name: str) -> dict[str, Tensor]:
    """Applies the documented drops (see the module docstring)."""
    expected = model.state_dict()
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        if key in ("pixel_mean", "pixel_std"):
            want = torch.tensor(PIXEL_MEAN_BGR if key == "pixel_mean" else (1.0, 1.0, 1.0))
            if not torch.allclose(value.flatten().double(), want.double(), atol=1e-3):
                values = [round(float(v), 3) for v in value.flatten()]
                raise ValueError(f"{name}: {key} {values} differs from ours {want.tolist()}")
            continue
        if key.endswith(".num_batches_tracked") and key not in expected:
            continue
        out[key] = value
    return out


def load_weights(model: nn.Module, weights: str | os.PathLike | Mapping) -> nn.Module:
    """Loads a checkpoint into ``model`` with ``strict=True``.

    Args:
        model: a ``DensePoseRCNN`` of the checkpoint's variant (the variant comes from the
            caller, never from the file name).
        weights: a model-zoo ``.pkl`` path, a ``.pth`` path (state_dict, detectron2 training
            checkpoint, or our compact format), or a state_dict of tensors / numpy arrays.

    Returns:
        ``model``.

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: an unreadable or foreign file, or keys that do not fit (the one-line
            message names the first missing, unexpected and mis-shaped keys).
    """
    if isinstance(weights, Mapping):
        name, state = "state_dict", weights
    else:
        name = os.fspath(weights)
        if name.endswith(".pkl"):
            state = read_model_zoo_pkl(name)
        else:
            state = read_checkpoint(name)
            if is_compact(state):
                state = expand(state)
    if isinstance(state, Mapping) and isinstance(state.get("model"), Mapping):
        state = state["model"]  # a detectron2 training checkpoint
    state = _remap(_to_tensors(state, name), model, name)
    variant = getattr(getattr(model, "config", None), "name", type(model).__name__)
    return load_strict(model, state, f"{name} does not fit {variant}")

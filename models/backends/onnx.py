"""ONNX export of any model family, cached by a hash of its code, weights and graph interface."""

from __future__ import annotations

import copy
import hashlib
import os
import sys
import types
import warnings
from pathlib import Path

import torch
from torch import nn

from models.backends.base import BackendError, GraphSpec
from models.cache import cache_folder, cached_entry, scratch_file


def export_onnx(model: nn.Module, path: str | os.PathLike, spec: GraphSpec) -> None:
    """Exports ``model`` (eval mode, its current device, float32 example inputs) to ONNX.

    Uses the TorchScript exporter: it needs no onnxscript and keeps stable node names. Every
    submodule's train/eval mode is restored afterwards.
    """
    device = next(model.parameters()).device
    example = tuple(torch.zeros(shape, device=device) for shape in spec.example)
    # Restore every submodule's own mode afterwards: a wrapper (fresh, so in training mode)
    # around a model in eval mode must not leave that model in training mode.
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        with warnings.catch_warnings():
            # torch >= 2.9 calls the TorchScript exporter legacy; it is the one that exports
            # these models without extra packages.
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            # Shapes read while tracing become constants: intended, the specs fix the shapes.
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            # Instance norm always normalises by the input's own statistics: "train=True" is
            # its eval behaviour, not a mistake.
            warnings.filterwarnings("ignore", message=".*'instance_norm' is set to train=True")
            warnings.filterwarnings("ignore", message="Constant folding - Only steps=1")
            torch.onnx.export(
                model,
                example,
                os.fspath(path),
                dynamo=False,
                opset_version=spec.opset,
                input_names=list(spec.inputs),
                output_names=list(spec.outputs),
                dynamic_axes=spec.dynamic or None,
                do_constant_folding=True,
            )
    finally:
        for module, training in modes.items():
            module.training = training


MODELS = Path(__file__).resolve().parents[1]
"""The ``models`` package: modules under it are FrameGraph's own."""

EXPORT_CODE = (Path(__file__).resolve(), MODELS / "backends" / "base.py")
"""The export code itself (the exporter's settings, the graph spec's text)."""


def _source(path: Path) -> bytes:
    """The bytes of one source file the key hashes (a seam for tests)."""
    return path.read_bytes()


def _own(name: str) -> Path | None:
    """The source file of module ``name`` if it is one of FrameGraph's ``models``, else None."""
    source = getattr(sys.modules.get(name), "__file__", None)
    if not source:
        return None
    path = Path(source).resolve()
    return path if path.is_relative_to(MODELS) else None


def code_files(model: nn.Module) -> dict[str, Path]:
    """Every source file whose code the export of ``model`` runs, by a stable label.

    That is: the module defining the class of ``model`` and of each of its submodules
    (``torch.nn``'s included); for those of FrameGraph's ``models``, the whole family package
    they belong to, and every ``models`` module they import from (names, classes, functions;
    followed through what those import) - so a shared backbone (``models/mobilenet.py``) or
    helper is in the key of every family that uses it; and the export code itself.

    Labels are paths relative to the repository for FrameGraph's files, module names for
    others, so keys do not depend on where the checkout lives.
    """
    files: dict[str, Path] = {}
    pending: list[str] = []
    for name in sorted({type(m).__module__ for m in model.modules()}):
        own = _own(name)
        if own is not None:
            pending.append(name)
            family = own.relative_to(MODELS).parts
            if len(family) > 1:  # models/<family>/...: the whole family package
                for path in sorted((MODELS / family[0]).rglob("*.py")):
                    files[path.relative_to(MODELS.parent).as_posix()] = path
        elif source := getattr(sys.modules.get(name), "__file__", None):
            files[name] = Path(source)
    seen: set[str] = set()
    while pending:  # what our modules import from our modules, transitively
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        own = _own(name)
        assert own is not None  # only our modules are queued
        files[own.relative_to(MODELS.parent).as_posix()] = own
        for value in vars(sys.modules[name]).values():
            if isinstance(value, types.ModuleType):
                if value.__name__.startswith(name + "."):
                    continue  # a package's own submodules: attributes set by importing them
                used = value.__name__
            else:
                used = getattr(value, "__module__", None)
            if isinstance(used, str) and used not in seen and _own(used) is not None:
                pending.append(used)
    for path in EXPORT_CODE:
        files[path.relative_to(MODELS.parent).as_posix()] = path
    return files


def code_digest(model: nn.Module) -> str:
    """sha256 of the contents of :func:`code_files`.

    The export is a function of the code as much as of the weights: a fixed bug in a model's
    forward, or in a module it shares with other families, must not be served from an old
    export with the same weights.
    """
    digest = hashlib.sha256()
    for label, path in sorted(code_files(model).items()):
        digest.update(label.encode() + b"\0")
        digest.update(hashlib.sha256(_source(path)).digest())
    return digest.hexdigest()


def model_digest(model: nn.Module, spec: GraphSpec) -> str:
    """sha256 of the model's class and code, weights and buffers, the graph spec and torch's
    version: everything an export depends on."""
    digest = hashlib.sha256(f"{type(model).__qualname__}:{torch.__version__}".encode())
    digest.update(code_digest(model).encode())
    digest.update(spec.describe().encode())
    for key, tensor in model.state_dict().items():
        digest.update(key.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def onnx_entry(
    model: nn.Module, spec: GraphSpec, family: str, cache_dir: str | os.PathLike | None = None
) -> tuple[Path, bytes]:
    """The ONNX export of ``model``: its cache file and its bytes, checked against the sha256
    recorded when it was written (``<cache>/<family>/onnx-<hash>.onnx`` and ``.json``).

    Exported (and recorded) when missing; rebuilt with a warning when the file does not match
    its record (corrupt, truncated, replaced). ``model`` is exported in float32 on the CPU
    whatever its state. Load from the bytes: the file may have changed since they were read.

    Raises:
        BackendError: the model cannot be exported (e.g. an operator ONNX lacks); one line.
        CacheError: the cache folder is not safe to use (``models.cache``); one line.
    """
    folder = cache_folder(family, cache_dir)
    path = folder / f"onnx-{model_digest(model, spec)[:24]}.onnx"
    return path, cached_entry(path, lambda: _export_bytes(model, spec, family, folder))


def cached_onnx_bytes(
    model: nn.Module, spec: GraphSpec, family: str, cache_dir: str | os.PathLike | None = None
) -> bytes:
    """The checked bytes of the ONNX export of ``model`` (see :func:`onnx_entry`): what the
    backends load."""
    return onnx_entry(model, spec, family, cache_dir)[1]


def cached_onnx(
    model: nn.Module, spec: GraphSpec, family: str, cache_dir: str | os.PathLike | None = None
) -> Path:
    """The cache file of the ONNX export of ``model`` (see :func:`onnx_entry`), checked (or
    rebuilt) before it is returned: for tools that hand the file to another program.

    Whoever opens it later reads it by name, after the check; the backends load
    :func:`cached_onnx_bytes` instead.
    """
    return onnx_entry(model, spec, family, cache_dir)[0]


def _export_bytes(model: nn.Module, spec: GraphSpec, family: str, folder: Path) -> bytes:
    """Exports ``model`` to a scratch file of ours in ``folder`` and returns its bytes."""
    # .float() / .cpu() act in place: export a copy, leave the caller's model alone.
    cpu = copy.deepcopy(model).float().cpu() if _on_cuda_or_half(model) else model
    with scratch_file(folder, ".onnx") as tmp:
        try:
            export_onnx(cpu, tmp, spec)
        except Exception as error:  # the exporter raises many types; all mean "no export"
            reason = (str(error).strip() or repr(error)).splitlines()[0]
            reason = reason.split(" [Caused by")[0].split(". Please feel free")[0][:300]
            raise BackendError(f"cannot export {family} to ONNX: {reason}") from error
        return tmp.read_bytes()  # our own file (0600, in our 0700 folder), just written


def _on_cuda_or_half(model: nn.Module) -> bool:
    p = next(model.parameters())
    return p.device.type != "cpu" or p.dtype != torch.float32

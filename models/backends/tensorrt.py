"""The ``tensorrt`` backend and its engine cache.

An engine is only valid for the exact ONNX graph, input shape range, precision, GPU model and
TensorRT version it was built with; loading one built for anything else either fails or, worse,
runs wrong. Users of other pipelines keep hitting engines that are rebuilt every start or
loaded when stale, because the cache key missed one of these. Here the key is all of them
(:class:`EngineKey`), each engine has a JSON sidecar with the full key and the engine's own
sha256, and an engine whose sidecar is missing, different or does not match the bytes is
rebuilt, never loaded. Engines are cache entries of ``models.cache``: in a folder only we can
write, read once (the bytes checked are the bytes deserialized; the file is never opened by
name again), built under a per-key file lock and landed by atomic rename, so two processes
starting together build once and never read half an engine. The engine is built from the
checked bytes of the ONNX export, never from its file.

TensorRT itself is optional and import-gated: its builder wheels come from NVIDIA's own index,
which these machines cannot reach. Everything but the build and the run (keys, cache, locking)
works and is tested without it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from models.backends.base import BackendError, BackendUnavailable, GraphSpec
from models.cache import cache_folder, cached_entry, private_dir, read_entry, sha256

PRECISIONS = ("fp32", "fp16")


def tensorrt_version() -> str | None:
    """The installed TensorRT version, or None when it is not installed."""
    try:
        import tensorrt
    except ImportError:
        return None
    return str(tensorrt.__version__)


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine's validity depends on.

    Attributes:
        onnx_sha256: hash of the ONNX file the engine is built from.
        shapes: per input, ``(min, opt, max)`` shapes of the optimisation profile, as text.
        precision: "fp32" or "fp16".
        gpu_name: e.g. "NVIDIA H100 80GB HBM3".
        compute_capability: e.g. "9.0".
        tensorrt_version: e.g. "10.3.0".
    """

    onnx_sha256: str
    shapes: str
    precision: str
    gpu_name: str
    compute_capability: str
    tensorrt_version: str

    @classmethod
    def for_build(
        cls, onnx: bytes, spec: GraphSpec, precision: str, device: torch.device, version: str
    ) -> EngineKey:
        """The key of an engine built here from the ONNX graph ``onnx`` on CUDA ``device``."""
        props = torch.cuda.get_device_properties(device)
        return cls(
            onnx_sha256=sha256(onnx),
            shapes=repr(sorted(spec.profile().items())),
            precision=precision,
            gpu_name=props.name,
            compute_capability=f"{props.major}.{props.minor}",
            tensorrt_version=version,
        )

    def digest(self) -> str:
        """A file-name-safe hash of every field."""
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:32]


class EngineCache:
    """Engines on disk: ``<folder>/<key digest>.engine`` plus a ``.json`` sidecar (the full
    key and the engine's sha256) and a ``.lock``.

    Args:
        folder: where engines live (default ``<cache>/tensorrt``); created with mode 0700 and
            refused if another user could write it (``models.cache.private_dir``).

    Raises:
        CacheError: the folder is not safe to use; one line.
    """

    def __init__(self, folder: str | os.PathLike | None = None) -> None:
        self.folder = private_dir(folder) if folder is not None else cache_folder("tensorrt")

    def paths(self, key: EngineKey) -> tuple[Path, Path]:
        """``(engine file, sidecar file)`` of ``key``."""
        stem = self.folder / key.digest()
        return stem.with_suffix(".engine"), stem.with_suffix(".json")

    def valid(self, key: EngineKey) -> bool:
        """True when the cached engine for ``key`` exists and is exactly what its sidecar says
        (a warning says why when it exists and is not)."""
        return read_entry(self.paths(key)[0], {"key": asdict(key)}) is not None

    def get_or_build(self, key: EngineKey, build: Callable[[], bytes]) -> bytes:
        """The engine for ``key``: the bytes of the cached one, read once and checked against
        its sidecar, or built by ``build()`` (and cached) when there is no valid one.

        Deserialize these bytes: the file may have changed since they were read. Concurrent
        callers with the same key (threads or processes) queue on a lock; the first builds,
        the others find its result. A stale or foreign file under the key's name is replaced,
        with a warning.
        """
        return cached_entry(self.paths(key)[0], build, {"key": asdict(key)})


class TensorRTBackend:
    """Runs a TensorRT engine built from an ONNX export, with I/O as CUDA torch tensors.

    Args:
        onnx: the ONNX graph's bytes (``cached_onnx_bytes``: the checked bytes, from which
            the key is hashed and the engine built) or its file (read once).
        spec: its interface; input shape ranges become the optimisation profile.
        device: a CUDA device.
        precision: "fp32" or "fp16" (fp16 kernels where TensorRT finds them faster).
        cache: where engines are kept.
        workspace_gib: builder workspace limit.

    Raises:
        BackendUnavailable: TensorRT is not installed or there is no CUDA device.
        BackendError: the engine cannot be built or loaded.
    """

    name = "tensorrt"

    def __init__(
        self,
        onnx: bytes | str | os.PathLike,
        spec: GraphSpec,
        device: str | torch.device = "cuda",
        precision: str = "fp16",
        cache: EngineCache | None = None,
        workspace_gib: float = 4.0,
    ) -> None:
        version = self.require(device)
        self.device = torch.device(device)
        if precision not in PRECISIONS:
            raise BackendError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        import tensorrt as trt

        self.trt = trt
        self.spec = spec
        if not isinstance(onnx, bytes):
            onnx = Path(onnx).read_bytes()
        key = EngineKey.for_build(onnx, spec, precision, self.device, version)
        self.cache = cache or EngineCache()
        engine = self.cache.get_or_build(key, lambda: self._build(onnx, precision, workspace_gib))
        logger = trt.Logger(trt.Logger.WARNING)
        # the checked bytes themselves: the engine file is not opened again
        self.engine = trt.Runtime(logger).deserialize_cuda_engine(engine)
        if self.engine is None:
            raise BackendError(f"TensorRT could not load engine {self.cache.paths(key)[0]}")
        self.context = self.engine.create_execution_context()

    @staticmethod
    def require(device: str | torch.device) -> str:
        """TensorRT's version, or :class:`BackendUnavailable` saying why it cannot run."""
        version = tensorrt_version()
        if version is None:
            raise BackendUnavailable(
                "TensorRT is not installed (pip install tensorrt, from NVIDIA's package index)"
            )
        if torch.device(device).type != "cuda" or not torch.cuda.is_available():
            raise BackendUnavailable(f"TensorRT needs a CUDA device (got {device})")
        return version

    def _build(self, onnx: bytes, precision: str, workspace_gib: float) -> bytes:
        trt = self.trt
        logger = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(logger)
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse(onnx):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise BackendError(f"TensorRT cannot parse the ONNX export: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * 2**30))
        if precision == "fp16":
            config.set_flag(trt.BuilderFlag.FP16)
        profile = builder.create_optimization_profile()
        for name, (low, opt, high) in self.spec.profile().items():
            profile.set_shape(name, low, opt, high)
        config.add_optimization_profile(profile)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise BackendError("TensorRT failed to build an engine from the ONNX export")
        return bytes(serialized)

    def __call__(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        stream = torch.cuda.current_stream(self.device)
        keep = []
        for name, x in zip(self.spec.inputs, inputs, strict=True):
            x = x.to(self.device, torch.float32).contiguous()
            keep.append(x)
            self.context.set_input_shape(name, tuple(x.shape))
            self.context.set_tensor_address(name, x.data_ptr())
        outputs = []
        for name in self.spec.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            out = torch.empty(shape, dtype=torch.float32, device=self.device)
            self.context.set_tensor_address(name, out.data_ptr())
            outputs.append(out)
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise BackendError("TensorRT execution failed")
        return tuple(outputs)

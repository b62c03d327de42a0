"""What every model stage shares: its run options, the checks it makes when it opens, how it
opens the backend that runs its network, and how a model failure becomes one line.

A model stage's config keys are its own (weights, thresholds, ...) plus the fields of
:class:`models.backends.RunOptions` (backend, device, precision, cuda_graph, threads,
channels_last, batch, batch_timeout_ms), which the stage keeps as ``self.options`` and
passes whole to the backend layer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any, ClassVar

import pydantic
import torch
from torch import nn

from models.backends import (
    Backend,
    BackendError,
    Calibration,
    GraphSpec,
    RunOptions,
    create_backend,
    create_fastest_backend,
    require_backend,
    runnable_kinds,
)
from pipeline.errors import ConfigError, ModelError
from pipeline.frame import Frame
from pipeline.stage import Part, Stage

log = logging.getLogger("framegraph")

AUTO_CANDIDATES = ("torch", "onnxruntime", "tensorrt")


def auto_candidates(device: torch.device, precision: str = "fp32") -> tuple[str, ...]:
    """The backends ``auto`` builds and measures: those of :data:`AUTO_CANDIDATES` whose
    package and device are here and that run ``precision`` (``tensorrt`` only with TensorRT
    and a CUDA device, ``onnxruntime`` only in fp32 and, on CUDA, with its CUDA provider)."""
    return runnable_kinds(AUTO_CANDIDATES, device, precision)


MEDIA = Path(__file__).resolve().parents[1] / "media"


def bundled_frames(name: str, every: int = 1, count: int | None = None) -> list[Frame]:
    """Every ``every``-th frame of the clip ``media/<name>`` (at most ``count``), decoded;
    what a family calibrates int8 on."""
    import av

    frames = []
    with av.open(str(MEDIA / name)) as container:
        for index, decoded in enumerate(container.decode(video=0)):
            if index % every == 0:
                image = decoded.to_ndarray(format="bgr24")
                frames.append(Frame(image, index, Fraction(1, 25), index, "calibration"))
            if count is not None and len(frames) >= count:
                break
    return frames


def model_error(stage: str, error: BaseException) -> ModelError:
    """``error`` (a loader's, a backend's) as the one-line error of model stage ``stage``."""
    return ModelError(f"{stage}: {str(error).splitlines()[0]}")


class ModelStage(Stage):
    """A stage that runs a network through ``models.backends``.

    Subclasses pass their run options (config keys, see the module docstring) to this
    constructor, call :meth:`check_options` first in ``open()`` and build their backends
    with :meth:`open_backend`.

    A family that splits its work into ``preprocess`` (frame -> network input), ``infer``
    (the network) and ``postprocess`` (raw outputs -> the stage's result), each leaving its
    output in ``frame.results[self.name]``, sets ``steps`` to those names: the graph then
    runs them as parts on threads of their own, so they overlap, while configs and metrics
    see one stage (``infer`` owns ``open`` / ``close`` / gaps; parts named in
    ``stateful_steps`` keep per-source state and run on one thread).

    Attributes:
        options: how the network runs.
        device: ``options.device`` as a torch device.
    """

    options_type: ClassVar[type[pydantic.BaseModel] | None] = RunOptions
    family: ClassVar[str] = ""
    """The model family: the cache folder of its exports."""
    channels_last_default: ClassVar[bool] = False
    """The torch backend's memory format when ``channels_last`` is not set."""
    int8: ClassVar[bool] = False
    """The family gives calibration inputs to ``open_backend``, so it runs ``precision: int8``."""

    steps: ClassVar[tuple[str, ...]] = ()
    """Names of the methods that run as parts, in order (empty: ``process`` runs whole)."""
    stateful_steps: ClassVar[frozenset[str]] = frozenset()
    """Those of ``steps`` that keep per-source state."""

    def __init__(self, **options: Any) -> None:
        try:
            self.options = RunOptions(**options)
        except pydantic.ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise ConfigError(f"{self.kind}: {where}: {first['msg']}") from None
        if self.options.channels_last is None:
            self.options = self.options.model_copy(
                update={"channels_last": self.channels_last_default}
            )
        self.device = self.options.torch_device
        if self.options.batch > 1 and not self.batches:
            raise ConfigError(f"{self.kind}: batch is 1 for this model (one frame per call)")

    @property
    def batches(self) -> bool:
        """The family runs several frames in one network call (it has ``infer_batch``)."""
        return type(self).infer_batch is not ModelStage.infer_batch

    @staticmethod
    def alike(keys: Sequence[Hashable]) -> list[list[int]]:
        """The positions of equal keys (e.g. input shapes), grouped in first-seen order: the
        frames of a batch that one network call can take together."""
        groups: dict[Hashable, list[int]] = {}
        for i, key in enumerate(keys):
            groups.setdefault(key, []).append(i)
        return list(groups.values())

    @staticmethod
    def rounds(frames: list[Frame]) -> list[list[Frame]]:
        """``frames`` (several sources, each source's in order) in rounds of at most one frame
        per source, each source's frames in successive rounds: what a video model whose next
        frame reads this one's state (keyframe features, a pyramid) can run together."""
        rounds: list[list[Frame]] = []
        seen: dict[str, int] = {}
        for frame in frames:
            turn = seen.get(frame.source_id, 0)
            seen[frame.source_id] = turn + 1
            if turn == len(rounds):
                rounds.append([])
            rounds[turn].append(frame)
        return rounds

    def infer_batch(self, frames: list[Frame]) -> list[Frame | None]:
        """``infer`` on several frames (any sources, each source's in order) with one network
        call where their shapes allow; a family that batches overrides this."""
        raise NotImplementedError

    def check_options(self) -> None:
        """What every model stage checks first when it opens: the device exists here, fp16 /
        bf16 and CUDA graphs are asked for on CUDA only, CUDA graphs with the torch backend,
        int8 on onnxruntime on the CPU for a family that calibrates.

        Raises:
            ModelError: a CUDA device is asked for and there is none (one line).
            ConfigError: a half precision or ``cuda_graph`` without a CUDA device,
                ``cuda_graph`` with a backend other than torch (or auto, which then measures
                torch with graphs), or int8 where it cannot run.
        """
        options, device = self.options, self.device
        if options.cuda_graph and options.backend not in ("torch", "auto"):
            raise ConfigError(
                f"{self.kind}: cuda_graph is an option of the torch backend, not {options.backend}"
            )
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ModelError(f"{self.kind}: device {device} asked for, but CUDA is not available")
        if options.precision == "int8":
            if not self.int8:
                raise ConfigError(f"{self.kind}: precision int8 is not available for this model")
            if device.type != "cpu" or options.backend not in ("onnxruntime", "auto"):
                raise ConfigError(f"{self.kind}: precision int8 runs on onnxruntime on the CPU")
        elif options.precision != "fp32" and device.type != "cuda":
            raise ConfigError(f"{self.kind}: precision {options.precision} needs a CUDA device")
        if options.cuda_graph and device.type != "cuda":
            raise ConfigError(f"{self.kind}: cuda_graph needs a CUDA device")

    def check_backend(self) -> None:
        """For a stage that builds its backends later (at its first frame): fail at open, in
        one line, when the named backend cannot run here (``auto`` always can: torch is a
        candidate).

        Raises:
            ModelError: the backend's package or device is missing, or it is unknown.
        """
        if self.options.backend == "auto":
            return
        try:
            require_backend(self.options.backend, self.device, self.options.precision)
        except BackendError as error:
            raise model_error(self.kind, error) from None

    def open_backend(
        self,
        graph: nn.Module,
        spec: GraphSpec,
        options: RunOptions | None = None,
        calibration: Callable[[], Calibration] | None = None,
    ) -> Backend:
        """The backend the options name for ``graph``; ``auto`` builds each of
        :func:`auto_candidates`, measures them on the spec's example input and keeps the
        fastest (the choice and timings are logged). A candidate whose export or engine build
        fails is left out.

        Args:
            graph: the tensor-in, tensors-out module with the family's official weights.
            spec: its graph interface.
            options: when one graph of the stage runs otherwise (default: ``self.options``).
            calibration: for precision ``int8``: gives the inputs to calibrate on (called
                only then; a family without it cannot run int8).

        Raises:
            ModelError: no such backend here, or its export / build failed (one line).
        """
        options = options or self.options
        inputs: Calibration = ()
        if options.precision == "int8":
            if calibration is None:
                raise ConfigError(f"{self.kind}: precision int8 is not available for this model")
            inputs = calibration()
        try:
            if options.backend != "auto":
                return create_backend(graph, spec, self.family, options, inputs)
            # none runnable: let each candidate say why not
            kinds = auto_candidates(self.device, options.precision) or AUTO_CANDIDATES
            backend, timings = create_fastest_backend(
                kinds, graph, spec, self.family, options, calibration=inputs
            )
        except BackendError as error:
            raise model_error(self.kind, error) from None
        log.info("%s: %s (median ms: %s)", self.kind, backend.name,
                 {name: round(seconds * 1e3, 1) for name, seconds in timings.items()})  # fmt: skip
        return backend

    def parts(self) -> list[Part]:
        batched = self.options.batch > 1
        last = len(self.steps) - 1
        return [
            Part(step, getattr(self, step), stateful=step in self.stateful_steps,
                 produces=self.produces if i == last else (),
                 owner=self if step == "infer" else None,
                 finisher=self if i == last else None,
                 batch_step=self.infer_batch if step == "infer" and batched else None,
                 batch_size=self.options.batch, batch_wait=self.options.batch_timeout_ms / 1e3)
            for i, step in enumerate(self.steps)
        ]  # fmt: skip

    def process(self, frame: Frame) -> Frame | None:
        """The steps one after the other (how tests and callers outside a graph run it)."""
        out: Frame | None = frame
        for step in self.steps:
            out = getattr(self, step)(out)
            if out is None:
                return None
        return out

"""YAML configs -> a validated, typed graph.

A config has two top-level keys::

    pipeline:            # runtime settings (PipelineSettings below)
      on_error: skip
    stages:              # nodes, in order; each feeds the next unless `inputs` says otherwise
      - name: source
        kind: file       # a registered stage kind
        path: clip.mp4   # every other key is a constructor argument of that kind
      - name: out
        kind: video_file
        path: out.mp4

and, for cameras placed on a Ray cluster, an optional third (ClusterSettings below)::

    cluster:
      streams_per_worker: 4
      num_gpus: 0.25

Stage kinds register with ``@register("kind")`` on the class itself, so the
name sits next to the code it names. A stage's config keys are its
constructor's parameter names, plus the fields of its ``options_type`` (a model
stage's run options), validated with pydantic against the constructor's type
hints: an unknown key or a wrong type is a one-line ConfigError naming the
stage and the key.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field

from pipeline.edges import QUEUE_BYTES, Policy
from pipeline.errors import ConfigError
from pipeline.graph import Graph, NodeSpec
from pipeline.stage import Sink, Source, Stage

STAGE_KINDS: dict[str, type[Stage]] = {}
S = TypeVar("S", bound=type[Stage])
MAX_PIXELS = 4096 * 4096
"""Default largest input frame (width x height) a source accepts: 4096x4096, 48 MiB as
BGR. A bigger one is an input error (``max_pixels``: per source, or ``pipeline:``)."""


def register(kind: str) -> Callable[[S], S]:
    """Class decorator: make a Stage subclass available as ``kind:`` in configs."""

    def add(cls: S) -> S:
        if kind in STAGE_KINDS and STAGE_KINDS[kind] is not cls:
            raise ValueError(f"stage kind {kind!r} registered twice")
        cls.kind = kind
        STAGE_KINDS[kind] = cls
        return cls

    return add


class PipelineSettings(BaseModel):
    """Runtime settings (the ``pipeline:`` section)."""

    model_config = ConfigDict(extra="forbid")

    device: str = "cpu"
    """Where model stages run (``cpu``, ``cuda``, ``cuda:1``); stages that take a
    ``device`` argument get this unless they set their own."""
    threads: int = Field(2, ge=1)
    """Intra-op threads for model stages (torch)."""
    on_error: Literal["skip", "stop"] = "skip"
    """Default for stages' ``on_error``: an exception on one frame drops that frame
    (``skip``) or ends the run (``stop``)."""
    max_errors_in_a_row: int | None = Field(25, ge=1)
    """Default for stages' ``max_errors_in_a_row``: under ``skip``, a stage whose
    exceptions on this many frames in a row end the run (a broken model, not a bad frame);
    None never ends it."""
    join_timeout: float = Field(1.0, gt=0)
    """Seconds a join waits for a missing branch on live input."""
    max_frames: int | None = Field(None, ge=1)
    """Stop each source after this many frames."""
    stop_grace: float = Field(2.0, gt=0)
    """Seconds a source stuck in a read may take to stop before it is cut off."""
    metrics_json: str | None = None
    """Also write the final metrics as JSON to this path."""
    progress: bool | None = None
    """Progress bar / status line: None = when stderr is a terminal."""
    max_pixels: int | None = Field(MAX_PIXELS, ge=1)
    """Default for sources' ``max_pixels``: the largest frame (width x height) an input may
    declare or deliver; a bigger one is an input error. None: no limit."""
    queue_bytes: int | None = Field(QUEUE_BYTES, ge=1)
    """Default for each edge's ``queue.max_bytes``: the most image bytes it holds; a
    blocking edge makes its producer wait while over it (one frame always fits). None:
    frames are the only bound."""


class QueueSettings(BaseModel):
    """The inbound edge of a stage."""

    model_config = ConfigDict(extra="forbid")

    capacity: int = Field(8, ge=1)
    policy: Policy | None = None
    max_bytes: int | None = Field(None, ge=1)
    """Image bytes the edge may hold (default: the pipeline's ``queue_bytes``)."""


class StageEntry(BaseModel):
    """One item of ``stages:``; keys beyond these are the stage's own arguments."""

    model_config = ConfigDict(extra="allow")

    name: str
    kind: str
    inputs: list[str] | None = None
    queue: QueueSettings = QueueSettings()
    on_error: Literal["skip", "stop"] | None = None
    max_errors_in_a_row: int | None = Field(None, ge=1)
    join: bool = True
    workers: int = Field(1, ge=1)


class ClusterSettings(BaseModel):
    """Cameras on a Ray cluster (the ``cluster:`` section; used by ``cluster.controller``):
    each worker is a graph of this config serving a group of cameras."""

    model_config = ConfigDict(extra="forbid")

    streams_per_worker: int = Field(4, ge=1)
    """Cameras a worker takes before another worker is started. When the cluster has room
    for no further worker, cameras go to the least loaded worker anyway (past this)."""
    num_cpus: float = Field(1.0, ge=0)
    """CPUs a worker reserves on its node (Ray places workers by these)."""
    num_gpus: float = Field(0.0, ge=0)
    """GPUs a worker reserves: a fraction shares one GPU between several workers."""
    max_workers: int | None = Field(None, ge=1)
    """The most workers started at once (None: as many as the cluster has room for)."""
    health_interval: float = Field(1.0, gt=0)
    """Seconds between the controller's checks of its workers."""
    unresponsive_after: float = Field(6.0, gt=0)
    """A worker that has not answered a check for this long is taken for dead (its node
    may be gone before Ray notices) and its cameras are placed on others."""
    start_timeout: float = Field(120.0, gt=0)
    """Seconds a new worker may take to start (its process, imports, stages opening)."""


class Config(BaseModel):
    """A whole config file."""

    model_config = ConfigDict(extra="forbid")

    pipeline: PipelineSettings = PipelineSettings()
    cluster: ClusterSettings = ClusterSettings()
    stages: list[StageEntry] = Field(min_length=2)


def _one_line(error: pydantic.ValidationError, where: str) -> str:
    errors = error.errors()
    first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = ".".join(str(p) for p in first["loc"])
    if first["type"] == "extra_forbidden":
        return f"{where}: unknown key {loc!r}"
    if first["type"] == "missing":
        return f"{where}: missing key {loc!r}"
    return f"{where}: {loc}: {first['msg']}" if loc else f"{where}: {first['msg']}"


def _constructor_model(cls: type[Stage]) -> type[BaseModel]:
    hints = typing.get_type_hints(cls.__init__)
    fields: dict[str, Any] = {}
    for pname, param in inspect.signature(cls.__init__).parameters.items():
        if pname == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        default = ... if param.default is param.empty else param.default
        fields[pname] = (hints.get(pname, Any), default)
    options = cls.options_type
    for pname, field in (options.model_fields if options is not None else {}).items():
        fields.setdefault(pname, (field.annotation, field))
    return pydantic.create_model(
        f"{cls.__name__}Args",
        __config__=ConfigDict(extra="forbid", arbitrary_types_allowed=True),
        **fields,
    )


def stage_parameters(kind: str) -> list[str]:
    """Config keys a stage kind accepts."""
    return list(_constructor_model(STAGE_KINDS[kind]).model_fields)


def build_stage(kind: str, args: dict[str, Any], where: str = "stage") -> Stage:
    """Construct a registered stage from config arguments.

    Raises:
        ConfigError: unknown kind, unknown key, wrong type or missing argument.
    """
    if kind not in STAGE_KINDS:
        known = ", ".join(sorted(STAGE_KINDS))
        raise ConfigError(f"{where}: unknown stage kind {kind!r} (known: {known})")
    cls = STAGE_KINDS[kind]
    try:
        validated = _constructor_model(cls).model_validate(args)
    except pydantic.ValidationError as error:
        raise ConfigError(_one_line(error, where)) from None
    options = cls.options_type.model_fields if cls.options_type is not None else {}
    return cls(**{k: getattr(validated, k) for k in type(validated).model_fields
                  if k not in options or k in validated.model_fields_set})  # fmt: skip


def _build_node_stage(kind: str, args: dict[str, Any], where: str) -> Stage:
    """``build_stage``, except that a sink whose arguments hold ``{source}`` becomes one
    sink per source (``pipeline.per_source``), unless it fills them itself
    (``Sink.per_source``)."""
    from pipeline.per_source import PerSource, has_placeholder

    cls = STAGE_KINDS.get(kind)
    if cls is not None and issubclass(cls, Sink) and cls.per_source and has_placeholder(args):
        return PerSource(kind, args, lambda filled: build_stage(kind, filled, where))  # type: ignore[return-value]
    return build_stage(kind, args, where)


def parse_config(raw: Any, origin: str = "config") -> Config:
    """Validate a config already loaded from YAML (a dict)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{origin}: expected a mapping with 'pipeline' and 'stages'")
    try:
        return Config.model_validate(raw)
    except pydantic.ValidationError as error:
        raise ConfigError(_one_line(error, origin)) from None


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a config file into a dict.

    Raises:
        ConfigError: missing file or invalid YAML.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"{path}: invalid YAML{line}") from None
    return raw


def build_graph(config: Config) -> Graph:
    """Construct every stage and wire the graph.

    Raises:
        ConfigError: anything wrong in a stage entry or in the wiring.
    """
    settings = config.pipeline
    specs = []
    previous: str | None = None
    for i, entry in enumerate(config.stages):
        where = f"stages[{i}] ({entry.name})"
        args = dict(entry.model_extra or {})
        parameters = stage_parameters(entry.kind) if entry.kind in STAGE_KINDS else []
        if "device" in parameters:
            args.setdefault("device", settings.device)
        if "max_pixels" in parameters:
            args.setdefault("max_pixels", settings.max_pixels)
        stage = _build_node_stage(entry.kind, args, where)
        inputs = entry.inputs
        if inputs is None:
            inputs = [] if isinstance(stage, Source) or previous is None else [previous]
        specs.append(
            NodeSpec(
                name=entry.name,
                stage=stage,
                inputs=inputs,
                capacity=entry.queue.capacity,
                policy=entry.queue.policy,
                max_bytes=(
                    entry.queue.max_bytes
                    if "max_bytes" in entry.queue.model_fields_set
                    else settings.queue_bytes
                ),
                on_error=entry.on_error or settings.on_error,
                max_errors_in_a_row=(
                    entry.max_errors_in_a_row
                    if "max_errors_in_a_row" in entry.model_fields_set
                    else settings.max_errors_in_a_row
                ),
                join=entry.join,
                workers=entry.workers,
            )
        )
        previous = entry.name
    return Graph(
        specs,
        join_timeout=settings.join_timeout,
        max_frames=settings.max_frames,
        stop_grace=settings.stop_grace,
    )

"""Building a graph from node specs: expanding stages that run as parts, and checking what
each stage reads against what the stages before it produce (before any stage opens)."""

from __future__ import annotations

import difflib
from dataclasses import replace
from typing import TYPE_CHECKING

from pipeline.edges import Policy
from pipeline.errors import ConfigError
from pipeline.stage import Stage

if TYPE_CHECKING:
    from pipeline.graph import NodeSpec


def did_you_mean(name: str, names: list[str]) -> str:
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    return f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""


def check_needs(name: str, stage: Stage, upstream: dict[str, set[type]]) -> None:
    """Check that the stages upstream of ``stage`` produce every result type it consumes,
    and that every name in its references is one of them, producing a type the reference
    accepts.

    Args:
        name: the stage's node name (for the message).
        stage: the stage; its ``references`` say which attributes hold names.
        upstream: every stage upstream of it -> the result types that stage produces.

    Raises:
        ConfigError: one line naming the missing type, or the config key, the wrong name and
            the names that fit.
    """
    available = set().union(*upstream.values())
    for needed in stage.consumes:
        if needed not in available:
            raise ConfigError(
                f"stage {name!r} ({stage.kind}) needs {needed.__name__} results, but no stage "
                "before it produces them"
            )
    for key, kinds in stage.references.items():
        value = getattr(stage, key, None)
        for wanted in [value] if isinstance(value, str) else list(value or []):
            produced = upstream.get(wanted)
            if produced is not None and (produced & set(kinds) if kinds else produced):
                continue
            what = " or ".join(k.__name__ for k in kinds) or "results"
            fits = [n for n, made in upstream.items() if (made & set(kinds) if kinds else made)]
            if produced is None:
                problem = "is not a stage before this one"
            elif not produced:
                problem = "gives no results"
            else:
                problem = f"gives {', '.join(sorted(k.__name__ for k in produced))}, not {what}"
            hint = (f"; stages before it with {what}: {', '.join(map(repr, fits))}" if fits
                    else f"; no stage before it gives {what}")  # fmt: skip
            raise ConfigError(f"stage {name!r} ({stage.kind}): {key}: {wanted!r} {problem}{hint}")


PART_CAPACITY = 4
"""Frames queued between two parts of one stage: enough to keep both busy."""


def expand_parts(specs: list[NodeSpec]) -> tuple[list[NodeSpec], dict[str, Stage]]:
    """Each spec whose stage runs as parts (``Stage.parts``) becomes a chain of part nodes,
    ``NAME/LABEL``: the first takes the stage's inputs and inbound queue settings, the last
    feeds whatever named the stage as an input.

    Returns:
        The specs, and the stages that were expanded, by name.
    """
    expanded: list[NodeSpec] = []
    owners: dict[str, Stage] = {}
    last_part: dict[str, str] = {}
    for spec in specs:
        parts = spec.stage.parts()
        if not parts:
            expanded.append(spec)
            continue
        if spec.workers > 1 and all(part.stateful for part in parts):
            raise ConfigError(f"stage {spec.name!r}: several workers need a stateless stage")
        owners[spec.name] = spec.stage
        spec.stage.name = spec.name
        inputs = spec.inputs
        for i, part in enumerate(parts):
            part.kind = spec.stage.kind
            name = f"{spec.name}/{part.label}"
            first = i == 0
            expanded.append(
                replace(
                    spec, name=name, stage=part, inputs=inputs, part_of=spec.name,
                    capacity=spec.capacity if first else PART_CAPACITY,
                    policy=spec.policy if first else Policy.BLOCK,
                    workers=1 if part.stateful or part.batch_size > 1 else spec.workers,
                )
            )  # fmt: skip
            inputs = [name]
        last_part[spec.name] = inputs[0]
    for spec in expanded:
        spec.inputs = [last_part.get(up, up) for up in spec.inputs]
    return expanded, owners

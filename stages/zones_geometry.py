"""The ``zones`` stage's geometry: zones and lines as configured, checked when the stage is
built, and in a frame's pixels.

A set of zones and lines (``Shapes``) is the stage's default for every source, or one
source's own under ``sources:``. Each is checked alike: a zone needs at least 3 points
enclosing an area, a line two distinct points, a name is a zone or a line, not both, and
relative coordinates lie in 0..1. Mistakes are one-line ``ConfigError``s that name the zone
or line, and the source where it is one source's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from pipeline.errors import ConfigError

Coordinates = Literal["pixels", "relative"]
Point = tuple[float, float]


class ZoneSpec(BaseModel):
    """A zone with options (a plain list of points is a zone for every class)."""

    model_config = ConfigDict(extra="forbid")

    points: list[Point]
    classes: list[str] | None = None
    """Only objects of these class names (None: all)."""


class LineSpec(BaseModel):
    """A line with options (a plain pair of points is a line for every class)."""

    model_config = ConfigDict(extra="forbid")

    points: tuple[Point, Point]
    classes: list[str] | None = None
    """Only objects of these class names (None: all)."""


class SourceSpec(BaseModel):
    """One source's zones and lines (``sources: {id: ...}``): they replace the stage's, both
    of them (a source that gives only zones has no lines)."""

    model_config = ConfigDict(extra="forbid")

    zones: dict[str, list[Point] | ZoneSpec] = {}
    lines: dict[str, tuple[Point, Point] | LineSpec] = {}
    coordinates: Coordinates | None = None
    """``pixels`` or ``relative`` (None: the stage's)."""


@dataclass(frozen=True)
class Geometry:
    """Zones and lines in one frame size's pixels: what ``draw`` draws.

    Attributes:
        zones: name -> float32 [K, 2] polygon vertices, pixels.
        lines: name -> float32 [2, 2], point 1 then point 2, pixels.
    """

    zones: dict[str, np.ndarray]
    lines: dict[str, np.ndarray]


@dataclass
class Shapes:
    """Zones and lines as configured (pixels, or 0..1 of the frame if ``relative``).

    Attributes:
        zones: name -> (float64 [K, 2] vertices, class names it counts or None for all).
        lines: name -> (float64 [2, 2] point 1 then point 2, class names or None).
        relative: the points are fractions of the frame's width and height.
    """

    zones: dict[str, tuple[np.ndarray, frozenset[str] | None]]
    lines: dict[str, tuple[np.ndarray, frozenset[str] | None]]
    relative: bool
    _pixels: dict[tuple[int, int], Geometry] = field(default_factory=dict, repr=False)

    def __bool__(self) -> bool:
        return bool(self.zones or self.lines)

    def in_pixels(self, width: int, height: int) -> Geometry:
        """The zones and lines in pixels of a ``width`` x ``height`` frame."""
        key = (width, height)
        if key not in self._pixels:
            scale = np.array([width, height], np.float64) if self.relative else 1
            pixels: dict[str, dict[str, np.ndarray]] = {}
            for kind, shapes in (("zones", self.zones), ("lines", self.lines)):
                pixels[kind] = {}
                for name, (points, _) in shapes.items():
                    array = (points * scale).astype(np.float32)
                    array.flags.writeable = False  # shared by every frame of this size
                    pixels[kind][name] = array
            self._pixels[key] = Geometry(pixels["zones"], pixels["lines"])
        return self._pixels[key]


def parse_shapes(
    zones: dict[str, Any] | None,
    lines: dict[str, Any] | None,
    coordinates: Coordinates,
    source: str | None = None,
) -> Shapes:
    """Zones and lines from their config (points, or specs with options), checked.

    Args:
        zones: name -> list of points, or ``ZoneSpec`` / its mapping.
        lines: name -> pair of points, or ``LineSpec`` / its mapping.
        coordinates: ``pixels`` or ``relative``.
        source: the source they are for (named in errors); None: the stage's defaults.

    Raises:
        ConfigError: one line, naming the zone or line (and the source).
    """
    where = f"zones: source {source!r}: " if source is not None else "zones: "
    relative = coordinates == "relative"
    shapes = Shapes({}, {}, relative)
    for name, given in (zones or {}).items():
        spec = parse_spec(ZoneSpec, given, f"{where}zone {name!r}")
        points = _check_points(f"{where}zone {name!r}", spec.points, relative)
        if len(points) < 3 or abs(cv2.contourArea(points.astype(np.float32))) == 0:
            raise ConfigError(f"{where}zone {name!r} needs at least 3 points enclosing an area")
        shapes.zones[name] = (points, _classes(spec.classes))
    for name, given in (lines or {}).items():
        spec = parse_spec(LineSpec, given, f"{where}line {name!r}")
        points = _check_points(f"{where}line {name!r}", spec.points, relative)
        if np.allclose(points[0], points[1]):
            raise ConfigError(f"{where}line {name!r} has two equal points")
        if name in shapes.zones:
            raise ConfigError(f"{where}{name!r} names both a zone and a line")
        shapes.lines[name] = (points, _classes(spec.classes))
    return shapes


def parse_spec(cls: type[BaseModel], given: Any, what: str) -> Any:
    """A spec from a mapping or a spec (or, for a zone or line, a list of points); ``what``
    begins its error."""
    if isinstance(given, cls):
        return given
    if not isinstance(given, dict) and cls is SourceSpec:
        raise ConfigError(f"{what}: expected a mapping with zones, lines, coordinates")
    try:
        return cls.model_validate(given if isinstance(given, dict) else {"points": given})
    except ValidationError as error:
        errors = error.errors()
        first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
        loc = ".".join(str(p) for p in first["loc"])
        if first["type"] == "extra_forbidden":
            raise ConfigError(f"{what}: unknown key {loc!r}") from None
        raise ConfigError(f"{what}: {loc}: {first['msg']}") from None


def _check_points(what: str, points: Any, relative: bool) -> np.ndarray:
    array = np.asarray(points, np.float64)
    if not np.isfinite(array).all():
        raise ConfigError(f"{what} has a coordinate that is not a number")
    if relative and ((array < 0).any() or (array > 1).any()):
        raise ConfigError(
            f"{what}: relative coordinates must be in 0..1 (coordinates: pixels for pixels)"
        )
    return array


def _classes(names: list[str] | None) -> frozenset[str] | None:
    return frozenset(names) if names is not None else None

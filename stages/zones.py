"""Zones and lines: from tracked objects to occupancy, dwell times, line counts and events.

The ``zones`` stage reads a result that carries track ids (a detector's ``Detections`` or
``DensePoseResult`` after the ``track`` stage) and puts one ``Analytics`` per frame under its
own name: the events of that frame (``enter``, ``leave``, ``cross``), the occupancy of every
zone and the line counts so far, per source. Event sinks read them with ``frame_events``.

Geometry per source: ``zones`` and ``lines`` are every source's, unless ``sources:`` gives
a source its own (``sources: {cam2: {zones: ..., lines: ..., coordinates: ...}}``), which
replace both for it: a source listed with neither has no zones or lines, and its
``Analytics`` no events, occupancy or line counts. Each source's are checked when the stage
is built, as the stage's are (``stages.zones_geometry``). The ``ZoneAnalytics`` of a frame
carries its source's zones and lines, in its size's pixels, so ``draw`` shows those.

Position: an object is one point of its box, the ``anchor`` (``bottom_center``, where a
person or a car touches the ground, as supervision and DeepStream default to; or ``center``).

Zones: an object is inside a zone while its anchor lies more than ``margin`` pixels inside
the polygon, outside once it lies more than ``margin`` outside; within ``margin`` of the
border it keeps its state (a first sighting there counts as outside). ``enter`` is emitted at
the frame a track is first inside (also when it is first seen already inside), ``leave`` at
the frame it is first outside, with ``dwell_s``: the source time (PTS) from the frame it
entered to the last frame it was seen inside. Occupancy counts the tracks inside, including
those unseen for up to ``lost_after`` frames.

Lines: a segment from point 1 to point 2. Its ``in`` side is on the left of someone walking
on the image from point 1 to point 2: a crossing from right to left is ``in``, left to right
``out`` (supervision's ``LineZone`` convention: the same points give the same directions).
For a line drawn left to right across the image, ``in`` is upwards. A track's side of a line
only changes when its anchor is more than ``margin`` pixels on the other side, and a change
counts as a crossing only if the path from its last anchor on the old side to the new one
cuts the segment itself (passing beyond an end is no crossing). So an object jittering on
the line counts once, and each real passage counts once, per class and direction.

Tracks and gaps: a track not seen on more than ``lost_after`` frames in a row (counted by
frame index, so frames dropped upstream count) has ended: it leaves every zone it was in,
at the first frame past that, with the dwell up to its last sighting inside; its line sides
are forgotten. A gap longer than ``lost_after`` frames (``on_gap``) thus ends every track
seen before it, and an id seen again after it starts anew, as the ``track`` stage's ids do
after a gap longer than its ``lost_track_buffer`` (the same default, 30). A source whose
index goes back (it started over) ends its tracks the same way. Frames without the tracked
result (its stage failed) count as unseen. Nothing is emitted at a source's end for objects
still inside (occupancy = enters - leaves holds at every frame).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import cv2
import numpy as np

from pipeline.config import register
from pipeline.errors import ConfigError, SinkError
from pipeline.frame import Frame
from pipeline.per_source import safe_name
from pipeline.results import Analytics, DensePoseResult, Detections, Event
from pipeline.stage import References, Stage
from stages.sinks.durable import claim
from stages.zones_geometry import (
    Coordinates,
    Geometry,
    LineSpec,
    Point,
    Shapes,
    SourceSpec,
    ZoneSpec,
    parse_shapes,
    parse_spec,
)

log = logging.getLogger("framegraph")

Anchor = Literal["bottom_center", "center"]
DIRECTIONS = ("in", "out")


@dataclass
class ZoneAnalytics(Analytics):
    """``Analytics`` plus the geometry it was measured on, so ``draw`` can show the zones and
    lines (every reader of ``Analytics`` sees an ``Analytics``; ``to_json`` leaves the
    geometry out)."""

    geometry: Geometry | None = field(default=None, repr=False, compare=False)


def line_side(line: np.ndarray, point: np.ndarray) -> float:
    """Signed distance in pixels of ``point`` from the line through ``line`` [2, 2]:
    negative on its ``in`` side (the left walking from point 1 to point 2 on the image),
    positive on the other."""
    (x1, y1), (x2, y2) = line
    dx, dy = x2 - x1, y2 - y1
    return float((dx * (point[1] - y1) - dy * (point[0] - x1)) / np.hypot(dx, dy))


def cuts_segment(line: np.ndarray, start: np.ndarray, end: np.ndarray) -> bool:
    """Whether the path ``start`` -> ``end``, whose ends lie on opposite sides of the line
    through ``line``, meets the line between its two points (ends included)."""
    d0, d1 = line_side(line, start), line_side(line, end)
    hit = start + (end - start) * (d0 / (d0 - d1))  # where the path meets the line
    a, b = line.astype(np.float64)
    along = float(np.dot(hit - a, b - a) / np.dot(b - a, b - a))
    return 0.0 <= along <= 1.0


def zone_depth(polygon: np.ndarray, point: np.ndarray) -> float:
    """Signed distance in pixels of ``point`` from the border of ``polygon`` [K, 2]: positive
    inside, negative outside."""
    return float(cv2.pointPolygonTest(polygon, (float(point[0]), float(point[1])), True))


def anchors(boxes: np.ndarray, anchor: Anchor) -> np.ndarray:
    """float64 [N, 2] anchor points of boxes [N, 4] xyxy."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    x = (boxes[:, 0] + boxes[:, 2]) / 2
    y = boxes[:, 3] if anchor == "bottom_center" else (boxes[:, 1] + boxes[:, 3]) / 2
    return np.stack([x, y], axis=1)


@dataclass
class _Track:
    """What one track did so far in one source."""

    last_index: int
    label: str
    stays: dict[str, tuple[float, float]] = field(default_factory=dict)
    """zone -> (PTS seconds it entered, PTS seconds it was last seen inside)."""
    sides: dict[str, tuple[int, np.ndarray]] = field(default_factory=dict)
    """line -> (its side now: -1 in, +1 out; its last anchor on that side)."""


@dataclass
class _SourceState:
    shapes: Shapes
    """Its zones and lines (``Zones.shapes_of``)."""
    counts: dict[str, dict[str, dict[str, int]]]
    tracks: dict[int, _Track] = field(default_factory=dict)
    last_index: int | None = None


@register("zones")
class Zones(Stage):
    """Zone occupancy, enter / leave events with dwell times, and directional line crossings
    per class, per source, from tracked objects. See the module docstring for the rules.

    Args:
        tracks: the stage whose results carry track ids (the detector a ``track`` stage
            tracks: its ``detections``).
        zones: name -> polygon, a list of [x, y] points (at least 3), or ``{points: [...],
            classes: [...]}`` to count only those class names.
        lines: name -> [[x1, y1], [x2, y2]], or ``{points: [...], classes: [...]}``. Crossing
            from the right to the left of the walk from point 1 to point 2 is ``in``.
        coordinates: ``pixels``, or ``relative`` (0..1 of the frame's width and height).
        sources: source id -> ``{zones: ..., lines: ..., coordinates: ...}``: that source's
            own zones and lines, in place of ``zones`` and ``lines`` (both; none if it gives
            none); ``coordinates`` defaults to the stage's.
        anchor: the point of a box that is the object's position: ``bottom_center`` or
            ``center``.
        margin: pixels an anchor must be past a zone's border or a line before its state or
            side changes (absorbs a detector's jitter).
        lost_after: frames a track may go unseen before it has ended (leaves its zones).
        snapshots: a folder: each frame with events is written there as JPEG
            (``<source>-<index>.jpg``, never over an earlier one), its path in those events.
    """

    stateful = True
    produces = (Analytics,)
    references: ClassVar[References] = {"tracks": (Detections, DensePoseResult)}

    def __init__(
        self,
        tracks: str,
        zones: dict[str, list[Point] | ZoneSpec] | None = None,
        lines: dict[str, tuple[Point, Point] | LineSpec] | None = None,
        coordinates: Coordinates = "pixels",
        sources: dict[str, SourceSpec] | None = None,
        anchor: Anchor = "bottom_center",
        margin: float = 2.0,
        lost_after: int = 30,
        snapshots: str | None = None,
    ) -> None:
        self.tracks = tracks
        if coordinates not in ("pixels", "relative"):
            raise ConfigError("zones: coordinates must be 'pixels' or 'relative'")
        if anchor not in ("bottom_center", "center"):
            raise ConfigError("zones: anchor must be 'bottom_center' or 'center'")
        if margin < 0:
            raise ConfigError("zones: margin must be >= 0")
        if lost_after < 0:
            raise ConfigError("zones: lost_after must be >= 0")
        self.shapes = parse_shapes(zones, lines, coordinates)
        self.sources: dict[str, Shapes] = {}
        for source_id, given in (sources or {}).items():
            spec = parse_spec(SourceSpec, given, f"zones: source {source_id!r}")
            self.sources[source_id] = parse_shapes(
                spec.zones, spec.lines, spec.coordinates or coordinates, source_id
            )
        if not self.shapes and not any(self.sources.values()):
            raise ConfigError("zones: give at least one zone or line (for every source, or "
                              "for some under sources:)")  # fmt: skip
        self.coordinates, self.anchor = coordinates, anchor
        self.margin, self.lost_after = float(margin), lost_after
        self.snapshots = Path(snapshots) if snapshots else None
        self.states: dict[str, _SourceState] = {}
        self.totals = {"events": 0, "gaps": 0}

    def open(self) -> None:
        if self.snapshots is not None:
            try:
                self.snapshots.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise SinkError(f"zones: cannot write snapshots to {self.snapshots}: "
                                f"{error.strerror}") from None  # fmt: skip

    def shapes_of(self, source_id: str) -> Shapes:
        """The zones and lines of ``source_id``: its own under ``sources:``, else the
        stage's."""
        return self.sources.get(source_id, self.shapes)

    def geometry(self, source_id: str, width: int, height: int) -> Geometry:
        """The zones and lines of ``source_id`` in pixels of a ``width`` x ``height`` frame."""
        return self.shapes_of(source_id).in_pixels(width, height)

    def on_gap(self, source_id: str, missing: int) -> None:
        """Counts the gap. Its effect needs nothing here: tracks are aged by frame index, so
        the next frame ends every track unseen for more than ``lost_after`` frames."""
        self.totals["gaps"] += 1

    def on_source_end(self, source_id: str) -> None:
        self.states.pop(source_id, None)

    def process(self, frame: Frame) -> Frame:
        state = self.states.get(frame.source_id)
        if state is None:
            shapes = self.shapes_of(frame.source_id)
            if self.sources and frame.source_id not in self.sources:
                log.info("zones %s: source %r is not under sources: it has the stage's zones "
                         "and lines", self.name, frame.source_id)  # fmt: skip
            counts = {name: {d: {} for d in DIRECTIONS} for name in shapes.lines}
            state = self.states[frame.source_id] = _SourceState(shapes, counts)
        shapes = state.shapes
        geometry = shapes.in_pixels(frame.image.shape[1], frame.image.shape[0])
        now = frame.time
        wall = time.time() - (time.monotonic() - frame.capture_time)
        events: list[Event] = []

        def event(kind: str, track_id: int, label: str, where: str, **extra: Any) -> None:
            events.append(Event(kind, frame.source_id, now, wall, frame.index, track_id, label,
                                where, **extra))  # fmt: skip

        def end(track_id: int) -> None:
            track = state.tracks.pop(track_id)
            for zone, (entered, last) in track.stays.items():
                event("leave", track_id, track.label, zone, dwell_s=last - entered)

        # tracks unseen on more than lost_after frames (dropped ones included) have ended
        restarted = state.last_index is not None and frame.index <= state.last_index
        state.last_index = frame.index
        for track_id, track in list(state.tracks.items()):
            if restarted or frame.index - track.last_index - 1 > self.lost_after:
                end(track_id)

        observed = self._observed(frame)
        for track_id, label, point in observed:
            track = state.tracks.get(track_id)
            if track is None:
                track = state.tracks[track_id] = _Track(frame.index, label)
            track.last_index, track.label = frame.index, label
            for zone, polygon in geometry.zones.items():
                classes = shapes.zones[zone][1]
                if classes is not None and label not in classes:
                    continue
                depth = zone_depth(polygon, point)
                stay = track.stays.get(zone)
                if stay is not None and depth >= -self.margin:  # still inside
                    track.stays[zone] = (stay[0], now)
                elif stay is not None:
                    del track.stays[zone]
                    event("leave", track_id, label, zone, dwell_s=stay[1] - stay[0])
                elif depth > self.margin:
                    track.stays[zone] = (now, now)
                    event("enter", track_id, label, zone)
            for name, line in geometry.lines.items():
                classes = shapes.lines[name][1]
                if classes is not None and label not in classes:
                    continue
                distance = line_side(line, point)
                if abs(distance) <= self.margin:
                    continue  # on the line: its side is what it was
                side = -1 if distance < 0 else 1
                held = track.sides.get(name)
                if held is not None and held[0] != side and cuts_segment(line, held[1], point):
                    direction = "in" if side < 0 else "out"
                    per_label = state.counts[name][direction]
                    per_label[label] = per_label.get(label, 0) + 1
                    event("cross", track_id, label, name, direction=direction)
                track.sides[name] = (side, point)
        for track_id, track in list(state.tracks.items()):
            if frame.index - track.last_index > self.lost_after:  # and not seen on this one
                end(track_id)

        if events and self.snapshots is not None:
            events = self._snapshot(frame, events)
        self.totals["events"] += len(events)
        frame.results[self.name] = ZoneAnalytics(
            events=events,
            occupancy={z: sum(z in t.stays for t in state.tracks.values()) for z in shapes.zones},
            line_counts=_copy_counts(state.counts),
            geometry=geometry,
        )
        return frame

    def _observed(self, frame: Frame) -> list[tuple[int, str, np.ndarray]]:
        """(track id, class name, anchor) of each tracked object on the frame, one per id."""
        result = frame.results.get(self.tracks)
        if not isinstance(result, Detections | DensePoseResult):
            return []  # its stage failed on this frame: nothing seen
        if result.track_ids is None:
            raise ConfigError(
                f"zones: the results of {self.tracks!r} carry no track ids: put a `track` "
                f"stage with detections: {self.tracks} before {self.name!r}"
            )
        points = anchors(result.boxes, self.anchor)
        seen: dict[int, tuple[int, str, np.ndarray]] = {}
        for i, track_id in enumerate(np.asarray(result.track_ids).tolist()):
            if track_id < 0 or track_id in seen:
                continue  # no track yet; or a second box claiming the same id
            label = result.label(i) if isinstance(result, Detections) else "person"
            seen[track_id] = (track_id, label, points[i])
        return list(seen.values())

    def _snapshot(self, frame: Frame, events: list[Event]) -> list[Event]:
        assert self.snapshots is not None
        ok, data = cv2.imencode(".jpg", frame.image)
        stem = self.snapshots / f"{safe_name(frame.source_id)}-{frame.index:08d}"
        try:  # a source that starts over has the same indexes: never over an earlier picture
            _, path, fd = claim(lambda n: stem.with_name(f"{stem.name}{f'-{n}' if n else ''}.jpg"))
        except SinkError as error:
            log.warning("zones: could not write a snapshot: %s", error)
            return events
        with os.fdopen(fd, "wb") as file:
            file.write(data.tobytes() if ok else b"")
        return [dataclasses.replace(e, snapshot=str(path)) for e in events]

    def status(self) -> dict[str, Any]:
        live = sum(len(state.tracks) for state in list(self.states.values()))
        return {"tracks": live, **{k: v for k, v in self.totals.items() if v}}


def _copy_counts(counts: dict[str, dict[str, dict[str, int]]]) -> dict:
    """A copy of line counts to hand on (the stage goes on counting in its own)."""
    return {line: {d: dict(labels) for d, labels in by.items()} for line, by in counts.items()}

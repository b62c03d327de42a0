"""The ``zones`` stage (stages/zones.py): zone occupancy, enter / leave events and dwell
times, directional line crossings, on a synthetic scene with known trajectories checked
against analytic ground truth; gaps, relative coordinates, classes, sources and each
source's own zones and lines, snapshots, drawing, config checks, and jobs through run.py
with real detectors and tracker."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from pipeline.config import build_graph, parse_config
from pipeline.errors import ConfigError
from pipeline.frame import Frame
from pipeline.results import Analytics, DensePoseResult, Detections, frame_events
from stages.render import Draw
from stages.render import annotators as annotators_module
from stages.zones import ZoneAnalytics, Zones
from stages.zones_geometry import Geometry
from tests.conftest import ROOT

# The scene: 640 x 480, 60 frames at irregular times (PTS in ms: 40 i + 7 (i mod 3)), so a
# dwell in frames and a dwell in source time differ.
WIDTH, HEIGHT, FRAMES = 640, 480, 60
TIME_BASE = Fraction(1, 1000)
PTS = [40 * i + 7 * (i % 3) for i in range(FRAMES)]


def seconds(index: int) -> float:
    return float(PTS[index] * TIME_BASE)


# Each object: class name and its anchor (bottom centre of its box) at frame t, or None
# where it is not seen. Straight lines at constant speed; 5 jitters 1.5 px about its path.
TRAJECTORIES: dict[int, tuple[str, Callable[[int], tuple[float, float] | None]]] = {
    1: ("person", lambda t: (25 + 10 * t, 207)),  # east through door, over fence, into yard
    2: ("person", lambda t: (200, 23 + 8 * t)),  # south through door and over gate
    3: ("car", lambda t: (420, 382 - 5 * t)),  # north over gate, into yard's tip
    4: ("person", lambda t: (470, 302 - 5 * t)),  # north past gate's end, through yard
    5: ("person", lambda t: (520 - 0.5 * t + 1.5 * (-1) ** t, 350)),  # west over fence, jittering
    6: ("person", lambda t: (150, 150 + t) if t < 20 else None),  # in door, vanishes at 20
}
DOOR = [[100, 100], [300, 100], [300, 300], [100, 300]]
YARD = [[350, 50], [600, 50], [600, 300]]  # inside: y > 50, x < 600, y < x - 300
GATE = [[50, 250], [450, 250]]  # walking east: "in" (the left) is north
FENCE = [[500, 400], [500, 100]]  # walking north: "in" is west
CONFIG = {
    "zones": {"door": DOOR, "yard": YARD, "yard_cars": {"points": YARD, "classes": ["car"]}},
    "lines": {"gate": GATE, "gate_cars": {"points": GATE, "classes": ["car"]}, "fence": FENCE},
}
MARGIN = 2.0  # the default


def relative(points: list[list[float]]) -> list[list[float]]:
    return [[x / WIDTH, y / HEIGHT] for x, y in points]


def box(anchor: tuple[float, float], scale: float = 1.0) -> list[float]:
    x, y = anchor
    return [x - 10 * scale, y - 40 * scale, x + 10 * scale, y]


def scene(scale: float = 1.0, source: str = "cam", only: set[int] | None = None) -> list[Frame]:
    """The scene's frames with tracked ``Detections`` under "found" (``scale``: every
    coordinate and the frame size times it)."""
    names = ("person", "car")
    frames = []
    for t in range(FRAMES):
        boxes, classes, ids = [], [], []
        for track_id, (label, path) in TRAJECTORIES.items():
            anchor = path(t)
            if anchor is None or (only is not None and track_id not in only):
                continue
            boxes.append(box((anchor[0] * scale, anchor[1] * scale), scale))
            classes.append(names.index(label))
            ids.append(track_id)
        size = (round(HEIGHT * scale), round(WIDTH * scale), 3)
        frame = Frame(np.zeros(size, np.uint8), PTS[t], TIME_BASE, t, source)
        frame.results["found"] = Detections(boxes, [0.9] * len(boxes), classes, track_ids=ids,
                                            class_names=names)  # fmt: skip
        frames.append(frame)
    return frames


def make(config: dict | None = None, **options) -> Zones:
    stage = Zones(tracks="found", **(CONFIG if config is None else config), **options)
    stage.name = "zones"
    return stage


def run(stage: Zones, frames: list[Frame]) -> list[Analytics]:
    out = []
    for frame in frames:
        result = stage.process(frame).results["zones"]
        assert isinstance(result, ZoneAnalytics)
        out.append(result)
    return out


# --- ground truth, from the trajectories and the shapes' equations alone


def door_depth(x: float, y: float) -> float:
    """Signed distance from DOOR's border (positive inside)."""
    if 100 <= x <= 300 and 100 <= y <= 300:
        return min(x - 100, 300 - x, y - 100, 300 - y)
    return -math.hypot(max(100 - x, 0, x - 300), max(100 - y, 0, y - 300))


def yard_depth(x: float, y: float) -> float:
    """Signed distance from YARD's border: inside, to its nearest edge; outside, how far past
    the edge it broke (exact where these trajectories leave it)."""
    edges = (y - 50, 600 - x, (x - 300 - y) / math.sqrt(2))
    return min(edges) if min(edges) >= 0 else min(e for e in edges if e < 0)


# line -> (its coordinate across the line, + on the "out" side; the position along it; the
# segment's extent along it)
LINE_TRUTH = {
    "gate": (lambda x, y: y - 250, lambda x, y: x, (50, 450)),
    "fence": (lambda x, y: x - 500, lambda x, y: y, (100, 400)),
}
LINE_TRUTH["gate_cars"] = LINE_TRUTH["gate"]
ZONE_TRUTH = {"door": door_depth, "yard": yard_depth, "yard_cars": yard_depth}
CLASSES = {"yard_cars": {"car"}, "gate_cars": {"car"}}


def ground_truth(margin: float = MARGIN, lost_after: int = 30):
    """Per frame: sorted events (frame, kind, track, label, where, direction, dwell_s),
    occupancy, and line counts so far, by the documented rules."""
    inside: dict[tuple[int, str], tuple[int, int]] = {}  # (track, zone) -> first, last frame
    sides: dict[tuple[int, str], tuple[int, float, float]] = {}  # side, across, along
    last_seen: dict[int, int] = {}
    counts = {line: {"in": Counter(), "out": Counter()} for line in LINE_TRUTH}
    per_frame = []
    for t in range(FRAMES):
        events = []

        def end(track_id: int, t: int, events: list) -> None:
            for (tid, zone), (first, last) in list(inside.items()):
                if tid == track_id:
                    label = TRAJECTORIES[tid][0]
                    events.append((t, "leave", tid, label, zone, None,
                                   seconds(last) - seconds(first)))  # fmt: skip
                    del inside[(tid, zone)]
            for key in [k for k in sides if k[0] == track_id]:
                del sides[key]
            del last_seen[track_id]

        for track_id, seen in list(last_seen.items()):
            if t - seen - 1 > lost_after:  # unseen on more than lost_after frames before this
                end(track_id, t, events)
        for track_id, (label, path) in TRAJECTORIES.items():
            anchor = path(t)
            if anchor is None:
                continue
            last_seen[track_id] = t
            x, y = anchor
            for zone, depth_of in ZONE_TRUTH.items():
                if label not in CLASSES.get(zone, {label}):
                    continue
                depth, key = depth_of(x, y), (track_id, zone)
                if key in inside and depth >= -margin:
                    inside[key] = (inside[key][0], t)
                elif key in inside:
                    first, last = inside.pop(key)
                    events.append((t, "leave", track_id, label, zone, None,
                                   seconds(last) - seconds(first)))  # fmt: skip
                elif depth > margin:
                    inside[key] = (t, t)
                    events.append((t, "enter", track_id, label, zone, None, None))
            for line, (across_of, along_of, (lo, hi)) in LINE_TRUTH.items():
                if label not in CLASSES.get(line, {label}):
                    continue
                across, along = across_of(x, y), along_of(x, y)
                if abs(across) <= margin:
                    continue
                side, key = (1 if across > 0 else -1), (track_id, line)
                if key in sides and sides[key][0] != side:
                    _, across0, along0 = sides[key]
                    at = along0 + (along - along0) * across0 / (across0 - across)
                    if lo <= at <= hi:
                        direction = "in" if side < 0 else "out"
                        counts[line][direction][label] += 1
                        events.append((t, "cross", track_id, label, line, direction, None))
                sides[key] = (side, across, along)
        for track_id, seen in list(last_seen.items()):
            if t - seen > lost_after:  # unseen on this frame too
                end(track_id, t, events)
        occupancy = {z: sum(zone == z for _, zone in inside) for z in ZONE_TRUTH}
        line_counts = {line: {d: dict(c) for d, c in by.items()} for line, by in counts.items()}
        per_frame.append((sorted(events, key=repr), occupancy, line_counts))
    return per_frame


def as_tuples(result: Analytics) -> list[tuple]:
    return sorted(((e.frame_index, e.kind, e.track_id, e.label, e.where, e.direction,
                    e.dwell_s) for e in result.events), key=repr)  # fmt: skip


def test_the_ground_truth_is_what_the_trajectories_say() -> None:
    """The truth, worked out by hand from the trajectories (guards the truth's own code)."""
    events = [e for frame_events_, _, _ in ground_truth() for e in frame_events_]
    short = [(t, kind, tid, where, direction) for t, kind, tid, _, where, direction, _ in events]
    assert short == [
        (0, "enter", 6, "door", None),
        (8, "enter", 1, "door", None),  # x 105: 5 px inside, past the 2 px margin
        (10, "enter", 2, "door", None),  # y 103
        (27, "cross", 3, "gate", "in"),  # y 247: at y 252 (t 26) it was within the margin
        (27, "cross", 3, "gate_cars", "in"),
        (27, "enter", 4, "yard", None),  # y 167 < x - 300 - 2 sqrt 2
        (28, "leave", 1, "door", None),
        (29, "cross", 2, "gate", "out"),  # y 255; track 4's pass beyond gate's end is none
        (35, "leave", 2, "door", None),
        (43, "cross", 5, "fence", "in"),  # x 497: its jitter about x 500 counts once
        (48, "cross", 1, "fence", "out"),
        (49, "enter", 1, "yard", None),
        (50, "leave", 6, "door", None),  # unseen since 19: lost after 30 frames
        (51, "leave", 4, "yard", None),
        (53, "enter", 3, "yard", None),  # the car: yard and yard_cars
        (53, "enter", 3, "yard_cars", None),
        (58, "leave", 1, "yard", None),
    ]
    dwell = {(tid, where): d for _, kind, tid, _, where, _, d in events if kind == "leave"}
    assert dwell[(1, "door")] == seconds(27) - seconds(8) == pytest.approx(0.746)
    assert dwell[(6, "door")] == seconds(19) - seconds(0) == pytest.approx(0.767)


def test_counts_dwell_times_occupancy_and_events_equal_the_ground_truth() -> None:
    results = run(make(), scene())
    truth = ground_truth()
    for t, (result, truth_t) in enumerate(zip(results, truth, strict=True)):
        events, occupancy, line_counts = truth_t
        assert as_tuples(result) == events, t  # one for one, dwell times exact in PTS
        assert result.occupancy == occupancy, t
        assert result.line_counts == line_counts, t
    assert results[-1].line_counts == {
        "gate": {"in": {"car": 1}, "out": {"person": 1}},
        "gate_cars": {"in": {"car": 1}, "out": {}},
        "fence": {"in": {"person": 1}, "out": {"person": 1}},
    }
    assert results[-1].occupancy == {"door": 0, "yard": 1, "yard_cars": 1}
    assert results[20].occupancy == {"door": 3, "yard": 0, "yard_cars": 0}  # 6 unseen, kept
    event = results[8].events[0]
    assert (event.source, event.pts_s, event.frame_index) == ("cam", seconds(8), 8)
    assert results[8].events == frame_events({"zones": results[8], "found": None})


def test_the_event_clock_is_the_frame_pts_and_its_capture_as_unix_time() -> None:
    import time

    frame = scene()[0]
    frame.capture_time = time.monotonic() - 5.0  # captured 5 s ago
    event = make().process(frame).results["zones"].events[0]
    assert event.pts_s == 0.0
    assert event.wall_time == pytest.approx(time.time() - 5.0, abs=0.5)
    assert event.to_json()["kind"] == "enter" and "dwell_s" not in event.to_json()


def test_directions_agree_with_supervision_line_zone() -> None:
    """The same points give supervision's LineZone the same in / out counts (objects 1-4:
    one out and one in over gate, one beyond its end; one out over fence)."""
    import supervision as sv

    frames = scene(only={1, 2, 3, 4})
    ours = run(make(), frames)[-1].line_counts
    for name, points in (("gate", GATE), ("fence", FENCE)):
        zone = sv.LineZone(start=sv.Point(*points[0]), end=sv.Point(*points[1]),
                           triggering_anchors=[sv.Position.BOTTOM_CENTER])  # fmt: skip
        for frame in frames:
            found = frame.results["found"]
            zone.trigger(sv.Detections(xyxy=found.boxes, class_id=found.class_ids,
                                       tracker_id=found.track_ids))  # fmt: skip
        assert (zone.in_count, zone.out_count) == tuple(
            sum(ours[name][d].values()) for d in ("in", "out")
        ), name
    assert ours["gate"] == {"in": {"car": 1}, "out": {"person": 1}}


def test_without_a_margin_jitter_on_a_line_counts_every_time() -> None:
    """Why ``margin`` exists: object 5 zigzags over fence 1.5 px each way (ground truth with
    no margin: 3 in, 2 out); with the default 2 px it is one passage."""
    results = run(make(margin=0), scene(only={5}))
    assert results[-1].line_counts["fence"] == {"in": {"person": 3}, "out": {"person": 2}}
    truth = ground_truth(margin=0)
    assert [as_tuples(r) for r in results] == [
        [e for e in events if e[2] == 5] for events, _, _ in truth
    ]
    assert run(make(), scene(only={5}))[-1].line_counts["fence"] == {
        "in": {"person": 1}, "out": {}}  # fmt: skip


def test_relative_coordinates_give_the_same_events_at_any_frame_size() -> None:
    config = {
        "zones": {"door": relative(DOOR), "yard": relative(YARD),
                  "yard_cars": {"points": relative(YARD), "classes": ["car"]}},
        "lines": {"gate": relative(GATE), "gate_cars": {"points": relative(GATE),
                  "classes": ["car"]}, "fence": relative(FENCE)},
    }  # fmt: skip
    pixels = [as_tuples(r) for r in run(make(), scene())]
    assert [as_tuples(r) for r in run(make(config, coordinates="relative"), scene())] == pixels
    # the scene at twice the size (the margin is pixels: twice it too)
    double = run(make(config, coordinates="relative", margin=2 * MARGIN), scene(scale=2))
    assert [as_tuples(r) for r in double] == pixels
    assert double[0].geometry.zones["door"].tolist() == [[2 * x, 2 * y] for x, y in DOOR]


def one_object(stage: Zones, index: int, anchor: tuple[float, float] | None,
               source: str = "cam", track_id: int = 7) -> Analytics:  # fmt: skip
    """One frame (PTS = 10 ms per index) with one tracked person at ``anchor`` (or none)."""
    boxes = [box(anchor)] if anchor is not None else []
    frame = Frame(np.zeros((HEIGHT, WIDTH, 3), np.uint8), 10 * index, TIME_BASE, index, source)
    frame.results["found"] = Detections(boxes, [0.9] * len(boxes), [0] * len(boxes),
                                        track_ids=[track_id] * len(boxes),
                                        class_names=("person",))  # fmt: skip
    return stage.process(frame).results["zones"]


def kinds(result: Analytics) -> list[tuple]:
    return [(e.kind, e.where, e.direction, e.dwell_s) for e in result.events]


def test_a_short_gap_is_stayed_through_and_a_long_one_ends_the_stay() -> None:
    stage = make({"zones": {"door": DOOR}}, lost_after=10)
    assert kinds(one_object(stage, 0, (150, 150))) == [("enter", "door", None, None)]
    for index in range(1, 5):
        assert kinds(one_object(stage, index, (150, 150))) == []
    stage.on_gap("cam", 10)  # frames 5-14 dropped: not more than lost_after
    assert kinds(one_object(stage, 15, (150, 150))) == []  # the same stay goes on
    stage.on_gap("cam", 11)  # frames 16-26 dropped: the track has ended
    result = one_object(stage, 27, (150, 150))
    # the old stay leaves with its dwell up to its last sighting (frame 15, 0.15 s); the
    # same id seen after the gap is a new stay
    assert kinds(result) == [("leave", "door", None, 0.15), ("enter", "door", None, None)]
    assert result.occupancy == {"door": 1}
    assert kinds(one_object(stage, 28, (350, 150))) == [("leave", "door", None, 0.0)]
    assert stage.status() == {"tracks": 1, "events": 4, "gaps": 2}


def test_a_track_lost_on_a_line_forgets_its_side() -> None:
    stage = make({"lines": {"gate": GATE}}, lost_after=3)
    one_object(stage, 0, (200, 230))
    stage.on_gap("cam", 3)  # unseen on 3 frames: the track goes on, it crossed meanwhile
    assert kinds(one_object(stage, 4, (200, 270))) == [("cross", "gate", "out", None)]
    stage.on_gap("cam", 4)  # unseen on 4: it has ended
    assert one_object(stage, 9, (200, 230)).events == []  # the same id anew: no side yet
    assert kinds(one_object(stage, 10, (200, 270))) == [("cross", "gate", "out", None)]


def test_a_source_that_starts_over_ends_its_tracks() -> None:
    stage = make({"zones": {"door": DOOR}})
    one_object(stage, 0, (150, 150))
    one_object(stage, 1, (150, 150))
    assert kinds(one_object(stage, 0, (150, 150))) == [
        ("leave", "door", None, 0.01), ("enter", "door", None, None)]  # fmt: skip


def test_a_frame_without_the_tracked_result_is_one_where_nothing_was_seen() -> None:
    stage = make({"zones": {"door": DOOR}}, lost_after=1)
    one_object(stage, 0, (150, 150))
    empty = Frame(np.zeros((HEIGHT, WIDTH, 3), np.uint8), 10, TIME_BASE, 1, "cam")
    assert stage.process(empty).results["zones"].occupancy == {"door": 1}  # its detector failed
    empty = Frame(np.zeros((HEIGHT, WIDTH, 3), np.uint8), 20, TIME_BASE, 2, "cam")
    assert kinds(stage.process(empty).results["zones"]) == [("leave", "door", None, 0.0)]


def test_sources_are_counted_apart_and_freed_at_their_end() -> None:
    stage = make()
    truth = ground_truth()
    quiet = scene(source="b", only={6})  # b: only the object that vanishes in door
    for t, (a, b) in enumerate(zip(scene(source="a"), quiet, strict=True)):
        result_a = stage.process(a).results["zones"]
        result_b = stage.process(b).results["zones"]
        assert as_tuples(result_a) == truth[t][0]
        assert {e.source for e in result_a.events} <= {"a"}
        assert {e.source for e in result_b.events} <= {"b"}
    assert result_a.line_counts["fence"] == {"in": {"person": 1}, "out": {"person": 1}}
    assert result_b.line_counts["fence"] == {"in": {}, "out": {}}
    stage.on_source_end("a")
    assert set(stage.states) == {"b"}


# Each source's own zones and lines (`sources:`): cam1 has door and fence; cam2 yard and gate,
# in relative coordinates (the stage's are pixels); quiet none; any other the stage's (CONFIG).
PER_SOURCE = {
    "cam1": {"zones": {"door": DOOR}, "lines": {"fence": FENCE}},
    "cam2": {"zones": {"yard": relative(YARD)}, "lines": {"gate": relative(GATE)},
             "coordinates": "relative"},
    "quiet": {"zones": {}, "lines": {}},
}  # fmt: skip
OWN = {"cam1": {"door", "fence"}, "cam2": {"yard", "gate"}, "quiet": set(),
       "cam3": set(ZONE_TRUTH) | set(LINE_TRUTH)}  # fmt: skip


def restricted(truth: tuple, names: set[str]) -> tuple:
    """One frame's ground truth for only the zones and lines ``names``."""
    events, occupancy, line_counts = truth
    return ([e for e in events if e[4] in names],
            {z: n for z, n in occupancy.items() if z in names},
            {line: c for line, c in line_counts.items() if line in names})  # fmt: skip


def test_each_source_follows_its_own_zones_and_lines() -> None:
    """The scene on four sources through one stage, frame by frame in turn: each source's
    events, occupancy and line counts are the ground truth of its own zones and lines."""
    stage = make(sources=PER_SOURCE)
    truth = ground_truth()
    streams = {source: scene(source=source) for source in OWN}
    results: dict[str, list[Analytics]] = {source: [] for source in OWN}
    for t in range(FRAMES):
        for source, names in OWN.items():
            result = stage.process(streams[source][t]).results["zones"]
            results[source].append(result)
            events, occupancy, line_counts = restricted(truth[t], names)
            assert as_tuples(result) == events, (source, t)
            assert result.occupancy == occupancy, (source, t)
            assert result.line_counts == line_counts, (source, t)
            assert {e.source for e in result.events} <= {source}
    last = {source: results[source][-1] for source in OWN}
    assert last["cam1"].line_counts == {"fence": {"in": {"person": 1}, "out": {"person": 1}}}
    assert last["cam2"].line_counts == {"gate": {"in": {"car": 1}, "out": {"person": 1}}}
    assert last["cam3"].line_counts == results_of_the_stage_alone()[-1].line_counts
    assert (last["quiet"].occupancy, last["quiet"].line_counts) == ({}, {})
    assert not any(r.events for r in results["quiet"])
    events = sum(len(r.events) for by_source in results.values() for r in by_source)
    assert stage.status() == {"tracks": 4 * 5, "events": events}  # 6 of each source ended


def results_of_the_stage_alone() -> list[Analytics]:
    return run(make(), scene())


def test_a_crossing_of_one_sources_line_is_not_counted_for_another() -> None:
    """The same walks on two cameras: east over x 500, where cam1's fence runs, then south
    over y 250, where cam2's gate (the stage's: cam2 is not under ``sources``) runs."""
    stage = make({"lines": {"gate": GATE}}, sources={"cam1": {"lines": {"fence": FENCE}}})
    walks = {7: [(480, 200), (520, 200)], 8: [(200, 230), (200, 270)]}
    results: dict[str, list[Analytics]] = {"cam1": [], "cam2": []}
    for index, (track_id, anchor) in enumerate((t, a) for t, path in walks.items() for a in path):
        for source, out in results.items():
            out.append(one_object(stage, index, anchor, source, track_id))
    assert [kinds(r) for r in results["cam1"]] == [[], [("cross", "fence", "out", None)], [], []]
    assert [kinds(r) for r in results["cam2"]] == [[], [], [], [("cross", "gate", "out", None)]]
    assert results["cam1"][-1].line_counts == {"fence": {"in": {}, "out": {"person": 1}}}
    assert results["cam2"][-1].line_counts == {"gate": {"in": {}, "out": {"person": 1}}}


def test_zones_and_lines_for_some_sources_only() -> None:
    """No zones or lines for every source: the config is valid, and a source not listed has
    none: an ``Analytics`` with no events, occupancy or line counts, nothing to draw."""
    sources = {"cam1": {"zones": {"door": DOOR}}}
    assert build_graph(parse_config(zones_config(sources=sources))) is not None
    stage = make({}, sources=sources)
    assert kinds(one_object(stage, 0, (150, 150), "cam1")) == [("enter", "door", None, None)]
    for index in range(3):
        other = one_object(stage, index, (150, 150 + 100 * index), "cam2")
        assert (other.events, other.occupancy, other.line_counts) == ([], {}, {})
    assert other.geometry == Geometry({}, {})


def test_draw_shows_each_sources_own_zones_and_lines(drawn_labels: list[str]) -> None:
    stage = make(sources=PER_SOURCE)
    draw = Draw(thickness=1)
    draw.name = "draw"
    drawn = {}
    for source in OWN:
        frame = scene(source=source, only={6})[0]  # 6 is in door
        frame.image = np.full((HEIGHT, WIDTH, 3), 100, np.uint8)
        drawn_labels.clear()
        drawn[source] = (draw.process(stage.process(frame)).image, list(drawn_labels))
    person = "#6 person 0.90"
    assert drawn["cam1"][1] == ["door: 1", "fence in 0 out 0", person]
    assert drawn["cam2"][1] == ["yard: 0", "gate in 0 out 0", person]
    assert drawn["quiet"][1] == [person]
    assert drawn["cam3"][1] == ["door: 1", "yard: 0", "yard_cars: 0", "gate in 0 out 0",
                                "gate_cars in 0 out 0", "fence in 0 out 0", person]  # fmt: skip
    shaded = {source: ((image[150, 250] != 100).any(), (image[100, 550] != 100).any())
              for source, (image, _) in drawn.items()}  # fmt: skip
    # inside door (y 150, x 250), inside yard (y 100, x 550)
    assert shaded == {"cam1": (True, False), "cam2": (False, True), "quiet": (False, False),
                      "cam3": (True, True)}  # fmt: skip
    # cam2's relative gate in pixels
    frame = scene(source="cam2")[0]
    assert stage.process(frame).results["zones"].geometry.lines["gate"].tolist() == GATE


def test_the_center_anchor() -> None:
    """A box whose bottom is in door but whose centre is not."""
    config = {"zones": {"door": DOOR}}
    bottom, centre = make(config), make(config, anchor="center")
    assert one_object(bottom, 0, (150, 110)).occupancy == {"door": 1}
    assert one_object(centre, 0, (150, 110)).occupancy == {"door": 0}  # centre at y 90


def test_densepose_people_are_counted_as_person() -> None:
    stage = Zones(tracks="people", zones={"door": {"points": DOOR, "classes": ["person"]}})
    stage.name = "zones"
    frame = Frame(np.zeros((HEIGHT, WIDTH, 3), np.uint8), 0, TIME_BASE, 0, "cam")
    part, uv = np.ones((4, 4), np.uint8), np.zeros((2, 4, 4), np.float32)
    frame.results["people"] = DensePoseResult(np.array([box((150, 150))]), [part], [uv],
                                              track_ids=np.array([3]))  # fmt: skip
    event = stage.process(frame).results["zones"].events[0]
    assert (event.kind, event.label, event.track_id) == ("enter", "person", 3)


def test_untracked_results_are_a_one_line_error() -> None:
    frame = scene()[0]
    frame.results["found"].track_ids = None
    with pytest.raises(ConfigError, match="carry no track ids: put a `track` stage"):
        make().process(frame)


def test_snapshots_are_written_for_frames_with_events(tmp_path: Path) -> None:
    stage = make(snapshots=str(tmp_path / "shots"))
    stage.open()
    results = run(stage, scene(source="door cam")[:9])
    assert [r.events[0].snapshot for r in results if r.events] == [
        str(tmp_path / "shots" / "door_cam-00000000.jpg"),
        str(tmp_path / "shots" / "door_cam-00000008.jpg"),
    ]
    assert sorted(p.name for p in (tmp_path / "shots").iterdir()) == [
        "door_cam-00000000.jpg", "door_cam-00000008.jpg"]  # fmt: skip
    image = cv2.imread(results[8].events[0].snapshot)
    assert image.shape == (HEIGHT, WIDTH, 3)
    again = make(snapshots=str(tmp_path / "shots"))  # the source starts over: same indexes
    again.open()
    first = [r.events[0].snapshot for r in run(again, scene(source="door cam")[:9]) if r.events]
    assert first[0] == str(tmp_path / "shots" / "door_cam-00000000-1.jpg")  # not over it
    assert len(list((tmp_path / "shots").iterdir())) == 4


def test_draw_shades_zones_and_shows_lines_with_their_counts(drawn_labels: list[str]) -> None:
    labels = drawn_labels
    stage = make({"zones": {"door": DOOR}, "lines": {"gate": GATE}})
    draw = Draw(thickness=1)
    draw.name = "draw"
    for frame in scene(only={2})[:30]:
        grey = np.full((HEIGHT, WIDTH, 3), 100, np.uint8)
        frame.image = grey
        labels.clear()
        image = draw.process(stage.process(frame)).image
    assert image is not grey and (grey == 100).all()  # drawn on a copy
    # zone first (under the object), then the line, then the object's box
    assert labels == ["door: 1", "gate in 0 out 1", "#2 person 0.90"]
    assert (image[200, 150] != 100).any()  # shaded inside door
    assert (image[400, 600] == 100).all()  # nothing outside it
    # gate runs east: its arrow points north from its middle (250, 250), to the in side
    line_colour = np.array(annotators_module.colour(1), int)  # the first line's
    near = np.abs(image[:, 250].astype(int) - line_colour).max(axis=1) < 20  # (antialiased)
    assert near[216:250].all()  # the arrow's shaft, 40 px long (its head under the label)
    assert not near[275:300].any()  # nothing of it south of the line's label


def zones_config(**zones: object) -> dict:
    return {"stages": [
        {"name": "source", "kind": "synthetic", "frames": 3},
        {"name": "found", "kind": "motion"},
        {"name": "tracks", "kind": "track", "detections": "found"},
        {"name": "counting", "kind": "zones", **{"tracks": "found", **zones}},
        {"name": "out", "kind": "discard"},
    ]}  # fmt: skip


@pytest.mark.parametrize(
    ("zones", "message"),
    [
        ({"tracks": "nope", "zones": {"a": DOOR}}, "tracks: 'nope' is not a stage before"),
        # the track stage puts its ids on the detector's result: that is the one to name
        ({"tracks": "tracks", "zones": {"a": DOOR}}, "'tracks' gives no results.*'found'"),
        ({}, "at least one zone or line"),
        ({"zones": {"a": [[0, 0], [10, 10]]}}, "zone 'a' needs at least 3 points"),
        ({"zones": {"a": [[0, 0], [10, 10], [20, 20]]}}, "enclosing an area"),
        ({"lines": {"a": [[5, 5], [5, 5]]}}, "line 'a' has two equal points"),
        ({"lines": {"a": [[5, 5], [5, 5], [6, 6]]}}, "lines"),
        ({"zones": {"a": DOOR}, "coordinates": "relative"}, "relative coordinates must be in"),
        ({"zones": {"a": DOOR}, "lines": {"a": GATE}}, "'a' names both a zone and a line"),
        ({"zones": {"a": {"points": DOOR, "class": ["car"]}}}, "zones"),
        ({"zones": {"a": DOOR}, "anchor": "top"}, "anchor"),
        ({"zones": {"a": DOOR}, "margin": -1}, "margin must be >= 0"),
        ({"zones": {"a": DOOR}, "lost_after": -1}, "lost_after must be >= 0"),
        # each source's zones and lines are checked as the stage's, naming the source
        ({"sources": {"cam2": {}}}, "at least one zone or line"),
        ({"sources": {"cam2": {"zones": {}, "lines": {}}}}, "at least one zone or line"),
        (
            {"sources": {"cam2": {"zones": {"door": [[0, 0], [10, 10]]}}}},
            "^zones: source 'cam2': zone 'door' needs at least 3 points enclosing an area$",
        ),
        (
            {"zones": {"a": DOOR}, "sources": {"cam2": {"lines": {"b": [[5, 5], [5, 5]]}}}},
            "^zones: source 'cam2': line 'b' has two equal points$",
        ),
        (
            {"sources": {"cam2": {"zones": {"a": DOOR}, "lines": {"a": GATE}}}},
            "^zones: source 'cam2': 'a' names both a zone and a line$",
        ),
        (
            {"sources": {"cam2": {"zones": {"a": DOOR}, "coordinates": "relative"}}},
            "^zones: source 'cam2': zone 'a': relative coordinates must be in 0..1",
        ),
        # a source's coordinates are the stage's unless it gives its own
        (
            {"coordinates": "relative", "sources": {"cam2": {"lines": {"a": GATE}}}},
            "^zones: source 'cam2': line 'a': relative coordinates must be in 0..1",
        ),
        (
            {"sources": {"cam2": {"zones": {"a": DOOR}, "coordinates": "metres"}}},
            "sources.cam2.coordinates",
        ),
        (
            {"sources": {"cam2": {"zones": {"a": DOOR}, "anchor": "center"}}},
            "unknown key 'sources.cam2.anchor'",
        ),
        ({"sources": {"cam2": {"lines": {"a": [[5, 5], [5, 5], [6, 6]]}}}}, "sources.cam2.lines.a"),
    ],
)
def test_config_mistakes_are_one_line_errors(zones: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        build_graph(parse_config(zones_config(**zones)))
    assert "\n" not in str(error.value)


def test_source_mistakes_in_code_are_one_line_errors_too() -> None:
    """Built from code (not through the config's types), a source's entry is checked alike."""
    for sources, message in [
        ({"cam2": {"zones": {"a": DOOR}, "anchor": "center"}},
         "^zones: source 'cam2': unknown key 'anchor'$"),
        ({"cam2": [DOOR]}, "^zones: source 'cam2': expected a mapping"),
        ({"cam2": {"zones": {"a": {"points": DOOR, "class": ["car"]}}}},
         "^zones: source 'cam2': unknown key 'zones.a.ZoneSpec.class'$"),
        ({"cam2": {"zones": {"a": [[0, 0], [1, 0], [float("nan"), 1]]}}},
         "^zones: source 'cam2': zone 'a' has a coordinate that is not a number$"),
    ]:  # fmt: skip
        with pytest.raises(ConfigError, match=message) as error:
            make(sources=sources)
        assert "\n" not in str(error.value)


def test_a_config_with_zones_and_lines_builds() -> None:
    lines = {"b": {"points": [[0, 0.5], [1, 0.5]], "classes": ["motion"]}}
    config = zones_config(coordinates="relative", zones={"a": [[0, 0], [1, 0], [0.5, 1]]},
                          lines=lines)  # fmt: skip
    graph = build_graph(parse_config(config))
    assert graph is not None


def run_job(config: dict, tmp_path: Path) -> list[dict]:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), str(path), "--no-progress"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]


def check_consistent(records: list[dict], name: str) -> list[dict]:
    """Every frame: line counts = the cross events so far, occupancy = enters - leaves so
    far; every leave ends an earlier enter of its track, with a dwell within it. Returns the
    events."""
    crossed: Counter = Counter()
    inside: dict[tuple[int, str], float] = {}
    events = []
    for record in records:
        analytics = record["results"][name]
        for event in analytics["events"]:
            events.append(event)
            key = (event["track_id"], event["where"])
            if event["kind"] == "cross":
                crossed[(event["where"], event["direction"], event["label"])] += 1
            elif event["kind"] == "enter":
                assert key not in inside
                inside[key] = event["pts_s"]
            else:
                entered = inside.pop(key)
                assert 0 <= event["dwell_s"] <= event["pts_s"] - entered + 1e-9
        counts = {(line, d, label): n for line, by in analytics["line_counts"].items()
                  for d, labels in by.items() for label, n in labels.items()}  # fmt: skip
        assert counts == dict(crossed)
        zones = {zone for _, zone in inside} | set(analytics["occupancy"])
        assert analytics["occupancy"] == {z: sum(w == z for _, w in inside) for z in zones}
    return events


def test_squares_counted_through_the_real_motion_detector_and_tracker(tmp_path: Path) -> None:
    """Three squares rendered on a plain background, found by ``motion``, tracked by
    ``track``, counted by ``zones``: the counts are the truth (2 out, 1 in; each square in
    and out of the zone once), the dwell times within two frames of it."""
    frames, fps, side = 75, 30, 24
    paths = {50: (20, 4), 120: (290, -4), 190: (20, 4)}  # row -> start x, px per frame
    folder = tmp_path / "frames"
    folder.mkdir()
    for t in range(frames):
        image = np.full((240, 320, 3), 90, np.uint8)
        if t >= 5:  # the background alone first: the detector learns it
            for row, (x0, step) in paths.items():
                x = x0 + step * (t - 5)
                cv2.rectangle(image, (x, row - side // 2), (x + side, row + side // 2),
                              (230, 230, 230), -1)  # fmt: skip
        cv2.imwrite(str(folder / f"{t:04d}.png"), image)
    config = {"stages": [
        {"name": "source", "kind": "images", "path": str(folder), "fps": fps},
        {"name": "moving", "kind": "motion"},
        {"name": "tracks", "kind": "track", "detections": "moving"},
        {"name": "counting", "kind": "zones", "tracks": "moving",
         "zones": {"middle": [[100, 5], [220, 5], [220, 235], [100, 235]]},
         "lines": {"fence": [[160, 235], [160, 5]]}},
        {"name": "out", "kind": "jsonl", "path": str(tmp_path / "out.jsonl")},
    ]}  # fmt: skip
    records = run_job(config, tmp_path)
    events = check_consistent(records, "counting")
    assert records[-1]["results"]["counting"]["line_counts"] == {
        "fence": {"in": {"motion": 1}, "out": {"motion": 2}}}  # fmt: skip
    crossings = [e for e in events if e["kind"] == "cross"]
    assert len({e["track_id"] for e in crossings}) == 3
    leaves = [e for e in events if e["kind"] == "leave"]
    assert Counter(e["kind"] for e in events) == {"cross": 3, "enter": 3, "leave": 3}
    # a square's centre moves 4 px a frame: inside 100..220 (2 px margin) for 29 frames
    for leave in leaves:
        assert leave["dwell_s"] == pytest.approx(28 / fps, abs=2 / fps)


def test_counting_yaml_runs_on_the_street_clip(tmp_path: Path) -> None:
    """configs/counting.yaml as shipped (outputs moved): people on the bundled clip cross its
    line and walk through its zone; counts and occupancy agree with the events."""
    config = yaml.safe_load((ROOT / "configs" / "counting.yaml").read_text())
    for stage in config["stages"]:
        if stage["kind"] == "file":
            stage["path"] = str(ROOT / stage["path"])
        if stage["kind"] == "video_file":
            stage["path"] = str(tmp_path / "out.mp4")
        if stage["kind"] == "jsonl":
            stage["path"] = str(tmp_path / "out.jsonl")
    records = run_job(config, tmp_path)
    assert len(records) == 300 and (tmp_path / "out.mp4").stat().st_size > 0
    events = check_consistent(records, "counting")
    found = Counter((e["kind"], e.get("direction")) for e in events)
    assert found[("cross", "in")] >= 2 and found[("cross", "out")] >= 1, found
    assert found[("enter", None)] >= 5 and found[("leave", None)] >= 5, found
    assert all(e["dwell_s"] > 0 for e in events if e["kind"] == "leave")

"""Track ids for detections: a maintained multi-object tracker behind one ``track`` stage.

The trackers are Roboflow's ``trackers`` package (Apache-2.0): ByteTrack (the default) or
OC-SORT, Kalman-filtered boxes matched by IoU with the Hungarian algorithm. This stage only
adapts them to the graph: one tracker per source and per tracked result, the source's frame
index as the tracker's clock, and ids written back into the results it tracks.

Where the ids go: ``track`` replaces each result it names (``detections: instances``) with a
copy that carries ``track_ids``, under the same name, in this frame's own results (a fan-out
branch's results dict is its own; the arrays are shared, never written). So ``draw``,
``jsonl`` and every later stage see the ids on the detector's own result, and nothing else in
a config changes. Place it right after its detector, before any fan-out: a join keeps the
first branch's copy of a result.

Ids: 1, 2, ... per source and tracked result, never reused while the source runs; -1 marks a
detection on no confirmed track: a track's first sighting (the library confirms it at its
second at the earliest, later with a larger ``minimum_consecutive_frames``), or a box that
continued no track and scored too low to start one. ``draw`` shows those without an id.

Time and gaps: the tracker's clock is the frame index (the library's timestamp is
``index / 30``, one of its reference frames per source frame), so frames dropped upstream (an
index gap) are time the Kalman filter predicts over: an object keeps its id across a short
gap, found where its track's motion has taken it. A gap longer than ``lost_track_buffer``
frames (``on_gap``) ends the source's tracks at once: what comes after is new. Frames that
arrive without the tracked result (its stage failed on them) are treated like dropped frames.

VPSNet (``vpsnet``) keeps its own learned tracker; its panoptic results are not ``track``'s.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, ClassVar, Literal

import numpy as np

from pipeline.config import register
from pipeline.errors import ConfigError
from pipeline.frame import Frame
from pipeline.results import DensePoseResult, Detections
from pipeline.stage import References, Stage

TrackerName = Literal["bytetrack", "ocsort"]
TRACKERS: dict[str, str] = {
    "bytetrack": "ByteTrackTracker",
    "ocsort": "OCSORTTracker",
}
"""``tracker:`` value -> the ``trackers`` package's class."""
CLOCK_RATE = 30.0
"""Frames per second of the tracker's clock (the library's reference rate): a frame index
step is one library frame, so ``lost_track_buffer`` counts source frames at any real rate."""


def tracker_class(name: str) -> type:
    """The ``trackers`` class for a ``tracker:`` name (imported on first use: the package
    brings supervision and scipy, which only configs that track need)."""
    return getattr(importlib.import_module("trackers"), TRACKERS[name])


class SourceTracks:
    """One library tracker over the frames of one source (and one tracked result).

    Args:
        make: builds a fresh library tracker.
    """

    def __init__(self, make: Any) -> None:
        self.make = make
        self.tracker = make()
        self.first_id = 1  # our id of the library's id 0; moves on at each reset
        self.highest = 0  # the highest id given so far
        self.last_index: int | None = None

    def reset(self) -> None:
        """Ends every track; later ids continue after the highest given (never reused)."""
        self.tracker = self.make()
        self.first_id = self.highest + 1
        self.last_index = None

    def update(
        self, boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, index: int
    ) -> np.ndarray:
        """One frame's boxes -> their ids.

        Args:
            boxes: float32 [N, 4] xyxy pixels.
            scores: float32 [N].
            classes: int64 [N] (carried, not matched on: the trackers match boxes only).
            index: the frame's index in its source.

        Returns:
            int64 [N]: each box's track id, -1 where it has none.
        """
        import supervision as sv

        if self.last_index is not None and index <= self.last_index:
            self.reset()  # the source started over (its index went back)
        self.last_index = index
        rows = np.arange(len(boxes))
        detections = sv.Detections(
            xyxy=boxes.astype(np.float32).reshape(-1, 4),
            confidence=scores.astype(np.float32),
            class_id=classes.astype(int),
            data={"row": rows},
        )
        out = self.tracker.update(detections, timestamp=index / CLOCK_RATE)
        ids = np.full(len(boxes), -1, np.int64)
        if len(out):
            given = np.asarray(out.tracker_id, np.int64)
            ids[np.asarray(out.data["row"], np.int64)] = np.where(
                given >= 0, given + self.first_id, -1
            )
        self.highest = max(self.highest, int(ids.max(initial=0)))
        return ids


@register("track")
class Track(Stage):
    """Gives the detections of other stages track ids, per source, with ByteTrack or OC-SORT.

    Tracks ``Detections`` (faces, YolactEdge instances, motion boxes) and ``DensePoseResult``
    people (class 0); boxes are matched whatever their class. See the module docstring for
    where the ids go, their numbering and gaps.

    Args:
        detections: the stage(s) whose results get track ids (each tracked on its own).
        tracker: ``bytetrack`` (two-stage matching: low-scoring boxes can continue a track
            but never start one) or ``ocsort`` (observation-centric: re-finds a track from
            its last observation, weighs direction; high-scoring boxes only).
        lost_track_buffer: frames a track survives unseen (predicted by its Kalman filter)
            before it ends.
        minimum_iou_threshold: least IoU of a box with a track's predicted box to continue
            it (default: the tracker's, 0.1 ByteTrack, 0.3 OC-SORT).
        high_conf_det_threshold: boxes scoring at least this are matched first (ByteTrack) or
            at all (OC-SORT) (default: the tracker's, 0.6).
        track_activation_threshold: ByteTrack only: least score of a box that starts a track
            (default: the tracker's, 0.7).
        minimum_consecutive_frames: sightings in a row before a new track gets its id
            (default: the tracker's, 2 ByteTrack, 3 OC-SORT; never before the second).
    """

    stateful = True
    references: ClassVar[References] = {"detections": (Detections, DensePoseResult)}

    def __init__(
        self,
        detections: str | list[str],
        tracker: TrackerName = "bytetrack",
        lost_track_buffer: int = 30,
        minimum_iou_threshold: float | None = None,
        high_conf_det_threshold: float | None = None,
        track_activation_threshold: float | None = None,
        minimum_consecutive_frames: int | None = None,
    ) -> None:
        self.detections = detections
        self.names = [detections] if isinstance(detections, str) else list(detections)
        if not self.names:
            raise ConfigError("track: detections names no stage")
        if tracker not in TRACKERS:
            raise ConfigError(f"track: tracker must be one of {sorted(TRACKERS)}")
        if track_activation_threshold is not None and tracker != "bytetrack":
            raise ConfigError("track: track_activation_threshold is ByteTrack's only")
        if lost_track_buffer < 0:
            raise ConfigError("track: lost_track_buffer must be >= 0")
        if minimum_consecutive_frames is not None and minimum_consecutive_frames < 1:
            raise ConfigError("track: minimum_consecutive_frames must be >= 1")
        self.tracker, self.lost_track_buffer = tracker, lost_track_buffer
        given = {
            "minimum_iou_threshold": minimum_iou_threshold,
            "high_conf_det_threshold": high_conf_det_threshold,
            "track_activation_threshold": track_activation_threshold,
            "minimum_consecutive_frames": minimum_consecutive_frames,
        }
        self.options: dict[str, Any] = {
            "lost_track_buffer": lost_track_buffer,
            "frame_rate": CLOCK_RATE,
            **{k: v for k, v in given.items() if v is not None},
        }
        self._cls = tracker_class(tracker)
        self._cls(**self.options)  # a value the library refuses fails when the graph is built
        self.sources: dict[str, dict[str, SourceTracks]] = {}
        self.gaps = {"gaps": 0, "frames_missed": 0, "resets": 0}

    def _tracks(self, source_id: str, name: str) -> SourceTracks:
        per_result = self.sources.setdefault(source_id, {})
        if name not in per_result:
            per_result[name] = SourceTracks(lambda: self._cls(**self.options))
        return per_result[name]

    def on_gap(self, source_id: str, missing: int) -> None:
        """Counts the gap; one longer than ``lost_track_buffer`` frames ends the source's
        tracks (no track could survive it). A shorter one is predicted over (the index)."""
        self.gaps["gaps"] += 1
        self.gaps["frames_missed"] += missing
        if missing > self.lost_track_buffer and source_id in self.sources:
            for tracks in self.sources[source_id].values():
                tracks.reset()
            self.gaps["resets"] += 1

    def on_source_end(self, source_id: str) -> None:
        self.sources.pop(source_id, None)

    def process(self, frame: Frame) -> Frame:
        for name in self.names:
            result = frame.results.get(name)
            if not isinstance(result, Detections | DensePoseResult):
                continue  # its stage failed on this frame: like a dropped frame
            boxes = np.asarray(result.boxes, np.float32).reshape(-1, 4)
            if isinstance(result, Detections):
                scores, classes = result.scores, result.class_ids
            else:
                count = len(boxes)
                scores = result.scores if result.scores is not None else np.ones(count)
                classes = np.zeros(count, np.int64)
            ids = self._tracks(frame.source_id, name).update(
                boxes, np.asarray(scores), np.asarray(classes), frame.index
            )
            frame.results[name] = dataclasses.replace(result, track_ids=ids)
        return frame

    def status(self) -> dict[str, Any]:
        live = sum(
            sum(t.tracker_id >= 0 for t in tracks.tracker.tracks)
            for per_result in list(self.sources.values())
            for tracks in list(per_result.values())
        )
        return {"tracks": int(live), **{k: v for k, v in self.gaps.items() if v}}

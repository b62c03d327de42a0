"""IoU tracks: this frame's boxes matched greedily to the tracks of earlier frames by box IoU.

The one tracker of the runtime's own stages. ``yolact_edge`` gives its detections stable
ids with it; the ``anonymize`` stage remembers faces with it, so a face the detector misses for a
few frames stays covered where its track says it has moved to.

Two other "tracking" modules are different things and stay apart:

- ``models/vpsnet/tracking.py`` is VPSNet's learned tracking, part of the model: its track head's
  embeddings matched with the official coefficients and rules, checked number for number against
  the official code (and models/ imports nothing from stages/).
- ``evaluation/tracking.py`` is the CLEAR-MOT identity-switch metric: it scores finished tracks
  against ground truth offline, and evaluation/ is imported by nothing at run time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes a [N, 4] and b [M, 4] (xyxy) -> [N, M]; boxes without area overlap nothing."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def greedy_match(iou: np.ndarray, order: np.ndarray, min_iou: float) -> np.ndarray:
    """One-to-one matching of boxes (rows) to tracks (columns), greedily.

    The boxes choose in ``order``; each takes the track it overlaps most among those not yet
    taken (the first such column on a tie) when that IoU is at least ``min_iou``.

    Args:
        iou: float [N, M].
        order: int [N], a permutation of the rows.
        min_iou: least IoU of a match.

    Returns:
        int64 [N]: the track (column) of each box, -1 where it matched none.
    """
    track = np.full(len(iou), -1, np.int64)
    free = np.ones(iou.shape[1], bool)
    for n in order:
        candidates = np.where(free, iou[n], -np.inf)
        if not len(candidates):
            continue
        m = int(candidates.argmax())
        if free[m] and candidates[m] >= min_iou:
            track[n] = m
            free[m] = False
    return track


@dataclass
class Track:
    """One object followed over the frames of a source.

    Attributes:
        id: stable over the track's life; the tracker's first track is 1.
        box: float32 [4] xyxy as last seen.
        velocity: float32 [4] xyxy change per frame between its last two sightings.
        class_id: the class it was seen as (0 when the tracker is given no classes).
        last_seen: the frame index of its last sighting.
    """

    id: int
    box: np.ndarray
    velocity: np.ndarray
    class_id: int
    last_seen: int

    def predicted(self, index: int) -> np.ndarray:
        """float32 [4]: the box moved along its velocity to frame ``index``."""
        return self.box + self.velocity * (index - self.last_seen)


class IoUTracker:
    """Tracks of one source; each frame's boxes continue them or start new ones.

    A box continues the track it overlaps most (box IoU at least ``match_iou``, the same class
    when classes are given) that no other box of the frame took first. Boxes choose in order of
    their scores, highest first, when scores are given; otherwise the box whose best IoU with any
    track is highest chooses first (the most certain match). Boxes that continue nothing start
    new tracks, in the order they chose. A track not seen for more than ``memory`` frames ends.
    One tracker per source.

    Args:
        match_iou: least IoU to continue a track.
        memory: frames a track survives without a match.
    """

    def __init__(self, match_iou: float = 0.3, memory: int = 10) -> None:
        self.match_iou, self.memory = match_iou, memory
        self.tracks: list[Track] = []  # oldest first: ties go to the older track
        self._next_id = 1
        self._updates = 0

    def update(
        self,
        boxes: np.ndarray,
        class_ids: np.ndarray | None = None,
        scores: np.ndarray | None = None,
        index: int | None = None,
    ) -> np.ndarray:
        """Matches one frame's boxes to the tracks and ends the tracks it leaves too old.

        Args:
            boxes: float [N, 4] xyxy.
            class_ids: int [N]; a box continues only a track of its class. None: no classes.
            scores: float [N], higher chooses first; None: the most certain match chooses first.
            index: the frame's index; frames missing between two calls age the tracks. None:
                the number of earlier calls (every call is the next frame).

        Returns:
            int64 [N] track ids.
        """
        index = self._updates if index is None else index
        self._updates += 1
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        # No dtype on purpose: an empty track list is float64, as the anonymiser has always
        # built it, and the unstable sort below may order ties otherwise in another dtype.
        iou = box_iou(boxes, np.array([t.box for t in self.tracks]).reshape(-1, 4))
        if class_ids is not None:
            class_ids = np.asarray(class_ids).reshape(-1)
            same = class_ids[:, None] == np.array([t.class_id for t in self.tracks], np.int64)
            iou = np.where(same, iou, -np.inf)
        if scores is not None:
            order = np.argsort(-np.asarray(scores), kind="stable")
        else:
            order = np.argsort(-iou.max(axis=1, initial=0))
        matched = greedy_match(iou, order, self.match_iou)
        ids = np.zeros(len(boxes), np.int64)
        for n in order:
            box = boxes[n]
            if matched[n] >= 0:
                track = self.tracks[matched[n]]
                gap = max(index - track.last_seen, 1)
                track.velocity = (box - track.box) / gap
                track.box, track.last_seen = box, index
            else:
                class_id = 0 if class_ids is None else int(class_ids[n])
                track = Track(self._next_id, box, np.zeros(4, np.float32), class_id, index)
                self._next_id += 1
                self.tracks.append(track)
            ids[n] = track.id
        self.tracks = [t for t in self.tracks if index - t.last_seen <= self.memory]
        return ids

"""IoU tracks (stages.tracking): greedy matching, stable ids, classes, memory and motion."""

from __future__ import annotations

import numpy as np
import pytest

from stages.tracking import IoUTracker, box_iou, greedy_match


def boxes(*rows: list[float]) -> np.ndarray:
    return np.array(rows, np.float32).reshape(-1, 4)


def test_box_iou_by_hand() -> None:
    iou = box_iou(boxes([0, 0, 10, 10]), boxes([5, 0, 15, 10], [20, 20, 30, 30], [3, 3, 3, 3]))
    assert iou == pytest.approx(np.array([[50 / 150, 0.0, 0.0]]))


def test_greedy_match_takes_the_best_free_track_in_order() -> None:
    iou = np.array([[0.6, 0.5], [0.9, 0.2], [0.4, 0.35]])
    # row 1 chooses first and takes track 0, row 0 its second best, and none is left for row 2;
    # in row order row 1's only free track is below 0.3, and row 2 gets it
    assert greedy_match(iou, np.array([1, 0, 2]), 0.3).tolist() == [1, 0, -1]
    assert greedy_match(iou, np.array([0, 1, 2]), 0.3).tolist() == [0, -1, 1]


def test_ids_follow_moving_boxes_and_new_boxes_get_new_ids() -> None:
    tracker = IoUTracker()
    first = tracker.update(boxes([0, 0, 10, 10], [50, 50, 60, 60]), [0, 0], [0.9, 0.8])
    second = tracker.update(boxes([52, 51, 62, 61], [1, 0, 11, 10], [90, 0, 99, 9]), [0, 0, 0],
                            [0.9, 0.8, 0.7])  # fmt: skip
    assert first.tolist() == [1, 2] and second.tolist() == [2, 1, 3]


def test_a_box_continues_only_a_track_of_its_class() -> None:
    tracker = IoUTracker()
    tracker.update(boxes([0, 0, 10, 10]), [1], [0.9])
    assert tracker.update(boxes([0, 0, 10, 10]), [2], [0.9]).tolist() == [2]


def test_higher_scores_choose_first() -> None:
    tracker = IoUTracker()
    tracker.update(boxes([0, 0, 10, 10]), [0], [0.9])
    # both overlap track 1; the better-scoring one keeps it although it overlaps less
    ids = tracker.update(boxes([0, 0, 10, 10], [2, 0, 12, 10]), [0, 0], [0.5, 0.8])
    assert ids.tolist() == [2, 1]


def test_a_missed_track_moves_along_its_velocity_then_ends_after_memory() -> None:
    tracker = IoUTracker(match_iou=0.1, memory=2)
    tracker.update(boxes([0, 0, 10, 10]), index=0)
    tracker.update(boxes([4, 0, 14, 10]), index=2)  # a frame missing: 2 px per frame
    (track,) = tracker.tracks
    assert track.velocity.tolist() == [2, 0, 2, 0]
    assert track.predicted(5).tolist() == [10, 0, 20, 10]
    tracker.update(boxes(), index=4)
    assert len(tracker.tracks) == 1
    tracker.update(boxes(), index=5)
    assert tracker.tracks == []


def test_without_an_index_every_call_is_the_next_frame() -> None:
    tracker = IoUTracker(memory=1)
    tracker.update(boxes([0, 0, 10, 10]), [0], [0.9])
    tracker.update(boxes(), [], [])
    assert len(tracker.tracks) == 1
    tracker.update(boxes(), [], [])
    assert tracker.tracks == []

"""Tests for evaluation.tracking (CLEAR-MOT identity switches)."""

from __future__ import annotations

import pytest

from evaluation.tracking import IdSwitch, id_switch_events, id_switches


def test_perfect_tracking_has_no_switch() -> None:
    frames = [[(1, "a"), (2, "b")], [(1, "a"), (2, "b")], [(2, "b")], [(1, "a")]]
    assert id_switches(frames) == 0


def test_two_switches() -> None:
    frames = [
        [(1, "a"), (2, "b")],
        [(1, "a"), (2, "c")],  # switch 1: GT 2 b -> c
        [(2, "c")],  # GT 1 missed: no switch, its last match stays "a"
        [(1, "d"), (2, "c")],  # switch 2: GT 1 a -> d (compared with its last match)
        [(1, "d"), (2, "c"), (3, "a")],  # GT 3 first match: no switch (even reusing "a")
    ]
    assert id_switches(frames) == 2
    assert id_switch_events(frames) == [IdSwitch(1, 2, "b", "c"), IdSwitch(3, 1, "a", "d")]


def test_switch_back_counts_again() -> None:
    assert id_switches([[(1, 5)], [(1, 6)], [(1, 5)]]) == 2


def test_duplicate_match_in_a_frame_is_rejected() -> None:
    with pytest.raises(ValueError, match="ground-truth"):
        id_switches([[(1, "a"), (1, "b")]])
    with pytest.raises(ValueError, match="predicted"):
        id_switches([[(1, "a"), (2, "a")]])

"""Classes of the synthetic world, DensePose part ids and the panoptic id convention."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Category:
    """One class.

    Attributes:
        id: category id (1-based; 0 is void).
        name: class name.
        isthing: True for countable objects with instances, False for stuff.
        colour: BGR colour for visualisation.
    """

    id: int
    name: str
    isthing: bool
    colour: tuple[int, int, int]


CATEGORIES: tuple[Category, ...] = (
    Category(1, "person", True, (60, 20, 220)),
    Category(2, "horse", True, (0, 140, 255)),
    Category(3, "coin", True, (0, 215, 255)),
    Category(4, "ball", True, (200, 60, 180)),
    Category(5, "sign", True, (230, 230, 230)),
    Category(6, "cat", True, (40, 90, 160)),
    Category(7, "star", True, (255, 120, 0)),
    Category(8, "sky", False, (235, 206, 135)),
    Category(9, "wall", False, (70, 70, 140)),
    Category(10, "grass", False, (50, 160, 50)),
    Category(11, "road", False, (128, 128, 128)),
)
"""Things first (ids 1..7), then stuff (ids 8..11)."""

BY_NAME = {c.name: c for c in CATEGORIES}
BY_ID = {c.id: c for c in CATEGORIES}
THING_IDS = frozenset(c.id for c in CATEGORIES if c.isthing)
STUFF_IDS = frozenset(c.id for c in CATEGORIES if not c.isthing)
PERSON = BY_NAME["person"].id

ID_DIVISOR = 1000
"""Panoptic segment ids follow the Cityscapes-VPS convention: a thing's segment id is
``category_id * 1000 + track_id`` (track ids 1..999, persistent over the video), a stuff
segment's is ``category_id * 1000``. 0 is void. So a segment id is stable across frames and
names both its class and its track."""


def segment_id(category_id: int, track_id: int | None) -> int:
    """Panoptic segment id of a thing track (or of a stuff class when ``track_id`` is None)."""
    if track_id is not None and not 0 < track_id < ID_DIVISOR:
        raise ValueError(f"track id {track_id} outside 1..{ID_DIVISOR - 1}")
    return category_id * ID_DIVISOR + (track_id or 0)


def split_segment_id(sid: int) -> tuple[int, int | None]:
    """``(category_id, track_id or None)`` of a panoptic segment id."""
    category, track = divmod(int(sid), ID_DIVISOR)
    return category, (track or None)


# DensePose body-part index I (1..24; 0 = background), as in DensePose-COCO.
PART_NAMES: dict[int, str] = {
    1: "torso_back", 2: "torso_front", 3: "right_hand", 4: "left_hand", 5: "left_foot",
    6: "right_foot", 7: "upper_leg_right_back", 8: "upper_leg_left_back",
    9: "upper_leg_right_front", 10: "upper_leg_left_front", 11: "lower_leg_right_back",
    12: "lower_leg_left_back", 13: "lower_leg_right_front", 14: "lower_leg_left_front",
    15: "upper_arm_left_back", 16: "upper_arm_right_back", 17: "upper_arm_left_front",
    18: "upper_arm_right_front", 19: "lower_arm_left_back", 20: "lower_arm_right_back",
    21: "lower_arm_left_front", 22: "lower_arm_right_front", 23: "head_right", 24: "head_left",
}  # fmt: skip
"""DensePose gives most parts two charts; we use the first of a pair for a figure seen from
the back and the second for one seen from the front, and split the head into its right (23)
and left (24) halves."""

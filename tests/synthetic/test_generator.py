"""The synthetic video generator: determinism and the properties its ground truth promises."""

from __future__ import annotations

import numpy as np
import pytest

from models.flow import backward_flow
from synthetic.categories import (
    BY_ID,
    ID_DIVISOR,
    PART_NAMES,
    PERSON,
    STUFF_IDS,
    segment_id,
    split_segment_id,
)
from synthetic.generator import MIN_AREA, SyntheticFrame, generate


def frames_equal(a: SyntheticFrame, b: SyntheticFrame) -> bool:
    return (
        a.image.tobytes() == b.image.tobytes()
        and a.panoptic.tobytes() == b.panoptic.tobytes()
        and a.iuv.tobytes() == b.iuv.tobytes()
        and a.segments == b.segments
    )


def test_same_seed_is_byte_identical(clip: list[SyntheticFrame]) -> None:
    again = list(generate(7, 60, 160, 160, arrivals_per_100=6.0))
    assert all(frames_equal(a, b) for a, b in zip(clip, again, strict=True))


def test_different_seeds_differ() -> None:
    a = list(generate(1, 3, 96, 96))
    b = list(generate(2, 3, 96, 96))
    assert all(not np.array_equal(x.image, y.image) for x, y in zip(a, b, strict=True))
    assert any(x.segments != y.segments for x, y in zip(a, b, strict=True))


def test_segments_describe_the_map_exactly(clip: list[SyntheticFrame]) -> None:
    for frame in clip:
        ids, counts = np.unique(frame.panoptic, return_counts=True)
        listed = {int(i): int(c) for i, c in zip(ids, counts, strict=True) if i != 0}
        assert listed == {sid: s.area for sid, s in frame.segments.items()}
        for sid, s in frame.segments.items():
            ys, xs = np.nonzero(frame.panoptic == sid)
            assert s.bbox == (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
            assert (s.category_id, s.track_id) == split_segment_id(sid)
            assert s.isthing == BY_ID[s.category_id].isthing == (s.track_id is not None)
            assert not s.isthing or s.area >= MIN_AREA


def test_void_is_only_tiny_slivers(clip: list[SyntheticFrame]) -> None:
    void = sum(int((f.panoptic == 0).sum()) for f in clip)
    assert void < 0.001 * len(clip) * clip[0].panoptic.size


def test_track_ids_persist_and_objects_enter_and_leave(clip: list[SyntheticFrame]) -> None:
    seen = [{s.track_id for s in f.things()} for f in clip]
    category_of: dict[int, int] = {}
    for frame in clip:
        for s in frame.things():
            assert category_of.setdefault(s.track_id, s.category_id) == s.category_id
    assert len(category_of) >= 6
    entered = set().union(*seen[1:]) - seen[0]
    left = seen[0] - seen[-1]
    assert entered and left
    # Partial occlusion: a track's visible area drops while its neighbours stay (not just
    # leaving the frame): some thing is visible with less than 90% of its maximum area while
    # its bounding box is away from the frame border.
    h, w = clip[0].panoptic.shape
    peak: dict[int, int] = {}
    for f in clip:
        for s in f.things():
            peak[s.track_id] = max(peak.get(s.track_id, 0), s.area)
    occluded = [
        s
        for f in clip
        for s in f.things()
        if s.area < 0.9 * peak[s.track_id]
        and s.bbox[0] > 0
        and s.bbox[1] > 0
        and s.bbox[0] + s.bbox[2] < w
        and s.bbox[1] + s.bbox[3] < h
    ]
    assert occluded


def test_stuff_classes_and_camera_motion(clip: list[SyntheticFrame]) -> None:
    stuff = {s.category_id for f in clip for s in f.segments.values() if not s.isthing}
    assert stuff == STUFF_IDS
    # The camera pans: the stuff (background) moves between frames 0 and 10 by more than a
    # pixel, measured by DIS flow over pixels that are stuff in both frames.
    a, b = clip[0], clip[10]
    flow = backward_flow(b.image, a.image)
    still_stuff = (a.panoptic % ID_DIVISOR == 0) & (b.panoptic % ID_DIVISOR == 0)
    assert np.median(np.hypot(*flow[still_stuff].T)) > 1.0


def test_iuv_lies_on_people_only(clip: list[SyntheticFrame]) -> None:
    for frame in clip:
        body = frame.iuv[..., 0] > 0
        person = (frame.panoptic // ID_DIVISOR) == PERSON
        assert not (body & ~person).any()
        # Every visible person pixel is some body part: people are made of parts only.
        assert (body == person).all()
        assert frame.iuv[..., 0].max() <= 24


def test_all_24_parts_appear_over_a_few_sequences() -> None:
    parts: set[int] = set()
    for seed in range(6):
        for frame in generate(seed, 4, 128, 128, people=3):
            parts |= set(np.unique(frame.iuv[..., 0]).tolist())
    assert parts - {0} == set(PART_NAMES)


def test_segment_id_convention() -> None:
    assert segment_id(3, 17) == 3017 and split_segment_id(3017) == (3, 17)
    assert segment_id(9, None) == 9000 and split_segment_id(9000) == (9, None)
    with pytest.raises(ValueError):
        segment_id(1, 1000)

"""Joiner (merge fan-out branches by frame id) and Frame identity."""

from __future__ import annotations

import numpy as np

from pipeline.join import Joiner


def branch_frame(make_frame, branch: str, index: int, source_id: str = "cam", pixel: int = 0):
    """What ``branch`` delivers for frame ``index``: its own image and one result."""
    frame = make_frame(index, source_id=source_id, value=pixel)
    frame.results[branch] = f"{branch}{index}"
    return frame


def keys(frames) -> list[tuple[str, int]]:
    return [f.key for f in frames]


# ---- Frame -----------------------------------------------------------------


def test_frame_key_time_and_branch_copy(make_frame):
    frame = make_frame(25)
    frame.results["det"] = [1]
    assert frame.key == ("cam", 25)
    assert frame.time == 25 * 512 / 12800  # 1.0 s
    copy = frame.branch_copy()
    assert copy.image is frame.image  # pixels are shared between branches
    assert copy.results == frame.results and copy.results is not frame.results
    copy.results["other"] = 2
    assert "other" not in frame.results
    assert (copy.pts, copy.time_base, copy.index, copy.source_id, copy.capture_time) == (
        frame.pts,
        frame.time_base,
        frame.index,
        frame.source_id,
        frame.capture_time,
    )


# ---- complete joins ----------------------------------------------------------


def test_complete_join_merges_all_branches_with_first_branch_image(make_frame):
    joiner = Joiner(["a", "b", "c"], timeout=None)
    fa = branch_frame(make_frame, "a", 0, pixel=10)
    fb = branch_frame(make_frame, "b", 0, pixel=20)
    fc = branch_frame(make_frame, "c", 0, pixel=30)
    # Arrival order differs from the branch order; the image still comes from "a".
    assert joiner.add("c", fc, now=0.0) == []
    assert joiner.add("b", fb, now=0.0) == []
    (merged,) = joiner.add("a", fa, now=0.0)
    assert merged.image is fa.image
    assert int(merged.image[0, 0, 0]) == 10
    assert merged.results == {"a": "a0", "b": "b0", "c": "c0"}
    assert merged.key == ("cam", 0)
    assert joiner.partial == 0
    assert joiner.drain() == []


def test_first_branch_wins_on_a_shared_result_key(make_frame):
    joiner = Joiner(["a", "b"], timeout=None)
    fa = branch_frame(make_frame, "a", 0)
    fb = branch_frame(make_frame, "b", 0)
    fa.results["upstream"] = "from a"
    fb.results["upstream"] = "from b"
    joiner.add("b", fb, now=0.0)
    (merged,) = joiner.add("a", fa, now=0.0)
    assert merged.results["upstream"] == "from a"
    assert merged.results["b"] == "b0"


def test_merged_frame_does_not_alias_branch_results(make_frame):
    joiner = Joiner(["a", "b"], timeout=None)
    fa = branch_frame(make_frame, "a", 0)
    joiner.add("a", fa, now=0.0)
    (merged,) = joiner.add("b", branch_frame(make_frame, "b", 0), now=0.0)
    merged.results["render"] = 1
    assert "render" not in fa.results and "b" not in fa.results


def test_frames_are_emitted_in_index_order(make_frame):
    joiner = Joiner(["a", "b"], timeout=None)
    for i in range(4):
        assert joiner.add("a", branch_frame(make_frame, "a", i), now=0.0) == []
    out = []
    for i in range(4):
        ready = joiner.add("b", branch_frame(make_frame, "b", i), now=0.0)
        assert keys(ready) == [("cam", i)]
        out += ready
    assert [f.results for f in out] == [{"a": f"a{i}", "b": f"b{i}"} for i in range(4)]
    assert joiner.partial == 0


# ---- partial joins -----------------------------------------------------------


def test_frame_missing_from_a_branch_that_moved_on_is_emitted_partial_at_once(make_frame):
    joiner = Joiner(["a", "b"], timeout=None)
    joiner.add("a", branch_frame(make_frame, "a", 0), now=0.0)
    joiner.add("a", branch_frame(make_frame, "a", 1), now=0.0)
    joiner.add("a", branch_frame(make_frame, "a", 2), now=0.0)
    # "b" dropped frames 0 and 1: delivering 2 proves they will never come.
    ready = joiner.add("b", branch_frame(make_frame, "b", 2), now=0.0)
    assert keys(ready) == [("cam", 0), ("cam", 1), ("cam", 2)]
    assert [f.results for f in ready] == [
        {"a": "a0"},
        {"a": "a1"},
        {"a": "a2", "b": "b2"},
    ]
    assert joiner.partial == 2


def test_partial_frame_keeps_first_present_branch_image(make_frame):
    joiner = Joiner(["a", "b"], timeout=None)
    fb0 = branch_frame(make_frame, "b", 0, pixel=20)
    joiner.add("b", fb0, now=0.0)
    # "a" skipped frame 0 (e.g. it failed on it) and delivered frame 1.
    ready = joiner.add("a", branch_frame(make_frame, "a", 1, pixel=10), now=0.0)
    assert keys(ready) == [("cam", 0)]
    assert ready[0].image is fb0.image
    assert ready[0].results == {"b": "b0"}


def test_progress_of_one_source_does_not_release_another(make_frame):
    joiner = Joiner(["a", "b"], timeout=None)
    joiner.add("a", branch_frame(make_frame, "a", 0, source_id="s1"), now=0.0)
    joiner.add("a", branch_frame(make_frame, "a", 5, source_id="s2"), now=0.0)
    ready = joiner.add("b", branch_frame(make_frame, "b", 5, source_id="s2"), now=0.0)
    assert keys(ready) == [("s2", 5)]
    ready = joiner.add("b", branch_frame(make_frame, "b", 0, source_id="s1"), now=0.0)
    assert keys(ready) == [("s1", 0)]
    assert joiner.partial == 0


# ---- timeout (live input) ------------------------------------------------------


def test_timeout_expiry_emits_partial(make_frame):
    joiner = Joiner(["a", "b"], timeout=0.5)
    assert joiner.next_deadline() is None
    joiner.add("a", branch_frame(make_frame, "a", 0), now=10.0)
    joiner.add("a", branch_frame(make_frame, "a", 1), now=10.2)
    assert joiner.next_deadline() == 10.5
    assert joiner.expire(10.49) == []
    ready = joiner.expire(10.5)
    assert keys(ready) == [("cam", 0)]
    assert ready[0].results == {"a": "a0"}
    assert joiner.partial == 1
    assert joiner.next_deadline() == 10.2 + 0.5
    assert keys(joiner.expire(11.0)) == [("cam", 1)]
    assert joiner.next_deadline() is None
    assert joiner.partial == 2


def test_no_timeout_never_expires(make_frame):
    joiner = Joiner(["a", "b"], timeout=None)
    joiner.add("a", branch_frame(make_frame, "a", 0), now=0.0)
    assert joiner.next_deadline() is None
    assert joiner.expire(1e9) == []
    assert keys(joiner.drain()) == [("cam", 0)]


def test_late_branch_frame_after_expiry_is_not_emitted_again(make_frame):
    # Frame 0 waited too long for "b" and went out partial. When b's frame 0 turns
    # up later it must not produce a second frame 0 behind frame 1: downstream
    # stages see frames of one source in order, sinks write increasing PTS.
    joiner = Joiner(["a", "b"], timeout=0.5)
    joiner.add("a", branch_frame(make_frame, "a", 0), now=0.0)
    assert keys(joiner.expire(0.6)) == [("cam", 0)]
    joiner.add("a", branch_frame(make_frame, "a", 1), now=0.7)
    out = joiner.add("b", branch_frame(make_frame, "b", 0), now=0.8)
    out += joiner.add("b", branch_frame(make_frame, "b", 1), now=0.9)
    assert keys(out) == [("cam", 1)]


# ---- end of stream / drain -------------------------------------------------------


def test_branch_done_flushes_frames_waiting_for_it(make_frame):
    joiner = Joiner(["a", "b"], timeout=None)
    joiner.add("b", branch_frame(make_frame, "b", 0), now=0.0)
    joiner.add("a", branch_frame(make_frame, "a", 0), now=0.0)
    joiner.add("a", branch_frame(make_frame, "a", 1), now=0.0)
    joiner.add("a", branch_frame(make_frame, "a", 2), now=0.0)
    ready = joiner.branch_done("b")
    assert keys(ready) == [("cam", 1), ("cam", 2)]
    assert [f.results for f in ready] == [{"a": "a1"}, {"a": "a2"}]
    assert joiner.partial == 2
    # Later frames of "a" no longer wait for the finished branch.
    (late,) = joiner.add("a", branch_frame(make_frame, "a", 3), now=0.0)
    assert late.key == ("cam", 3)


def test_branch_done_keeps_frames_other_live_branches_still_owe(make_frame):
    joiner = Joiner(["a", "b", "c"], timeout=None)
    joiner.add("a", branch_frame(make_frame, "a", 0), now=0.0)
    assert joiner.branch_done("b") == []  # "c" may still deliver frame 0
    (merged,) = joiner.add("c", branch_frame(make_frame, "c", 0), now=0.0)
    assert merged.results == {"a": "a0", "c": "c0"}


def test_drain_emits_everything_pending_in_arrival_order(make_frame):
    joiner = Joiner(["a", "b"], timeout=None)
    joiner.add("a", branch_frame(make_frame, "a", 0), now=0.0)
    joiner.add("a", branch_frame(make_frame, "a", 1), now=0.0)
    joiner.add("a", branch_frame(make_frame, "a", 2, source_id="s2"), now=0.0)
    drained = joiner.drain()
    assert keys(drained) == [("cam", 0), ("cam", 1), ("s2", 2)]
    assert joiner.partial == 3
    assert joiner.drain() == []


def test_merged_image_is_an_array_of_the_first_branch(make_frame):
    joiner = Joiner(["render_in", "mask"], timeout=None)
    base = make_frame(0, value=1)
    masked = base.branch_copy()
    masked.image = np.zeros_like(base.image)
    masked.results["mask"] = "m"
    joiner.add("mask", masked, now=0.0)
    (merged,) = joiner.add("render_in", base, now=0.0)
    assert merged.image is base.image
    assert merged.results == {"mask": "m"}

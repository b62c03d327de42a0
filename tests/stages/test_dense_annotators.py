"""Panoptic and DensePose IUV annotators, and the draw stage dispatching to them."""

from __future__ import annotations

from fractions import Fraction

import cv2
import numpy as np
import pytest

from pipeline.frame import Frame
from pipeline.results import DensePoseResult, Detections, PanopticSegmentation
from stages.render import Draw
from stages.render.annotators import (
    PALETTE,
    PART_COLOURS,
    U_LINE,
    UV_COLORMAP,
    V_LINE,
    DetectionAnnotator,
    IUVAnnotator,
    PanopticAnnotator,
    colour,
    render_iuv,
    stuff_colour,
)

GREY = (90, 90, 90)  # in neither palette, so a pixel of this value was not drawn on


def grey(h: int = 40, w: int = 60) -> np.ndarray:
    return np.full((h, w, 3), GREY, np.uint8)


def pixels_of(image: np.ndarray, bgr: tuple[int, int, int]) -> np.ndarray:
    """bool [H, W]: where ``image`` is exactly ``bgr``."""
    return np.all(image == np.array(bgr, np.uint8), axis=-1)


def thing(track_id: int | None, area: int = 1) -> dict:
    return {"class": 1, "is_thing": True, "track_id": track_id, "area": area}


def stuff(cls: int, area: int = 1) -> dict:
    return {"class": cls, "is_thing": False, "track_id": None, "area": area}


def two_segments(ids: tuple[int, int] = (1, 2)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Segment map [40, 60]: ``ids[0]`` in a left block, ``ids[1]`` in a right one, void around."""
    seg = np.zeros((40, 60), np.int32)
    seg[5:30, 5:25] = ids[0]
    seg[10:35, 30:55] = ids[1]
    return seg, seg == ids[0], seg == ids[1]


def test_panoptic_colours_exactly_the_segments_and_leaves_void_alone() -> None:
    seg, a, b = two_segments()
    panoptic = PanopticSegmentation(seg, {1: thing(7), 2: stuff(3)})
    out = PanopticAnnotator(alpha=1.0, contours=False).annotate(grey(), panoptic)
    assert colour(7) != stuff_colour(3)
    assert np.array_equal(pixels_of(out, colour(7)), a)
    assert np.array_equal(pixels_of(out, stuff_colour(3)), b)
    assert np.array_equal(pixels_of(out, GREY), ~(a | b))


def test_panoptic_blends_with_alpha_and_skips_ids_it_was_not_told_about() -> None:
    seg, a, b = two_segments()
    seg[0, :] = 99  # not in ``segments``: left as it is, like void
    image = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    panoptic = PanopticSegmentation(seg, {1: thing(7), 2: stuff(3)})
    out = PanopticAnnotator(alpha=0.5, contours=False).annotate(image.copy(), panoptic)
    expected = 0.5 * image[a].astype(float) + 0.5 * np.array(colour(7))
    assert np.abs(out[a] - expected).max() <= 1
    assert np.array_equal(out[~(a | b)], image[~(a | b)])


def test_a_track_keeps_its_colour_when_its_segment_id_changes() -> None:
    seg1, a1, _ = two_segments((1, 2))
    seg2, a2, _ = two_segments((5, 2))
    annotator = PanopticAnnotator(alpha=1.0, contours=False)
    out1 = annotator.annotate(grey(), PanopticSegmentation(seg1, {1: thing(4), 2: thing(9)}))
    out2 = annotator.annotate(grey(), PanopticSegmentation(seg2, {5: thing(4), 2: thing(9)}))
    assert colour(4) != colour(5)  # so using the segment id would show
    assert np.all(pixels_of(out1, colour(4))[a1]) and np.all(pixels_of(out2, colour(4))[a2])
    untracked = annotator.annotate(grey(), PanopticSegmentation(seg2, {5: thing(None)}))
    assert np.all(pixels_of(untracked, colour(5))[a2])  # no track: the segment id's colour


def test_stuff_gets_one_colour_per_class() -> None:
    seg = np.zeros((40, 60), np.int32)
    seg[:, :20], seg[:, 20:40], seg[:, 40:] = 1, 2, 3
    panoptic = PanopticSegmentation(seg, {1: stuff(3), 2: stuff(3), 3: stuff(8)})
    out = PanopticAnnotator(alpha=1.0, contours=False).annotate(grey(), panoptic)
    assert np.all(pixels_of(out, stuff_colour(3))[:, :40])
    assert np.all(pixels_of(out, stuff_colour(8))[:, 40:])
    assert stuff_colour(3) != stuff_colour(8)
    assert not {stuff_colour(c) for c in range(100)} & {tuple(int(v) for v in p) for p in PALETTE}
    given = PanopticAnnotator(alpha=1.0, contours=False, stuff_colours={8: (1, 2, 3)})
    out = given.annotate(grey(), panoptic)
    assert np.all(pixels_of(out, (1, 2, 3))[:, 40:])
    assert np.all(pixels_of(out, stuff_colour(3))[:, :40])


def test_contours_are_one_pixel_on_segment_borders_only() -> None:
    seg = np.zeros((40, 60), np.int32)
    seg[5:30, 5:25] = 1
    seg[5:30, 25:50] = 2  # touches segment 1 along column 24 | 25
    panoptic = PanopticSegmentation(seg, {1: thing(1), 2: stuff(4)})
    out = PanopticAnnotator(alpha=0.0, contours=True).annotate(grey(), panoptic)
    white = pixels_of(out, (255, 255, 255))
    assert np.array_equal(white | pixels_of(out, GREY), np.ones_like(white))  # nothing else
    padded = np.pad(seg, 1, mode="edge")
    on_border = (
        (padded[1:-1, 1:-1] != padded[:-2, 1:-1])
        | (padded[1:-1, 1:-1] != padded[2:, 1:-1])
        | (padded[1:-1, 1:-1] != padded[1:-1, :-2])
        | (padded[1:-1, 1:-1] != padded[1:-1, 2:])
    )
    assert white.any() and not (white & ~on_border).any()
    assert not (white & (seg == 0)).any()  # void untouched
    assert white[6:29, 24:26].sum(axis=1).tolist() == [1] * 23  # 1 pixel between the two
    assert white[6:29, 4].sum() == 0 and white[6:29, 5].all()  # the void border: inside


def test_large_and_small_segment_ids_render_the_same() -> None:
    seg, _, _ = two_segments()
    big = np.where(seg == 1, 3_000_000, np.where(seg == 2, -7, 0)).astype(np.int32)
    annotator = PanopticAnnotator(alpha=0.6)
    small = annotator.annotate(grey(), PanopticSegmentation(seg, {1: thing(2), 2: stuff(5)}))
    large = annotator.annotate(
        grey(), PanopticSegmentation(big, {3_000_000: thing(2), -7: stuff(5)})
    )
    assert np.array_equal(small, large)


def iuv_two_parts() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    iuv = np.zeros((40, 60, 3), np.uint8)
    iuv[5:20, 5:30] = (2, 100, 50)
    iuv[20:35, 5:30] = (14, 30, 200)
    return iuv, iuv[..., 0] == 2, iuv[..., 0] == 14


def test_iuv_parts_colour_each_part_and_keep_the_background() -> None:
    iuv, p2, p14 = iuv_two_parts()
    out = render_iuv(grey(), iuv, "parts", alpha=1.0)
    assert len({tuple(c) for c in PART_COLOURS[1:].tolist()}) == 24
    assert np.all(out[p2] == PART_COLOURS[2]) and np.all(out[p14] == PART_COLOURS[14])
    assert np.array_equal(pixels_of(out, GREY), iuv[..., 0] == 0)
    blended = render_iuv(grey(), iuv, "parts", alpha=0.5)
    expected = 0.5 * np.array(GREY) + 0.5 * PART_COLOURS[2].astype(float)
    assert np.abs(blended[p2] - expected).max() <= 1


def test_iuv_u_mode_is_the_colour_map_of_u_and_monotone_along_a_ramp() -> None:
    ramp = np.arange(256, dtype=np.uint8)
    iuv = np.zeros((4, 256, 3), np.uint8)
    iuv[1:3, :, 0] = 5
    iuv[1:3, :, 1] = ramp
    iuv[1:3, :, 2] = 77
    out = render_iuv(grey(4, 256), iuv, "u", alpha=1.0)
    lut = cv2.applyColorMap(ramp[:, None], UV_COLORMAP)[:, 0].astype(int)
    assert np.array_equal(out[1], lut)
    recovered = np.abs(out[1].astype(int)[:, None] - lut[None]).sum(-1).argmin(1)
    assert np.all(np.diff(recovered) >= 0) and recovered[0] < 5 and recovered[-1] > 250
    assert np.all(pixels_of(out, GREY)[[0, 3]])
    v = render_iuv(grey(4, 256), iuv, "v", alpha=1.0)
    assert np.all(v[1:3] == lut[77])  # V is constant: one colour


def test_iuv_contours_are_iso_lines_of_u_and_v_inside_parts() -> None:
    iuv = np.zeros((20, 256, 3), np.uint8)
    iuv[2:18, :140, 0] = 3
    iuv[2:18, 140:, 0] = 4
    iuv[2:18, :, 1] = np.arange(256)  # U ramps along x, crossing 0.1 steps
    iuv[2:18, :, 2] = 40  # V constant: no V lines
    iuv[2:18, 140:, 2] = 140  # ... jumping at the part border, which is not an iso-line
    out = render_iuv(grey(20, 256), iuv, "contours", alpha=1.0)
    u_cols = np.flatnonzero(pixels_of(out, U_LINE).any(0))
    steps = np.flatnonzero(np.diff(np.arange(256) * 10 // 255)) + 1  # first column past k/10
    assert u_cols.tolist() == steps.tolist() and len(steps) == 10
    assert np.all(pixels_of(out, U_LINE)[2:18, steps])
    assert not pixels_of(out, V_LINE).any()
    assert np.array_equal(pixels_of(out, U_LINE) | pixels_of(out, GREY), np.ones((20, 256), bool))


def test_iuv_annotator_pastes_the_densepose_boxes() -> None:
    part = np.zeros((10, 10), np.uint8)
    part[2:8, 2:8] = 7
    uv = np.full((2, 10, 10), 0.5, np.float32)
    result = DensePoseResult(np.array([[10, 5, 30, 25]], np.float32), [part], [uv])
    out = IUVAnnotator("parts", alpha=1.0, boxes=False).annotate(grey(), result)
    painted = pixels_of(out, tuple(PART_COLOURS[7].tolist()))
    assert painted[15, 20] and painted.sum() == 12 * 12
    assert np.array_equal(painted, ~pixels_of(out, GREY))
    boxed = IUVAnnotator("parts", alpha=1.0).annotate(grey(), result)
    changed = ~pixels_of(boxed, GREY)
    assert changed[25, 10:31].all() and changed[5:26, 30].all()  # the box outline
    assert not changed[27:, :].any() and not changed[:, :9].any()  # nothing below or left of it
    with pytest.raises(ValueError, match="mode"):
        IUVAnnotator("bbox")  # type: ignore[arg-type]


def test_draw_dispatches_panoptic_and_densepose_results() -> None:
    image = np.random.default_rng(1).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    seg, _, _ = two_segments()
    panoptic = PanopticSegmentation(seg, {1: thing(3), 2: stuff(6)})
    iuv, _, _ = iuv_two_parts()
    part, u, v = iuv[5:35, 5:30, 0], iuv[5:35, 5:30, 1] / 255, iuv[5:35, 5:30, 2] / 255
    densepose = DensePoseResult(np.array([[5, 5, 30, 35]], np.float32), [part], [np.stack([u, v])])
    detections = Detections([[2, 2, 20, 20]], [0.9], [0])
    frame = Frame(image, 0, Fraction(1, 30), 0, "s")
    frame.results.update(pan=panoptic, dp=densepose, det=detections)

    out = Draw(panoptic_alpha=0.4, contours=False, iuv_mode="u").process(frame).image
    expected = image.copy()  # drawn in the order of the results
    PanopticAnnotator(alpha=0.4, contours=False).annotate(expected, panoptic)
    IUVAnnotator("u").annotate(expected, densepose)
    DetectionAnnotator().annotate(expected, detections)
    assert np.array_equal(out, expected)
    assert not np.array_equal(out, image) and frame.image is out
    assert np.array_equal(image, np.random.default_rng(1).integers(0, 256, (40, 60, 3), np.uint8))

    only = Frame(image, 0, Fraction(1, 30), 0, "s")
    only.results.update(pan=panoptic, dp=densepose)
    out = Draw(results=["dp"]).process(only).image
    assert np.array_equal(out, IUVAnnotator().annotate(image.copy(), densepose))


def test_densepose_overlap_keeps_the_better_person_and_json_holds_quantised_iuv() -> None:
    import base64

    import cv2

    first = np.full((20, 20), 2, np.uint8)  # the higher-scoring person: torso
    second = np.full((20, 20), 23, np.uint8)  # head, overlapping it by 10 px
    second[:, 15:] = 0  # a part of its box that is background
    uv = np.full((2, 20, 20), 0.5, np.float32)
    result = DensePoseResult(
        np.array([[10, 10, 30, 30], [0, 10, 20, 30]], np.float32),
        [first, second],
        [uv, uv],
        np.array([0.9, 0.6], np.float32),
    )
    iuv = result.to_iuv_image(40, 40)
    assert (iuv[10:30, 10:30, 0] == 2).all()  # the first wins the overlap
    assert (iuv[10:30, 0:10, 0] == 23).all()
    assert (iuv[:10, :, 0] == 0).all()
    data = result.to_json()
    assert data["scores"] == [0.9, 0.6] and len(data["iuv_png"]) == 2
    png = np.frombuffer(base64.b64decode(data["iuv_png"][1]), np.uint8)
    decoded = cv2.imdecode(png, cv2.IMREAD_UNCHANGED)
    assert decoded.shape == (20, 20, 3)
    assert np.array_equal(decoded[..., 0], second) and (decoded[..., 1] == 128).all()

"""Exact I, U, V of the articulated figures' primitives, and of a whole figure."""

from __future__ import annotations

import numpy as np

from synthetic.canvas import Canvas
from synthetic.figure import HEAD_LEFT, HEAD_RIGHT, Figure, capsule, ellipse


def test_capsule_uv_by_hand() -> None:
    # Horizontal bone from x=10 to x=30 on row 10, 6 px wide.
    top, left, mask, u, v = capsule(np.array([10.0, 10]), np.array([30.0, 10]), 6, 6, (40, 40))
    at = lambda x, y: (y - top, x - left)  # noqa: E731
    assert mask[at(20, 10)] and v[at(20, 10)] == 0.5 and u[at(20, 10)] == 0.5
    assert v[at(15, 10)] == 0.25
    # 2 px off the axis of a 6 px wide limb: U = 0.5 -/+ 2/6 (sign: image "down" is one side).
    assert np.isclose(u[at(20, 12)], 0.5 - 2 / 6) and np.isclose(u[at(20, 8)], 0.5 + 2 / 6)
    assert mask[at(20, 13)] and not mask[at(20, 14)]  # half width 3
    # Round caps: 3 px beyond the end on the axis is inside, with V clipped to 1.
    assert mask[at(33, 10)] and v[at(33, 10)] == 1.0 and not mask[at(34, 10)]


def test_capsule_tapers_and_clips() -> None:
    _, _, mask, _, _ = capsule(np.array([10.0, 20]), np.array([30.0, 20]), 10, 2, (40, 40))
    width_at = mask.sum(0)
    assert width_at[5] > width_at[-5]  # wide at the proximal end, narrow at the distal one
    assert capsule(np.array([-50.0, -50]), np.array([-40.0, -50]), 4, 4, (40, 40)) is None
    top, left, mask, _, _ = capsule(np.array([-5.0, 5]), np.array([5.0, 5]), 4, 4, (40, 40))
    assert (top, left) == (2, 0) and mask.shape[1] == 9  # window x -8..8 clipped to 0..8
    assert mask[5 - top, 7] and not mask[5 - top, 8]  # the cap ends 2 px after x = 5


def test_ellipse_offsets() -> None:
    top, left, mask, a, b = ellipse(np.array([20.0, 20]), 5, 10, 0.0, (40, 40))
    assert mask[20 - top, 20 - left] and a[20 - top, 20 - left] == 0
    assert a[20 - top, 25 - left] == 1.0 and mask[20 - top, 25 - left]
    assert not mask[20 - top, 26 - left]
    assert b[30 - top, 20 - left] == 1.0 and mask[30 - top, 20 - left]


def paint(figure: Figure) -> Canvas:
    canvas = Canvas(np.zeros((220, 160, 3), np.uint8), np.zeros((220, 160), np.int32))
    figure.paint(canvas, 3.0, lambda p: p * 200 + np.array([80.0, 110.0]), 200.0, owner=5)
    return canvas


def test_figure_parts_sides_and_views() -> None:
    rng = np.random.default_rng(0)
    front = Figure.random(rng)
    front = Figure(**{**front.__dict__, "facing_front": True, "style": "jacks"})
    back = Figure(**{**front.__dict__, "facing_front": False})
    for figure, torso, wanted in ((front, 2, {9, 10, 13, 14, 17, 18, 21, 22}),
                                  (back, 1, {7, 8, 11, 12, 15, 16, 19, 20})):  # fmt: skip
        canvas = paint(figure)
        parts = set(np.unique(canvas.iuv[..., 0]).tolist()) - {0}
        assert parts == wanted | {torso, 3, 4, 5, 6, HEAD_RIGHT, HEAD_LEFT}
        assert ((canvas.owner == 5) == (canvas.iuv[..., 0] > 0)).all()
    # Seen from the front the person's right hand (3) is on the image left; from the back, right.
    left_of = lambda c, p: np.nonzero(c.iuv[..., 0] == p)[1].mean()  # noqa: E731
    assert left_of(paint(front), 3) < left_of(paint(front), 4)
    assert left_of(paint(back), 3) > left_of(paint(back), 4)


def test_figure_uv_runs_along_the_bones() -> None:
    figure = Figure(**{**Figure.random(np.random.default_rng(1)).__dict__, "style": "jacks"})
    canvas = paint(figure)
    joints = figure.joints(3.0)
    screen = lambda p: p * 200 + np.array([80.0, 110.0])  # noqa: E731
    # Pixels of the torso near the neck have V near 0, near the pelvis V near 1.
    torso = canvas.iuv[..., 0] == 2 if figure.facing_front else canvas.iuv[..., 0] == 1
    ys, xs = np.nonzero(torso)
    v = canvas.iuv[ys, xs, 2] / 255
    neck_y, pelvis_y = screen(joints["neck"])[1], screen(joints["pelvis"])[1]
    depth = (ys - neck_y) / (pelvis_y - neck_y)
    inside = (depth > 0.05) & (depth < 0.95)
    assert np.corrcoef(depth[inside], v[inside])[0, 1] > 0.99

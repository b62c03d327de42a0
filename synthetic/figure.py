"""Articulated 2D people made of the 24 DensePose body parts, with exact I, U, V.

A figure is a paper doll seen from the front or the back: limbs are tapered capsules between
joints, the head an ellipse. Every part has its own U, V chart in [0, 1]: for a limb V runs
along the bone from the proximal joint (0) to the distal one (1) and U across it; for the head U
and V are the normalised horizontal and vertical offsets from its centre. The renderer
computes them per pixel, so the IUV ground truth is exact, and clothing textures are sampled in
UV space, so appearance moves with the body (useful for flow).

Local units: the figure is about 1 tall, x to the image right, y down, origin at the pelvis.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from synthetic.assets import clothing_textures
from synthetic.canvas import Canvas

# Bone lengths and widths, in figure heights.
TORSO, NECK = 0.30, 0.085
HEAD_RX, HEAD_RY = 0.055, 0.07
SHOULDER_X, SHOULDER_Y, HIP_X = 0.09, 0.025, 0.055
UPPER_ARM, LOWER_ARM, HAND = 0.15, 0.14, 0.05
UPPER_LEG, LOWER_LEG, FOOT = 0.23, 0.22, 0.06
WIDTH = {
    "torso": (0.20, 0.16),
    "upper_arm": (0.05, 0.042),
    "lower_arm": (0.042, 0.034),
    "hand": (0.04, 0.036),
    "upper_leg": (0.075, 0.06),
    "lower_leg": (0.06, 0.045),
    "foot": (0.042, 0.038),
}

# (limb, person's side) -> (back-view part id, front-view part id); DensePose numbering.
PART_ID = {
    ("torso", None): (1, 2),
    ("hand", "right"): (3, 3),
    ("hand", "left"): (4, 4),
    ("foot", "left"): (5, 5),
    ("foot", "right"): (6, 6),
    ("upper_leg", "right"): (7, 9),
    ("upper_leg", "left"): (8, 10),
    ("lower_leg", "right"): (11, 13),
    ("lower_leg", "left"): (12, 14),
    ("upper_arm", "left"): (15, 17),
    ("upper_arm", "right"): (16, 18),
    ("lower_arm", "left"): (19, 21),
    ("lower_arm", "right"): (20, 22),
}
HEAD_RIGHT, HEAD_LEFT = 23, 24

STYLES = ("walk", "wave", "jacks")
SKIN = ((160, 190, 235), (120, 160, 215), (80, 120, 180), (60, 85, 130), (140, 180, 225))
HAIR = ((20, 20, 20), (30, 60, 110), (40, 90, 160), (160, 200, 220), (60, 60, 70))


def _direction(angle: float) -> np.ndarray:
    """Unit vector at ``angle`` radians from straight down, positive toward image right."""
    return np.array([np.sin(angle), np.cos(angle)])


@dataclass(frozen=True)
class Figure:
    """Appearance and motion of one person.

    Attributes:
        facing_front: seen from the front (person's right on the image left) or the back.
        style: motion: "walk" (alternating leg and arm swing), "wave" (one arm raised and
            waving) or "jacks" (jumping jacks).
        phase: motion phase at frame 0, radians.
        cadence: phase advance per frame, radians.
        swing: motion amplitude, radians.
        shirt: uint8 [64, 64, 3] BGR fabric of the torso and sleeves.
        pants: uint8 [64, 64, 3] BGR fabric of the legs.
        skin: BGR skin tone.
        hair: BGR hair colour.
        shoes: BGR shoe colour.
        long_sleeves: sleeves cover the lower arms.
    """

    facing_front: bool
    style: str
    phase: float
    cadence: float
    swing: float
    shirt: np.ndarray
    pants: np.ndarray
    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    shoes: tuple[int, int, int]
    long_sleeves: bool

    @classmethod
    def random(cls, rng: np.random.Generator) -> Figure:
        """Draws a figure; all randomness comes from ``rng``."""
        fabrics = clothing_textures()
        shirt, pants = rng.choice(len(fabrics), size=2, replace=False)
        return cls(
            facing_front=bool(rng.random() < 0.6),
            style=STYLES[int(rng.integers(len(STYLES)))],
            phase=float(rng.uniform(0, 2 * np.pi)),
            cadence=float(rng.uniform(0.12, 0.3)),
            swing=float(rng.uniform(0.25, 0.5)),
            shirt=fabrics[shirt],
            pants=fabrics[pants],
            skin=SKIN[int(rng.integers(len(SKIN)))],
            hair=HAIR[int(rng.integers(len(HAIR)))],
            shoes=tuple(int(c) for c in rng.integers(0, 90, 3)),  # type: ignore[arg-type]
            long_sleeves=bool(rng.random() < 0.5),
        )

    def _person_side(self, image_side: int) -> str:
        """Which of the person's sides is drawn on the image left (-1) or right (+1)."""
        return (
            ("right" if image_side < 0 else "left")
            if self.facing_front
            else ("left" if image_side < 0 else "right")
        )

    def _angles(self, t: float, s: int) -> tuple[float, float, float, float]:
        """(shoulder, elbow, hip, knee) bone angles of the image side ``s`` at frame ``t``."""
        phi = self.phase + self.cadence * t
        a = self.swing
        alternate = phi + (0.0 if s < 0 else np.pi)
        if self.style == "jacks":
            open_ = 0.5 + 0.5 * np.sin(phi)
            shoulder = s * (0.25 + 2.2 * open_)
            hip = s * (0.05 + 0.6 * a * open_)
            return shoulder, shoulder + s * 0.2, hip, hip
        hip = s * 0.06 + s * 0.5 * a * (1 + np.sin(alternate))
        knee = hip - s * 0.6 * a * max(0.0, np.sin(alternate + 0.8))
        if self.style == "wave" and s > 0:
            shoulder = s * 2.5 + 0.25 * np.sin(2 * phi)
            return shoulder, shoulder + s * (0.5 + 0.4 * np.sin(2 * phi)), 0.3 * hip, 0.3 * hip
        shoulder = s * (0.12 + 0.5 * a * (1 + np.sin(alternate + np.pi)))
        if self.style == "wave":
            hip, knee = 0.3 * hip, 0.3 * hip
        return shoulder, shoulder + s * 0.35, hip, knee

    def joints(self, t: float) -> dict[str, np.ndarray]:
        """Joint positions at frame ``t`` in local units (float64 [2] each).

        Keys: pelvis, neck, head, and per image side ``l``/``r``: shoulder, elbow, wrist,
        hand, hip, knee, ankle, toe (e.g. ``"elbow_l"``).
        """
        phi = self.phase + self.cadence * t
        lean = 0.05 * np.sin(0.5 * phi)
        pelvis = np.array([0.0, -0.015 * abs(np.sin(phi))])
        up = -_direction(lean)
        neck = pelvis + TORSO * up
        out = {"pelvis": pelvis, "neck": neck, "head": neck + NECK * up}
        for s, tag in ((-1, "l"), (1, "r")):
            shoulder_a, elbow_a, hip_a, knee_a = self._angles(t, s)
            shoulder = neck + np.array([s * SHOULDER_X, SHOULDER_Y])
            elbow = shoulder + UPPER_ARM * _direction(shoulder_a)
            wrist = elbow + LOWER_ARM * _direction(elbow_a)
            hip = pelvis + np.array([s * HIP_X, 0.0])
            knee = hip + UPPER_LEG * _direction(hip_a)
            ankle = knee + LOWER_LEG * _direction(knee_a)
            out |= {
                f"shoulder_{tag}": shoulder,
                f"elbow_{tag}": elbow,
                f"wrist_{tag}": wrist,
                f"hand_{tag}": wrist + HAND * _direction(elbow_a),
                f"hip_{tag}": hip,
                f"knee_{tag}": knee,
                f"ankle_{tag}": ankle,
                f"toe_{tag}": ankle + FOOT * np.array([s * 0.9, 0.44]),
            }
        return out

    def lean(self, t: float) -> float:
        """Torso lean at frame ``t``, radians (the head tilts with it)."""
        return 0.05 * np.sin(0.5 * (self.phase + self.cadence * t))

    def limbs(self) -> list[tuple[str, int, str, str, int]]:
        """Draw order: ``(limb, part id, from joint, to joint, image side)``, back to front."""
        order = []
        for limb, a, b in (
            ("lower_leg", "knee", "ankle"),
            ("foot", "ankle", "toe"),
            ("upper_leg", "hip", "knee"),
        ):
            for s, tag in ((-1, "l"), (1, "r")):
                order.append((limb, self._part(limb, s), f"{a}_{tag}", f"{b}_{tag}", s))
        order.append(("torso", self._part("torso", 0), "neck", "pelvis", 0))
        for s, tag in ((-1, "l"), (1, "r")):
            for limb, a, b in (
                ("upper_arm", "shoulder", "elbow"),
                ("lower_arm", "elbow", "wrist"),
                ("hand", "wrist", "hand"),
            ):
                order.append((limb, self._part(limb, s), f"{a}_{tag}", f"{b}_{tag}", s))
        return order

    def _part(self, limb: str, image_side: int) -> int:
        side = None if limb == "torso" else self._person_side(image_side)
        back, front = PART_ID[(limb, side)]
        return front if self.facing_front else back

    def _look(self, limb: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Colours uint8 [n, 3] of a limb's pixels from their U, V (float [n])."""
        if limb in ("torso", "upper_arm") or (limb == "lower_arm" and self.long_sleeves):
            fabric = self.shirt
        elif limb in ("upper_leg", "lower_leg"):
            fabric = self.pants
        else:
            colour = self.shoes if limb == "foot" else self.skin
            fabric = np.full((1, 1, 3), colour, np.uint8)
        h, w = fabric.shape[:2]
        texel = fabric[(v * (h - 1)).astype(np.intp), (u * (w - 1)).astype(np.intp)]
        return _shade(texel, u)

    def _head_look(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Colours uint8 [n, 3] of head pixels at normalised offsets ``a``, ``b`` in [-1, 1]."""
        colour = np.empty((a.size, 3), np.uint8)
        colour[:] = self.skin
        if self.facing_front:
            hair = (b < -0.45) | ((np.abs(a) > 0.8) & (b < 0.2))
            eyes = np.hypot(np.abs(a) - 0.38, b + 0.05) < 0.14
            mouth = (np.abs(a) < 0.3) & (np.abs(b - 0.5) < 0.06)
            colour[eyes | mouth] = (40, 30, 30)
        else:
            hair = b < 0.55
        colour[hair] = self.hair
        return _shade(colour, (a + 1) / 2)

    def paint(
        self,
        canvas: Canvas,
        t: float,
        to_screen: Callable[[np.ndarray], np.ndarray],
        scale: float,
        owner: int,
    ) -> None:
        """Paints the figure at frame ``t`` onto ``canvas``.

        Args:
            canvas: the frame being built.
            t: frame index (fractional allowed).
            to_screen: maps local points float [n, 2] to screen pixels float [n, 2].
            scale: screen pixels per local unit (the figure's height on screen).
            owner: entity index written to ``canvas.owner``.
        """
        joints = self.joints(t)
        names = list(joints)
        screen = dict(zip(names, to_screen(np.stack([joints[n] for n in names])), strict=True))
        for limb, part, a, b, _ in self.limbs()[:7]:  # legs and torso, under the head
            self._paint_limb(canvas, limb, part, screen[a], screen[b], scale, owner)
        self._paint_head(canvas, screen["head"], scale, self.lean(t), owner)
        for limb, part, a, b, _ in self.limbs()[7:]:
            self._paint_limb(canvas, limb, part, screen[a], screen[b], scale, owner)

    def _paint_limb(
        self,
        canvas: Canvas,
        limb: str,
        part: int,
        a: np.ndarray,
        b: np.ndarray,
        scale: float,
        owner: int,
    ) -> None:
        wa, wb = (w * scale for w in WIDTH[limb])
        region = capsule(a, b, wa, wb, canvas.shape)
        if region is None:
            return
        top, left, mask, u, v = region
        colours = np.zeros((*mask.shape, 3), np.uint8)
        colours[mask] = self._look(limb, u[mask], v[mask])
        canvas.paint(top, left, mask, colours, owner, _iuv(part, mask, u, v))

    def _paint_head(
        self, canvas: Canvas, centre: np.ndarray, scale: float, tilt: float, owner: int
    ) -> None:
        region = ellipse(centre, HEAD_RX * scale, HEAD_RY * scale, tilt, canvas.shape)
        if region is None:
            return
        top, left, mask, a, b = region
        colours = np.zeros((*mask.shape, 3), np.uint8)
        colours[mask] = self._head_look(a[mask], b[mask])
        # The person's right half is on the image left when seen from the front.
        right = (a < 0) == self.facing_front
        parts = np.where(right, HEAD_RIGHT, HEAD_LEFT)
        iuv = _iuv(parts, mask, (a + 1) / 2, (b + 1) / 2)
        canvas.paint(top, left, mask, colours, owner, iuv)


def _shade(colours: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Darkens toward the silhouette (u near 0 or 1) so limbs look round."""
    light = 0.65 + 0.35 * np.sin(np.pi * np.clip(u, 0, 1))
    return (colours.astype(np.float32) * light[:, None]).astype(np.uint8)


def _iuv(part: int | np.ndarray, mask: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    iuv = np.zeros((*mask.shape, 3), np.uint8)
    iuv[..., 0] = np.where(mask, part, 0)
    iuv[..., 1] = np.round(np.clip(u, 0, 1) * 255)
    iuv[..., 2] = np.round(np.clip(v, 0, 1) * 255)
    return iuv


def _window(
    lo: np.ndarray, hi: np.ndarray, shape: tuple[int, int]
) -> tuple[int, int, np.ndarray, np.ndarray] | None:
    """Pixel grid (centres at integer coordinates) of the box [lo, hi] clipped to the frame."""
    left, top = max(int(np.floor(lo[0])), 0), max(int(np.floor(lo[1])), 0)
    right, bottom = min(int(np.ceil(hi[0])), shape[1] - 1), min(int(np.ceil(hi[1])), shape[0] - 1)
    if right < left or bottom < top:
        return None
    ys, xs = np.mgrid[top : bottom + 1, left : right + 1]
    return top, left, xs.astype(np.float64), ys.astype(np.float64)


def capsule(
    a: np.ndarray, b: np.ndarray, width_a: float, width_b: float, shape: tuple[int, int]
) -> tuple[int, int, np.ndarray, np.ndarray, np.ndarray] | None:
    """Pixels of a tapered capsule from ``a`` to ``b`` and their U, V.

    Args:
        a: float [2] screen position (x, y) of the proximal joint.
        b: float [2] screen position of the distal joint.
        width_a: width in pixels at ``a``.
        width_b: width in pixels at ``b``.
        shape: ``(H, W)`` of the frame; the region is clipped to it.

    Returns:
        ``(top, left, mask bool [h, w], u float [h, w], v float [h, w])`` or None when nothing
        of it is inside the frame. V is the position along the bone (0 at ``a``, 1 at ``b``),
        U the signed offset across it scaled by the local width (0.5 on the axis).
    """
    pad = max(width_a, width_b) / 2 + 1
    window = _window(np.minimum(a, b) - pad, np.maximum(a, b) + pad, shape)
    if window is None:
        return None
    top, left, xs, ys = window
    d = b - a
    length2 = max(float(d @ d), 1e-9)
    px, py = xs - a[0], ys - a[1]
    v = np.clip((px * d[0] + py * d[1]) / length2, 0.0, 1.0)
    width = width_a + (width_b - width_a) * v
    across = (px * d[1] - py * d[0]) / np.sqrt(length2)  # signed distance from the axis line
    mask = np.hypot(px - v * d[0], py - v * d[1]) <= width / 2
    u = np.clip(0.5 + across / np.maximum(width, 1e-9), 0.0, 1.0)
    return top, left, mask, u, v


def ellipse(
    centre: np.ndarray, rx: float, ry: float, angle: float, shape: tuple[int, int]
) -> tuple[int, int, np.ndarray, np.ndarray, np.ndarray] | None:
    """Pixels of a rotated ellipse and their normalised offsets from its centre.

    Args:
        centre: float [2] screen position (x, y).
        rx: horizontal radius in pixels (before rotation).
        ry: vertical radius in pixels.
        angle: rotation in radians.
        shape: ``(H, W)`` of the frame.

    Returns:
        ``(top, left, mask bool [h, w], a float [h, w], b float [h, w])`` with ``a``, ``b`` the
        offsets along the ellipse's own axes divided by the radii (``a² + b² <= 1`` inside), or
        None when nothing of it is inside the frame.
    """
    pad = max(rx, ry) + 1
    window = _window(centre - pad, centre + pad, shape)
    if window is None:
        return None
    top, left, xs, ys = window
    c, s = np.cos(angle), np.sin(angle)
    dx, dy = xs - centre[0], ys - centre[1]
    a = (c * dx + s * dy) / max(rx, 1e-9)
    b = (-s * dx + c * dy) / max(ry, 1e-9)
    return top, left, a * a + b * b <= 1.0, np.clip(a, -1, 1), np.clip(b, -1, 1)

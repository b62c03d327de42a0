"""Annotators: one verb, ``annotate(image, result) -> image``, drawing in place on
an image the caller owns."""

from __future__ import annotations

import colorsys
from collections.abc import Mapping
from typing import Any, Literal, get_args

import cv2
import numpy as np

from pipeline.results import DensePoseResult, Detections, PanopticSegmentation
from stages.zones import ZoneAnalytics

PALETTE = np.array(
    [(56, 56, 255), (151, 157, 255), (31, 112, 255), (29, 178, 255), (49, 210, 207),
     (10, 249, 72), (23, 204, 146), (134, 219, 61), (52, 147, 26), (187, 212, 0),
     (168, 153, 44), (255, 194, 0), (147, 69, 52), (255, 115, 100), (236, 24, 0),
     (255, 56, 132), (133, 0, 82), (255, 56, 203), (200, 149, 255), (199, 55, 255)],
    dtype=np.uint8,
)  # fmt: skip
"""BGR colours, indexed by track id (or class id when untracked: no id, or -1)."""


def colour(i: int) -> tuple[int, int, int]:
    """Stable BGR colour for an id."""
    b, g, r = PALETTE[int(i) % len(PALETTE)]
    return int(b), int(g), int(r)


class DetectionAnnotator:
    """Boxes, labels with scores (and ``#track id`` when tracked), optional masks (alpha
    blended) and landmarks; coloured by track id, by class where untracked (no id, or -1).

    Args:
        thickness: box line width in pixels.
        mask_alpha: opacity of instance masks.
    """

    def __init__(self, thickness: int = 2, mask_alpha: float = 0.45) -> None:
        self.thickness = thickness
        self.mask_alpha = mask_alpha

    def annotate(self, image: np.ndarray, detections: Detections) -> np.ndarray:
        tracks = detections.track_ids
        if tracks is None:
            tracks = np.full(len(detections), -1, np.int64)
        ids = np.where(tracks >= 0, tracks, detections.class_ids)  # untracked: by class
        if detections.masks is not None and len(detections):
            overlay = image.copy()
            for mask, i in zip(detections.masks, ids, strict=True):
                overlay[mask] = colour(i)
            cv2.addWeighted(overlay, self.mask_alpha, image, 1 - self.mask_alpha, 0, dst=image)
        for n, (box, i) in enumerate(zip(detections.boxes.astype(int), ids, strict=True)):
            x0, y0, x1, y1 = (int(v) for v in box)
            c = colour(i)
            cv2.rectangle(image, (x0, y0), (x1, y1), c, self.thickness)
            label = f"{detections.label(n)} {detections.scores[n]:.2f}"
            if tracks[n] >= 0:
                label = f"#{int(tracks[n])} {label}"
            (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
            cv2.rectangle(image, (x0, max(y0 - th - 6, 0)), (x0 + tw + 4, max(y0, th + 6)), c, -1)
            cv2.putText(image, label, (x0 + 2, max(y0 - 4, th + 2)), cv2.FONT_HERSHEY_SIMPLEX,
                        0.5, (255, 255, 255), 1, cv2.LINE_AA)  # fmt: skip
            if detections.landmarks is not None:
                for x, y in detections.landmarks[n].astype(int):
                    cv2.circle(image, (int(x), int(y)), 2, (0, 255, 255), -1)
        return image


def stuff_colour(class_id: int) -> tuple[int, int, int]:
    """Stable BGR colour for a stuff class, muted so it does not read as a tracked thing.

    Hues step by the golden ratio, so neighbouring class ids get far-apart hues.
    """
    r, g, b = colorsys.hsv_to_rgb((int(class_id) * 0.618034) % 1.0, 0.45, 0.75)
    return round(b * 255), round(g * 255), round(r * 255)


def _segment_index(segment_map: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Row of each pixel's segment in ``ids``, plus one; 0 where the id is not listed.

    Args:
        segment_map: int [H, W] segment ids.
        ids: int64 [K] distinct segment ids to look up.

    Returns:
        int32 or intp [H, W] in 0..K.
    """
    lo, hi = int(segment_map.min()), int(segment_map.max())
    if lo >= 0 and hi < 1 << 20:  # small ids: a direct lookup table over 0..max id
        lut = np.zeros(hi + 1, np.int32)
        inside = (ids >= 0) & (ids <= hi)
        lut[ids[inside]] = np.flatnonzero(inside) + 1
        return np.take(lut, segment_map)
    order = np.argsort(ids)
    keys = ids[order]
    pos = np.searchsorted(keys, segment_map).clip(max=len(keys) - 1)
    return np.where(keys[pos] == segment_map, order[pos] + 1, 0)


def _borders(index: np.ndarray, same: np.ndarray | None = None) -> np.ndarray:
    """1-pixel lines where ``index`` changes between 4-neighbours, drawn on labelled pixels.

    Args:
        index: int [H, W] labels; 0 = unlabelled, never drawn on.
        same: optional int [H, W]; a change only counts between pixels equal in it.

    Returns:
        bool [H, W]. A change between two labelled pixels marks the right / lower one;
        between a labelled and an unlabelled pixel, the labelled one.
    """
    edge = np.zeros(index.shape, bool)
    labelled = index > 0
    for a, b in (
        (np.s_[:, :-1], np.s_[:, 1:]),  # left, right
        (np.s_[:-1, :], np.s_[1:, :]),  # top, bottom
    ):
        change = index[a] != index[b]
        if same is not None:
            change &= same[a] == same[b]
        edge[b] |= change & labelled[b]
        edge[a] |= change & ~labelled[b] & labelled[a]
    return edge


def _blend(image: np.ndarray, colours: np.ndarray, where: np.ndarray, alpha: float) -> None:
    """``image[where] = alpha * colours + (1 - alpha) * image``, in place; other pixels kept."""
    mixed = cv2.addWeighted(colours, alpha, image, 1 - alpha, 0)
    cv2.copyTo(mixed, np.ascontiguousarray(where).view(np.uint8), image)


class PanopticAnnotator:
    """Colours every segment, blended over the image, with optional white contours.

    Thing segments get ``colour(track_id)`` (the segment id when untracked), so an
    object keeps its colour while its segment id changes from frame to frame; stuff
    segments get one colour per class. Void (0) and ids missing from ``segments``
    are left as they are.

    Args:
        alpha: opacity of the segment colours.
        contours: draw 1-pixel white lines on segment borders.
        stuff_colours: BGR colour per stuff class id; other classes get ``stuff_colour``.
    """

    def __init__(
        self,
        alpha: float = 0.5,
        contours: bool = True,
        stuff_colours: Mapping[int, tuple[int, int, int]] | None = None,
    ) -> None:
        self.alpha = alpha
        self.contours = contours
        self.stuff_colours = dict(stuff_colours or {})

    def segment_colour(self, segment_id: int, info: Mapping[str, Any]) -> tuple[int, int, int]:
        """BGR colour of one segment, from its ``segments`` entry."""
        if info["is_thing"]:
            track = info.get("track_id")
            return colour(segment_id if track is None else track)
        cls = int(info["class"])
        return tuple(self.stuff_colours.get(cls, stuff_colour(cls)))

    def annotate(self, image: np.ndarray, panoptic: PanopticSegmentation) -> np.ndarray:
        ids = np.array([k for k in panoptic.segments if k != 0], np.int64)
        if not len(ids):
            return image
        table = np.zeros((len(ids) + 1, 3), np.uint8)
        table[1:] = [self.segment_colour(int(k), panoptic.segments[int(k)]) for k in ids]
        index = _segment_index(panoptic.segment_map, ids)
        _blend(image, np.take(table, index, axis=0), index > 0, self.alpha)
        if self.contours:
            image[_borders(index)] = (255, 255, 255)
        return image


PART_COLOURS = cv2.applyColorMap(
    np.round(np.arange(25) * 255 / 24).astype(np.uint8)[:, None], cv2.COLORMAP_PARULA
)[:, 0]
"""uint8 [25, 3] BGR colour per DensePose part index (row 0, background, is never drawn)."""
UV_COLORMAP = cv2.COLORMAP_JET
"""OpenCV colour map for the "u" and "v" modes, over U*255 or V*255."""
U_LINE, V_LINE = (0, 0, 255), (255, 128, 0)
"""BGR colours of the U and V iso-lines in the "contours" mode."""
IUVMode = Literal["parts", "u", "v", "contours"]


def render_iuv(
    image: np.ndarray, iuv: np.ndarray, mode: IUVMode = "parts", alpha: float = 0.7
) -> np.ndarray:
    """Draws a full-frame DensePose IUV image onto ``image``, in place.

    Modes follow detectron2's DensePose apply_net: "parts" colours the part index,
    "u" / "v" colour-map U or V, "contours" draws iso-lines of U and V at multiples
    of 0.1 (each inside one part, so part borders are not drawn). Background
    (I = 0) is left as it is in every mode.

    Args:
        image: uint8 [H, W, 3] BGR, drawn on.
        iuv: uint8 [H, W, 3], (I part 0..24, U*255, V*255).
        mode: "parts", "u", "v" or "contours".
        alpha: opacity of the colours or lines.

    Returns:
        ``image``.
    """
    if iuv.shape != (*image.shape[:2], 3):
        raise ValueError(f"IUV image {iuv.shape} does not match the frame {image.shape}")
    part = iuv[..., 0]
    if mode == "contours":
        level = (np.arange(256) * 10 // 255 + 1).astype(np.uint8)  # 1..11, steps of 0.1
        fg = (part > 0).view(np.uint8)
        u_line = _borders(np.take(level, iuv[..., 1]) * fg, same=part)
        v_line = _borders(np.take(level, iuv[..., 2]) * fg, same=part)
        lines = image.copy()
        lines[u_line] = U_LINE
        lines[v_line] = V_LINE
        _blend(image, lines, u_line | v_line, alpha)
        return image
    if mode == "parts":
        colours = np.take(PART_COLOURS, np.minimum(part, 24), axis=0)
    elif mode in ("u", "v"):
        coordinate = np.ascontiguousarray(iuv[..., 1 if mode == "u" else 2])
        colours = cv2.applyColorMap(coordinate, UV_COLORMAP)
    else:
        raise ValueError(f"unknown IUV mode {mode!r}, expected one of {get_args(IUVMode)}")
    _blend(image, colours, part > 0, alpha)
    return image


class IUVAnnotator:
    """DensePose body parts or U, V coordinates, pasted full-frame and drawn with ``render_iuv``,
    and optionally each person's box and score (apply_net's ``bbox`` mode), and track id.

    Args:
        mode: "parts", "u", "v" or "contours" (see ``render_iuv``).
        alpha: opacity of the colours or lines.
        boxes: also draw the boxes, labelled with their scores when the result has them.
    """

    def __init__(self, mode: IUVMode = "parts", alpha: float = 0.7, boxes: bool = True) -> None:
        if mode not in get_args(IUVMode):
            raise ValueError(f"unknown IUV mode {mode!r}, expected one of {get_args(IUVMode)}")
        self.mode = mode
        self.alpha = alpha
        self.box_annotator = DetectionAnnotator(thickness=1) if boxes else None

    def annotate(self, image: np.ndarray, densepose: DensePoseResult) -> np.ndarray:
        iuv = densepose.to_iuv_image(*image.shape[:2])
        render_iuv(image, iuv, self.mode, self.alpha)
        if self.box_annotator is not None and len(densepose.boxes):
            count = len(densepose.boxes)
            scores = densepose.scores if densepose.scores is not None else np.ones(count)
            people = Detections(densepose.boxes, scores, np.zeros(count),
                                track_ids=densepose.track_ids, class_names=("person",))  # fmt: skip
            self.box_annotator.annotate(image, people)
        return image


def _label(image: np.ndarray, text: str, x: int, y: int, c: tuple[int, int, int]) -> None:
    """White text on a box of colour ``c``, its lower left corner at (x, y), kept on the image."""
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
    x = min(max(x, 0), max(image.shape[1] - tw - 4, 0))
    y = min(max(y, th + 4), image.shape[0] - 2)
    cv2.rectangle(image, (x, y - th - 4), (x + tw + 4, y + 2), c, -1)
    cv2.putText(image, text, (x + 2, y - 2), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1,
                cv2.LINE_AA)  # fmt: skip


class ZoneAnnotator:
    """Zones shaded (stronger while occupied) with ``name: occupancy``, lines with an arrow to
    their ``in`` side and ``name in N out M`` (every class summed): the ``zones`` stage's
    ``ZoneAnalytics``. A colour per zone and per line, by their order in the config.

    Args:
        thickness: outline and line width in pixels.
        alpha: opacity of an occupied zone's shading (an empty zone's is a third of it).
    """

    def __init__(self, thickness: int = 2, alpha: float = 0.35) -> None:
        self.thickness, self.alpha = thickness, alpha

    def annotate(self, image: np.ndarray, analytics: ZoneAnalytics) -> np.ndarray:
        geometry = analytics.geometry
        if geometry is None:
            return image
        for k, (name, polygon) in enumerate(geometry.zones.items()):
            c = colour(2 * k)
            points = np.round(polygon).astype(np.int32)
            occupancy = analytics.occupancy.get(name, 0)
            alpha = self.alpha if occupancy else self.alpha / 3
            overlay = image.copy()
            cv2.fillPoly(overlay, [points], c)
            cv2.addWeighted(overlay, alpha, image, 1 - alpha, 0, dst=image)
            cv2.polylines(image, [points], True, c, self.thickness, cv2.LINE_AA)
            top = points[np.argmin(points[:, 1])]
            _label(image, f"{name}: {occupancy}", int(top[0]), int(top[1]) - 4, c)
        for k, (name, line) in enumerate(geometry.lines.items()):
            c = colour(2 * k + 1)
            (x1, y1), (x2, y2) = line.astype(np.float64)
            cv2.line(image, (round(x1), round(y1)), (round(x2), round(y2)), c, self.thickness,
                     cv2.LINE_AA)  # fmt: skip
            length = float(np.hypot(x2 - x1, y2 - y1))
            normal = np.array([y2 - y1, x1 - x2]) / length  # towards the in side
            middle = np.array([x1 + x2, y1 + y2]) / 2
            tip = middle + normal * min(max(0.15 * length, 15.0), 40.0)
            cv2.arrowedLine(image, tuple(np.round(middle).astype(int).tolist()),
                            tuple(np.round(tip).astype(int).tolist()), c, self.thickness,
                            cv2.LINE_AA, tipLength=0.35)  # fmt: skip
            counts = analytics.line_counts.get(name, {})
            total = {d: sum(counts.get(d, {}).values()) for d in ("in", "out")}
            text = f"{name} in {total['in']} out {total['out']}"
            (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
            # centred on the out side of the middle, clear of the line and the arrow
            reach = abs(normal[0]) * (tw / 2 + 8) + abs(normal[1]) * (th / 2 + 8)
            centre = middle - normal * reach
            _label(image, text, round(centre[0] - tw / 2), round(centre[1] + th / 2), c)
        return image

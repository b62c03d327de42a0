"""``generate()``: frames of a synthetic video with their exact ground truth."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from synthetic.categories import BY_ID, ID_DIVISOR, segment_id, split_segment_id
from synthetic.scene import Scene

MIN_AREA = 16
"""Things showing fewer pixels than this are marked void (ignored), not annotated."""


@dataclass(frozen=True)
class Segment:
    """One panoptic segment of a frame.

    Attributes:
        id: segment id (``category_id * 1000 + track_id`` for things, ``category_id * 1000``
            for stuff; see ``synthetic.categories.ID_DIVISOR``).
        category_id: class.
        isthing: thing or stuff.
        track_id: persistent instance id for things, None for stuff.
        area: visible pixels.
        bbox: ``(x, y, w, h)`` of the visible pixels, COCO style.
    """

    id: int
    category_id: int
    isthing: bool
    track_id: int | None
    area: int
    bbox: tuple[int, int, int, int]


@dataclass(frozen=True)
class SyntheticFrame:
    """A frame and its ground truth.

    Attributes:
        index: frame number in the sequence.
        image: uint8 [H, W, 3] BGR.
        panoptic: int32 [H, W] segment id per pixel, 0 = void.
        segments: segment id -> :class:`Segment` for every id in ``panoptic`` except 0.
        iuv: uint8 [H, W, 3] DensePose IUV: part index I (0..24, 0 = no body part), U * 255,
            V * 255. Nonzero only on visible person pixels.
    """

    index: int
    image: np.ndarray
    panoptic: np.ndarray
    segments: dict[int, Segment]

    iuv: np.ndarray

    def things(self) -> list[Segment]:
        """The visible thing segments, by segment id."""
        return [s for _, s in sorted(self.segments.items()) if s.isthing]

    def mask(self, sid: int) -> np.ndarray:
        """bool [H, W] pixels of segment ``sid``."""
        return self.panoptic == sid


def _bbox(ys: np.ndarray, xs: np.ndarray) -> tuple[int, int, int, int]:
    x0, y0 = int(xs.min()), int(ys.min())
    return x0, y0, int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1


def generate(
    seed: int,
    frames: int,
    width: int = 320,
    height: int = 320,
    things: int = 4,
    people: int = 2,
    arrivals_per_100: float = 4.0,
) -> Iterator[SyntheticFrame]:
    """Renders a synthetic video frame by frame.

    The same arguments always give byte-identical frames and annotations.

    Args:
        seed: fixes the whole sequence (world, camera path, objects, motion).
        frames: number of frames.
        width: frame width in pixels.
        height: frame height in pixels.
        things: rigid objects in view at frame 0.
        people: people in view at frame 0.
        arrivals_per_100: objects or people entering per 100 frames.

    Yields:
        One :class:`SyntheticFrame` per frame, in order.
    """
    rng = np.random.default_rng(seed)
    scene = Scene.random(rng, (width, height), frames, things, people, arrivals_per_100)
    for t in range(frames):
        canvas, entities = scene.render(t)
        ids = np.array(
            [0] + [segment_id(e.category.id, e.track_id) for e in entities], dtype=np.int32
        )
        panoptic = np.where(canvas.owner > 0, ids[canvas.owner], canvas.stuff * ID_DIVISOR)
        panoptic = panoptic.astype(np.int32)
        areas = np.bincount(canvas.owner.ravel(), minlength=len(ids))
        tiny = np.flatnonzero((areas > 0) & (areas < MIN_AREA))
        tiny = tiny[tiny > 0]
        iuv = canvas.iuv
        if len(tiny):
            void = np.isin(canvas.owner, tiny)
            panoptic[void] = 0
            iuv[void] = 0
        segments = {}
        for sid in np.unique(panoptic):
            if sid == 0:
                continue
            ys, xs = np.nonzero(panoptic == sid)
            category, track = split_segment_id(int(sid))
            segments[int(sid)] = Segment(
                id=int(sid),
                category_id=category,
                isthing=BY_ID[category].isthing,
                track_id=track,
                area=len(ys),
                bbox=_bbox(ys, xs),
            )
        yield SyntheticFrame(t, canvas.image, panoptic, segments, iuv)

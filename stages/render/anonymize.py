"""Face (or any object) de-identification: blur, pixelate or fill each detection,
with temporal memory so a face the detector misses for a few frames stays
covered, and a fail-closed mode for frames whose detections never arrived.

Memory: covered regions are remembered (``RegionMemory``). A detection
overlapping a remembered region (IoU above ``match_iou``) updates it; a region not
seen on this frame keeps being covered for ``memory`` frames, moved along its last
velocity and grown by ``grow_per_frame`` per missed frame, since a missed face
has usually moved.
Frames dropped upstream count as missed frames (``Frame.index`` gaps).

Why not the ``track`` stage's tracker: this memory has to fail safe, not to keep ids. Every
detection is covered on the frame it is found, whatever its score and however new (ByteTrack
starts a track only above its activation score and confirms it a frame later); any overlap
(IoU 0.1) is the same face, since a wrong link only covers more; and nothing here is ever
shown as an id. So it stays a few lines of box IoU with a velocity, private to this stage.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar, Literal

import cv2
import numpy as np

from pipeline.config import register
from pipeline.frame import Frame
from pipeline.results import Detections, box_iou
from pipeline.stage import References, Stage

log = logging.getLogger("framegraph")


def scale_boxes(boxes: np.ndarray, scale: float) -> np.ndarray:
    """Boxes [N, 4] grown by ``scale`` about their centres."""
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]) / 2 * scale
    return np.hstack([centre - half, centre + half])


def cover_mask(shape: tuple[int, int], regions: np.ndarray, ellipse: bool) -> np.ndarray:
    """bool [H, W]: the pixels the regions [N, 4] cover (as ellipses or boxes)."""
    mask = np.zeros(shape, np.uint8)
    for x0, y0, x1, y1 in regions:
        if ellipse:
            centre = (round((x0 + x1) / 2), round((y0 + y1) / 2))
            axes = (max(round((x1 - x0) / 2), 1), max(round((y1 - y0) / 2), 1))
            cv2.ellipse(mask, centre, axes, 0, 0, 360, 1, -1)
        else:
            cv2.rectangle(mask, (round(x0), round(y0)), (round(x1), round(y1)), 1, -1)
    return mask.astype(bool)


def face_coverage(
    shape: tuple[int, int], regions: np.ndarray, faces: np.ndarray, ellipse: bool = True
) -> np.ndarray:
    """float [F]: the share of each face box [F, 4] (e.g. ground truth) that the covered
    regions [N, 4] hide; a face under 0.95 counts as leaked in the tests and benches."""
    mask = cover_mask(shape, regions, ellipse)
    covered = [
        mask[max(y0, 0) : y1, max(x0, 0) : x1].mean()
        for x0, y0, x1, y1 in np.round(faces).astype(int).reshape(-1, 4)
    ]
    return np.array(covered, np.float64)


@dataclass
class Region:
    """A remembered detection of one source.

    Attributes:
        box: float32 [4] xyxy as last seen.
        velocity: float32 [4] xyxy change per frame between its last two sightings.
        last_seen: the frame index of its last sighting.
    """

    box: np.ndarray
    velocity: np.ndarray
    last_seen: int

    def predicted(self, index: int) -> np.ndarray:
        """float32 [4]: the box moved along its velocity to frame ``index``."""
        return self.box + self.velocity * (index - self.last_seen)


class RegionMemory:
    """The detections of one source over its last ``memory`` frames.

    Each frame's boxes continue the regions they overlap most (IoU at least ``match_iou``),
    one box per region, greedily: the box whose best IoU is highest chooses first (the most
    certain match), each taking the best region no box took before it (the older on a tie).
    Boxes that continue nothing become new regions. A region unseen for more than ``memory``
    frames is forgotten.

    Args:
        match_iou: least IoU to continue a region.
        memory: frames a region is kept without a match.
    """

    def __init__(self, match_iou: float, memory: int) -> None:
        self.match_iou, self.memory = match_iou, memory
        self.regions: list[Region] = []  # oldest first

    def update(self, boxes: np.ndarray, index: int) -> None:
        """Adds one frame's boxes float [N, 4] (xyxy) at frame ``index`` and forgets the
        regions it leaves too old (frames missing between two calls age them)."""
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        # No dtype on purpose: an empty region list is float64, as this memory has always
        # built it, and the unstable sort below may order ties otherwise in another dtype.
        iou = box_iou(boxes, np.array([r.box for r in self.regions]).reshape(-1, 4))
        order = np.argsort(-iou.max(axis=1, initial=0))
        free = np.ones(len(self.regions), bool)
        for n in order:
            box = boxes[n]
            candidates = np.where(free, iou[n], -np.inf)
            m = int(candidates.argmax()) if len(candidates) else -1
            if m >= 0 and free[m] and candidates[m] >= self.match_iou:
                free[m] = False
                region = self.regions[m]
                region.velocity = (box - region.box) / max(index - region.last_seen, 1)
                region.box, region.last_seen = box, index
            else:
                self.regions.append(Region(box, np.zeros(4, np.float32), index))
        self.regions = [r for r in self.regions if index - r.last_seen <= self.memory]


@register("anonymize")
class Anonymize(Stage):
    """Hides every detection of the ``detections`` stage in the image.

    Args:
        detections: name of the stage whose Detections to hide (None: all
            Detections on the frame).
        method: ``blur``, ``pixelate`` or ``fill``.
        scale: cover region = detection box grown by this factor (1.5 puts the
            whole box inside the ellipse).
        shape: ``ellipse`` or ``box``.
        memory: frames a missed detection stays covered.
        grow_per_frame: how much a remembered region grows per missed frame.
        match_iou: IoU linking a detection to a remembered region.
        min_score: ignore detections below this score.
        fail_closed: when a frame arrives without the detections (the detector
            failed or timed out on it), cover the whole frame instead of
            passing it through.
    """

    consumes = (Detections,)
    produces = (Detections,)
    references: ClassVar[References] = {"detections": (Detections,)}
    stateful = True

    def __init__(
        self,
        detections: str | None = None,
        method: Literal["blur", "pixelate", "fill"] = "blur",
        scale: float = 1.5,
        shape: Literal["ellipse", "box"] = "ellipse",
        memory: int = 8,
        grow_per_frame: float = 0.05,
        match_iou: float = 0.1,
        min_score: float = 0.0,
        fail_closed: bool = True,
    ) -> None:
        self.detections = detections
        self.method = method
        self.scale = scale
        self.ellipse = shape == "ellipse"
        self.memory = memory
        self.grow_per_frame = grow_per_frame
        self.match_iou = match_iou
        self.min_score = min_score
        self.fail_closed = fail_closed
        self.frames_failed_closed = 0
        self._memory: dict[str, RegionMemory] = {}

    def _found(self, frame: Frame) -> np.ndarray | None:
        if self.detections is not None:
            result = frame.results.get(self.detections)
            results = [result] if isinstance(result, Detections) else []
        else:
            results = [r for r in frame.results.values() if isinstance(r, Detections)]
        if not results:
            return None
        boxes = [r.boxes[r.scores >= self.min_score] for r in results]
        return np.concatenate(boxes) if boxes else np.zeros((0, 4), np.float32)

    def regions(self, source_id: str, index: int, boxes: np.ndarray) -> np.ndarray:
        """Update the source's memory with this frame's boxes; return what to cover [K, 4]."""
        memory = self._memory.get(source_id)
        if memory is None:
            memory = self._memory[source_id] = RegionMemory(self.match_iou, self.memory)
        memory.update(boxes, index)
        cover = []
        for r in memory.regions:
            missed = index - r.last_seen
            grow = 1 + self.grow_per_frame * missed
            cover.append(scale_boxes(r.predicted(index)[None], self.scale * grow)[0])
        return np.array(cover, np.float32).reshape(-1, 4)

    def on_gap(self, source_id: str, missing: int) -> None:
        """Nothing to do: the index gap ages the memory by itself."""

    def on_source_end(self, source_id: str) -> None:
        self._memory.pop(source_id, None)

    def hide(self, image: np.ndarray, regions: np.ndarray) -> np.ndarray:
        """A copy of ``image`` with ``regions`` [K, 4] hidden."""
        out = image.copy()
        height, width = image.shape[:2]
        for region in regions:
            x0, y0 = (max(int(np.floor(v)), 0) for v in region[:2])
            x1, y1 = min(int(np.ceil(region[2])), width), min(int(np.ceil(region[3])), height)
            if x1 <= x0 or y1 <= y0:
                continue
            patch = out[y0:y1, x0:x1]
            hidden = self._effect(patch)
            local = region - [x0, y0, x0, y0]
            mask = cover_mask(patch.shape[:2], local[None], self.ellipse)
            patch[mask] = hidden[mask]
        return out

    def _effect(self, patch: np.ndarray) -> np.ndarray:
        h, w = patch.shape[:2]
        if self.method == "fill":
            return np.zeros_like(patch)
        if self.method == "pixelate":
            small = cv2.resize(
                patch, (max(w // 12, 1), max(h // 12, 1)), interpolation=cv2.INTER_AREA
            )
            return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)
        # blur: average down to a few cells, then smooth, so no facial detail survives
        small = cv2.resize(patch, (max(w // 16, 1), max(h // 16, 1)), interpolation=cv2.INTER_AREA)
        return cv2.GaussianBlur(
            cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR), (0, 0), 3
        )

    def process(self, frame: Frame) -> Frame:
        boxes = self._found(frame)
        if boxes is None:
            if self.fail_closed:
                self.frames_failed_closed += 1
                h, w = frame.image.shape[:2]
                whole = np.array([[0, 0, w, h]], np.float32)
                frame.image = self._effect(frame.image)
                frame.results[self.name] = Detections(whole, [1.0], [0], class_names=("hidden",))
                return frame
            log.warning("frame %s#%d has no detections to anonymize", frame.source_id, frame.index)
            return frame
        regions = self.regions(frame.source_id, frame.index, boxes)
        frame.image = self.hide(frame.image, regions)
        frame.results[self.name] = Detections(
            regions, np.ones(len(regions)), np.zeros(len(regions)), class_names=("hidden",)
        )
        return frame

    def status(self) -> dict[str, object]:
        return {"failed_closed": self.frames_failed_closed} if self.frames_failed_closed else {}

"""VPSNet's test-time panoptic fusion (UPSNet's, without the void logit), step by step.

1. :func:`select_detections` (``MaskROI``): every (proposal, class) pair scoring above the
   threshold, one class-agnostic NMS, the best 100; a single zero "dummy" when none pass.
2. :func:`remove_overlaps` (``MaskRemoval``): best first, each 28x28 mask logit resized to
   its (truncated) box; dropped when empty or more than 30 % inside kept masks of its class;
   the kept logits pasted into full-frame maps.
3. :func:`panoptic_logits` (``SegTerm``): stuff logits, then per kept instance its class's
   semantic logit inside its box plus its mask logit; the argmax is the panoptic map.
4. :func:`unify` (``get_unified_pan_result``): an instance whose pixels the semantic head
   mostly calls one stuff class becomes that stuff; small stuff segments become void.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch import Tensor

from .boxes import apply_deltas, nms_inclusive
from .config import BOX_STDS

VOID = 255
"""Class of unlabelled pixels in :class:`PanopticMaps`."""


@dataclass
class Detections:
    """Detections of one image, best first.

    Attributes:
        boxes: float32 [n, 4] xyxy inclusive, input pixels.
        scores: [n].
        classes: int64 [n], detector classes 1..K (0 only for the dummy).
    """

    boxes: Tensor
    scores: Tensor
    classes: Tensor

    def __len__(self) -> int:
        return len(self.scores)

    def take(self, index: Tensor | list[int]) -> Detections:
        index = torch.as_tensor(index, dtype=torch.long)
        return Detections(self.boxes[index], self.scores[index], self.classes[index])


def select_detections(
    proposals: Tensor,
    logits: Tensor,
    deltas: Tensor,
    image_size: tuple[int, int],
    score_thresh: float = 0.6,
    nms_thresh: float = 0.5,
    max_detections: int = 100,
) -> Detections:
    """UPSNet's ``MaskROI``.

    Args:
        proposals: [R, 4] xyxy inclusive.
        logits: [R, K + 1] box-head class logits (background first).
        deltas: [R, 4 (K + 1)] class-specific deltas.
        image_size: (height, width) of the padded input (boxes are clipped to it).

    Returns:
        Detections with score > ``score_thresh`` after one class-agnostic NMS, at most
        ``max_detections`` (ties with the last one kept too); the dummy (zero box, score 1,
        class 0) when none pass.
    """
    probs = torch.softmax(logits, dim=1)
    boxes = apply_deltas(proposals, deltas, BOX_STDS, image_size, clamp_below=False)
    boxes = boxes.view(len(proposals), -1, 4)[:, 1:].reshape(-1, 4)
    scores = probs[:, 1:].reshape(-1)
    classes = torch.arange(1, probs.shape[1], device=probs.device).repeat(len(proposals))
    keep = torch.nonzero(scores > score_thresh).squeeze(1)
    if not len(keep):
        dummy_class = torch.zeros(1, dtype=torch.long, device=proposals.device)
        return Detections(proposals.new_zeros(1, 4), proposals.new_ones(1), dummy_class)
    boxes, scores, classes = boxes[keep], scores[keep], classes[keep]
    keep = nms_inclusive(boxes, scores, nms_thresh)
    if len(keep) > max_detections:
        keep = keep[scores[keep] >= scores[keep[max_detections - 1]]]
    return Detections(boxes[keep], scores[keep], classes[keep])


def remove_overlaps(
    detections: Detections,
    mask_logits: Tensor,
    image_size: tuple[int, int],
    overlap_thresh: float = 0.3,
) -> tuple[list[int], Tensor]:
    """UPSNet's ``MaskRemoval``.

    Args:
        mask_logits: [n, 28, 28], each detection's own class channel.
        image_size: (height, width) of the padded input.

    Returns:
        ``(kept indices best first, pasted logits [k, H, W])``, zero outside each box;
        ``([0], zeros [1, H, W])`` when none is kept.
    """
    height, width = image_size
    order = np.argsort(detections.scores.cpu().numpy(), kind="stable")[::-1]
    kept: list[int] = []
    energy: list[np.ndarray] = []
    taken: dict[int, np.ndarray] = {}
    boxes = detections.boxes.cpu().numpy().astype(np.int32)
    classes = detections.classes.tolist()  # one copy, not a device sync per detection
    logits = mask_logits.float().cpu().numpy()
    for index in order:
        cls = classes[index]
        if cls == 0:
            continue
        x1, y1, x2, y2 = (int(v) for v in boxes[index])
        w, h = max(x2 - x1 + 1, 1), max(y2 - y1 + 1, 1)
        resized = cv2.resize(logits[index], (w, h))
        full = np.zeros((height, width), np.float32)
        window = full[y1 : y1 + h, x1 : x1 + w]
        window[...] = resized[: window.shape[0], : window.shape[1]]
        mask = full > 0
        area = int(mask.sum())
        mine = taken.setdefault(cls, np.zeros((height, width), bool))
        if area == 0 or (mask & mine).sum() / area > overlap_thresh:
            continue
        mine |= mask
        kept.append(int(index))
        energy.append(full)
    if not kept:
        return [0], torch.zeros(1, height, width, device=mask_logits.device)
    return kept, torch.from_numpy(np.stack(energy)).to(mask_logits.device)


def panoptic_logits(
    semantic: Tensor,
    detections: Detections,
    energy: Tensor,
    num_stuff: int,
) -> Tensor:
    """``SegTerm`` + the mask logits: [num_stuff + k, H, W].

    Args:
        semantic: [K_sem, H, W] full-resolution semantic logits (stuff first).
        detections: the kept detections, in the order of ``energy``.
        energy: [k, H, W] from :func:`remove_overlaps`.
    """
    instances = torch.zeros_like(energy)
    for i, (box, cls) in enumerate(zip(detections.boxes.tolist(), detections.classes.tolist(),
                                       strict=True)):  # fmt: skip
        if cls == 0:
            continue
        x1, y1, x2, y2 = int(box[0]), int(box[1]), round(box[2]), round(box[3])
        channel = semantic[num_stuff + cls - 1]
        instances[i, y1 : y2 + 1, x1 : x2 + 1] = channel[y1 : y2 + 1, x1 : x2 + 1]
    return torch.cat([semantic[:num_stuff], instances + energy])


@dataclass
class PanopticMaps:
    """One frame's panoptic output (the official three-channel PNG, as arrays).

    Attributes:
        classes: uint8 [H, W] semantic class (stuff first, then things), :data:`VOID` for void.
        instances: int32 [H, W] 1-based rank of the instance owning the pixel, 0 for stuff.
        track_ids: int32 [H, W] 1-based track id of the instance, 0 for stuff / void.
    """

    classes: np.ndarray
    instances: np.ndarray
    track_ids: np.ndarray


def unify(
    panoptic: np.ndarray,
    semantic: np.ndarray,
    instance_classes: list[int],
    object_ids: list[int],
    num_stuff: int,
    stuff_area: int = 2048,
) -> PanopticMaps:
    """``get_unified_pan_result``.

    Args:
        panoptic: int [H, W] argmax of :func:`panoptic_logits` (< num_stuff: stuff class;
            num_stuff + i: kept instance i).
        semantic: int [H, W] argmax of the semantic logits.
        instance_classes: detector class (1-based) of each kept instance.
        object_ids: 0-based object id of each kept instance.
        stuff_area: stuff classes covering fewer pixels become void.

    The official code gives the i-th *present* instance (in channel order) the i-th object id,
    not its own, so an instance that wins no pixel shifts the ids after it; kept as is.
    """
    last_stuff = num_stuff - 1
    classes = panoptic.astype(np.int32).copy()
    instances = np.zeros_like(classes)
    track_ids = np.zeros_like(classes)
    present = [int(v) for v in np.unique(panoptic) if v > last_stuff]
    for rank, value in enumerate(present):
        region = panoptic == value
        own = instance_classes[value - num_stuff] + last_stuff
        votes = np.bincount(semantic[region].ravel())
        majority = int(votes.argmax())
        if majority != own and majority <= last_stuff and votes[majority] >= 0.5 * region.sum():
            classes[region] = majority
            continue
        classes[region] = own
        instances[region] = rank + 1
        track_ids[region] = object_ids[rank] + 1
    for stuff in range(num_stuff):
        region = classes == stuff
        if 0 < region.sum() < stuff_area:
            classes[region] = VOID
    return PanopticMaps(classes.astype(np.uint8), instances, track_ids)


def segment_ids(
    maps: PanopticMaps, category_ids: list[int], num_stuff: int
) -> tuple[np.ndarray, dict[int, int]]:
    """The maps as Cityscapes-VPS segment ids: ``category * 1000 + track id`` for things,
    ``category * 1000`` for stuff, 0 for void. Track ids past 999 wrap to 1 (only tracks 999
    apart could then share an id within one frame).

    Args:
        category_ids: the category id of each semantic class (stuff first, then things).

    Returns:
        ``(int32 [H, W] segment ids, {segment id: category id})``.
    """
    lookup = np.zeros(256, np.int64)
    lookup[: len(category_ids)] = category_ids
    classes = maps.classes.astype(np.int64)
    things = (classes >= num_stuff) & (classes != VOID)
    tracks = (maps.track_ids.astype(np.int64) - 1) % 999 + 1
    ids = lookup[classes] * 1000 + np.where(things, tracks, 0)
    ids[classes == VOID] = 0
    ids = ids.astype(np.int32)
    return ids, {int(k): int(k) // 1000 for k in np.unique(ids) if k}


def frame_segments(
    maps: PanopticMaps, category_ids: list[int], num_stuff: int, size: tuple[int, int]
) -> tuple[np.ndarray, dict[int, dict]]:
    """The maps (network resolution) as segments of a frame of ``size`` (height, width).

    Args:
        maps: one frame's panoptic maps.
        category_ids: the category id of each semantic class (stuff first, then things).
        num_stuff: how many of them are stuff.
        size: the frame's (height, width); the segment map is resized to it (nearest).

    Returns:
        ``(int32 [H, W] segment ids (see :func:`segment_ids`), {segment id: {"class":
        category id, "is_thing", "track_id" (None for stuff), "area": pixels}})``, void (0)
        left out.
    """
    segment_map, categories = segment_ids(maps, category_ids, num_stuff)
    height, width = size
    if segment_map.shape != (height, width):
        segment_map = cv2.resize(segment_map, (width, height), interpolation=cv2.INTER_NEAREST)
    thing_ids = set(category_ids[num_stuff:])
    ids, areas = np.unique(segment_map, return_counts=True)
    segments = {}
    for sid, area in zip(ids.tolist(), areas.tolist(), strict=True):
        if sid == 0:
            continue
        is_thing = categories[sid] in thing_ids and sid % 1000 > 0
        track = sid % 1000 if is_thing else None
        segments[sid] = {"class": categories[sid], "is_thing": is_thing,
                         "track_id": track, "area": area}  # fmt: skip
    return segment_map, segments

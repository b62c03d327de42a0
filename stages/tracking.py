"""Track ids for per-frame detections: greedy IoU matching to the previous frame's tracks."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torchvision.ops import box_iou


@dataclass
class _Track:
    box: np.ndarray
    class_id: int
    missed: int = 0


@dataclass
class IoUTracker:
    """Keeps ids stable while objects move a little between frames.

    Each detection takes the id of the unmatched live track of the same class with the highest
    box IoU above ``iou_threshold`` (highest-scoring detections choose first); others start new
    tracks. A track not seen for ``max_missed`` frames ends. One tracker per source.

    Args:
        iou_threshold: least IoU to continue a track.
        max_missed: frames a track survives without a match.
    """

    iou_threshold: float = 0.3
    max_missed: int = 10
    _tracks: dict[int, _Track] = field(default_factory=dict)
    _next_id: int = 1

    def update(self, boxes: np.ndarray, class_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """Track ids for one frame's detections.

        Args:
            boxes: float [N, 4] xyxy.
            class_ids: int [N].
            scores: float [N] (higher chooses first).

        Returns:
            int64 [N] track ids.
        """
        ids = np.zeros(len(boxes), np.int64)
        live = list(self._tracks)
        taken: set[int] = set()
        if live and len(boxes):
            iou = box_iou(
                torch.as_tensor(boxes, dtype=torch.float32),
                torch.as_tensor(np.stack([self._tracks[t].box for t in live]), dtype=torch.float32),
            ).numpy()
            same = np.asarray(class_ids)[:, None] == np.array(
                [self._tracks[t].class_id for t in live]
            )
            iou = np.where(same, iou, 0.0)
            for n in np.argsort(-np.asarray(scores), kind="stable"):
                order = np.argsort(-iou[n], kind="stable")
                for m in order:
                    if iou[n, m] < self.iou_threshold:
                        break
                    if live[m] not in taken:
                        ids[n] = live[m]
                        taken.add(live[m])
                        break
        for n in range(len(boxes)):
            if ids[n] == 0:
                ids[n] = self._next_id
                self._next_id += 1
            self._tracks[int(ids[n])] = _Track(np.asarray(boxes[n], np.float32), int(class_ids[n]))
        for track_id in live:
            if track_id not in taken:
                self._tracks[track_id].missed += 1
                if self._tracks[track_id].missed > self.max_missed:
                    del self._tracks[track_id]
        return ids

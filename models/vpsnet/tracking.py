"""Instance ids across frames: VPSNet's (MaskTrack R-CNN's) matching against a memory of
every object seen so far in the video."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .boxes import box_iou


@dataclass
class TrackMemory:
    """Every object of one video: its last embedding and box, and its first label.

    Official rules (``PanopticFuseTrack.simple_test_bboxes``): nothing is evicted; a match
    overwrites the embedding and box but not the label; objects are 0-based in order of
    appearance. Keep one memory per video source; :meth:`reset` on a cut or a long gap.

    Attributes:
        embeddings: [M, D] track-head embeddings.
        boxes: [M, 4] xyxy inclusive, in input pixels.
        labels: [M] detector class (1-based).
    """

    embeddings: Tensor | None = None
    boxes: Tensor | None = None
    labels: Tensor | None = None

    def __len__(self) -> int:
        return 0 if self.labels is None else len(self.labels)

    def reset(self) -> None:
        """Forget every object: the next frame is a video's first."""
        self.embeddings = self.boxes = self.labels = None

    def _append(self, embedding: Tensor, box: Tensor, label: Tensor) -> int:
        if self.labels is None:
            self.embeddings, self.boxes, self.labels = embedding[None], box[None], label[None]
        else:
            self.embeddings = torch.cat([self.embeddings, embedding[None]])
            self.boxes = torch.cat([self.boxes, box[None]])
            self.labels = torch.cat([self.labels, label[None]])
        return len(self) - 1

    def match_scores(
        self,
        logits: Tensor,
        boxes: Tensor,
        scores: Tensor,
        labels: Tensor,
        weights: tuple[float, float, float] = (1.0, 2.0, 10.0),
    ) -> Tensor:
        """``log_softmax(logits) + w0 log(score) + w1 IoU + w2 [same label]`` [n, M + 1];
        column 0 ("new object") has IoU 0 and label term 1.

        Args:
            logits: [n, M + 1] from ``TrackHead.match_logits``.
            boxes: [n, 4] detections; scores [n]; labels [n] (1-based).
        """
        n = len(boxes)
        iou = torch.cat([boxes.new_zeros(n, 1), box_iou(boxes, self.boxes)], dim=1)
        same = torch.cat(
            [boxes.new_ones(n, 1), (labels[:, None] == self.labels[None]).to(boxes.dtype)], 1
        )
        w_score, w_iou, w_label = weights
        return (
            torch.log_softmax(logits, dim=1)
            + w_score * scores.log()[:, None]
            + w_iou * iou
            + w_label * same
        )

    def assign(
        self,
        embeddings: Tensor,
        boxes: Tensor,
        scores: Tensor,
        labels: Tensor,
        logits: Tensor | None = None,
        weights: tuple[float, float, float] = (1.0, 2.0, 10.0),
    ) -> Tensor:
        """Object ids (0-based) of this frame's detections, updating the memory.

        Args:
            embeddings: [n, D]; boxes [n, 4]; scores [n]; labels [n], in detection order
                (best first).
            logits: [n, M + 1] match logits against the memory (needed when it is not empty).

        Returns:
            int64 [n].
        """
        n = len(boxes)
        if not len(self):
            for k in range(n):
                self._append(embeddings[k], boxes[k], labels[k])
            return torch.arange(n)
        comp = self.match_scores(logits, boxes, scores, labels, weights)
        likelihood, matched = comp.max(dim=1)
        likelihoods, matches = likelihood.tolist(), matched.tolist()  # one copy off the device
        ids = torch.full((n,), -1, dtype=torch.long)
        best: dict[int, float] = {}
        holder: dict[int, int] = {}
        for k in range(n):
            if matches[k] == 0:
                ids[k] = self._append(embeddings[k], boxes[k], labels[k])
                continue
            obj = matches[k] - 1
            if likelihoods[k] > best.get(obj, -100.0):
                if obj in holder:
                    ids[holder[obj]] = -1
                ids[k], holder[obj], best[obj] = obj, k, likelihoods[k]
                self.embeddings[obj] = embeddings[k]
                self.boxes[obj] = boxes[k]
        for k in torch.nonzero(ids < 0).squeeze(1).tolist():
            ids[k] = self._append(embeddings[k], boxes[k], labels[k])
        return ids

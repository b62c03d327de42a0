"""VPSNet (mcahny/vps ``PanopticFuseTrack``): the network and its video inference."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .boxes import apply_deltas, grid_anchors, nms_inclusive, pool_rois
from .config import STRIDES, VPSNetConfig
from .fusion import BFPTcea
from .heads import FCNMaskHead, RPNHead, SharedFCBBoxHead, TrackHead
from .neck import FPN, build_backbone
from .panoptic import (
    Detections,
    PanopticMaps,
    panoptic_logits,
    remove_overlaps,
    select_detections,
    unify,
)
from .semantic import UPSNetFPN
from .tracking import TrackMemory


@dataclass
class VideoState:
    """What VPSNet keeps between frames of one video.

    Attributes:
        pyramid: the previous frame's un-fused P2..P6 (the fusion's reference; cached rather
            than recomputed, as the official code does, with identical results).
        memory: the tracked objects.
    """

    pyramid: list[Tensor] | None = None
    memory: TrackMemory = field(default_factory=TrackMemory)

    def reset(self) -> None:
        """The next frame starts a new video."""
        self.pyramid = None
        self.memory.reset()


@dataclass
class FrameOutput:
    """One frame's result, in the network input's pixels (unpadded).

    Attributes:
        maps: the panoptic maps (see :class:`PanopticMaps`).
        semantic: uint8 [H, W] argmax of the semantic head.
        detections: the kept instances, best first (boxes xyxy inclusive).
        object_ids: int64 [k], 0-based track id of each kept instance.
    """

    maps: PanopticMaps
    semantic: np.ndarray
    detections: Detections
    object_ids: Tensor


class VPSNet(nn.Module):
    """Backbone + FPN, temporal fusion, RPN, box / mask / track heads and the semantic head,
    registered (and so keyed) as the official model: ``backbone``, ``neck``, ``extra_neck``,
    ``panopticFPN``, ``rpn_head``, ``bbox_head``, ``track_head``, ``mask_head``.

    Args:
        config: the variant.
    """

    def __init__(self, config: VPSNetConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = build_backbone(config.backbone)
        self.neck = FPN(self.backbone.out_channels, config.channels)
        if config.fusion:
            self.extra_neck = BFPTcea(config.channels)
        self.panopticFPN = UPSNetFPN(
            config.channels, config.semantic_channels, config.num_classes, config.deformable
        )
        self.rpn_head = RPNHead(config.channels)
        self.bbox_head = SharedFCBBoxHead(config.channels, config.fc_dim, config.num_things + 1)
        if config.track:
            self.track_head = TrackHead(config.channels, config.fc_dim)
        self.mask_head = FCNMaskHead(config.channels, config.mask_channels, config.num_things + 1)

    def pyramid(self, images: Tensor) -> list[Tensor]:
        """The un-fused P2..P6 [N, C, H/s, W/s] of normalised, padded images [N, 3, H, W]."""
        return self.neck(self.backbone(images))

    def forward(
        self,
        images: Tensor,
        reference: list[Tensor] | None = None,
        flow: Tensor | None = None,
    ) -> dict[str, list[Tensor] | Tensor]:
        """Raw outputs (before proposals, detection and fusion into a panoptic map).

        Args:
            images: [N, 3, H, W] normalised and padded (``preprocess.to_input``).
            reference: the previous frame's :meth:`pyramid`; None on a video's first frame,
                which (as officially) is its own reference.
            flow: [N, 2, H, W] from each image to its reference (dx, dy in input pixels);
                None means zero (no motion, or the first frame).

        Returns:
            ``pyramid``: the un-fused P2..P6 (cache it as the next frame's reference);
            ``features``: P2..P6 after fusion (the pyramid itself without ``extra_neck``);
            ``rpn_logits`` / ``rpn_deltas``: per level [N, 3, h, w] / [N, 12, h, w];
            ``fcn_output`` [N, K, H, W] and ``fcn_score`` [N, K, H/4, W/4]: semantic logits.
        """
        pyramid = self.pyramid(images)
        features = pyramid
        if self.config.fusion:
            if flow is None:
                flow = images.new_zeros(len(images), 2, *images.shape[2:])
            small = F.interpolate(flow, scale_factor=0.25, mode="bilinear", align_corners=False)
            features = self.extra_neck(pyramid, pyramid if reference is None else reference,
                                       small * 0.25)  # fmt: skip
        rpn_logits, rpn_deltas = self.rpn_head(features)
        fcn_output, fcn_score = self.panopticFPN(features)
        return {
            "pyramid": pyramid,
            "features": features,
            "rpn_logits": rpn_logits,
            "rpn_deltas": rpn_deltas,
            "fcn_output": fcn_output,
            "fcn_score": fcn_score,
        }

    def proposals(
        self, logits: list[Tensor], deltas: list[Tensor], image_size: tuple[int, int]
    ) -> Tensor:
        """mmdet v1 RPN test for image 0: per level the best ``rpn_pre_nms`` anchors, decoded
        and clipped to ``image_size`` (unpadded), NMS, the first ``rpn_post_nms``; then the best
        ``rpn_max`` over all levels. Returns [P, 4] xyxy inclusive."""
        c = self.config
        out, scores = [], []
        for logit, delta, stride in zip(logits, deltas, STRIDES, strict=True):
            score = logit[0].permute(1, 2, 0).reshape(-1).sigmoid()
            delta = delta[0].permute(1, 2, 0).reshape(-1, 4)
            anchors = grid_anchors(stride, *logit.shape[2:], device=logit.device)
            if len(score) > c.rpn_pre_nms:
                score, top = score.topk(c.rpn_pre_nms)
                delta, anchors = delta[top], anchors[top]
            boxes = apply_deltas(anchors, delta, max_shape=image_size)
            keep = nms_inclusive(boxes, score, c.rpn_nms)[: c.rpn_post_nms]
            out.append(boxes[keep])
            scores.append(score[keep])
        boxes, score = torch.cat(out), torch.cat(scores)
        top = score.topk(min(c.rpn_max, len(score))).indices
        return boxes[top]

    @torch.inference_mode()
    def inference(
        self,
        image: Tensor,
        image_size: tuple[int, int],
        state: VideoState,
        flow: Tensor | None = None,
        raw: dict[str, list[Tensor] | Tensor] | None = None,
    ) -> FrameOutput:
        """The official test of one video frame, updating ``state``.

        Args:
            image: [1, 3, H, W] normalised and padded.
            image_size: (height, width) before padding.
            state: the video's state (reset it on a cut).
            flow: [1, 2, H, W] from this frame to the previous one, or None (zero).
            raw: this frame's ``forward`` outputs when another backend ran them
                (``export.raw_outputs``; fused with ``state.pyramid`` and ``flow``); None runs
                it here.

        Returns:
            :class:`FrameOutput`.
        """
        c = self.config
        if raw is None:
            raw = self(image, state.pyramid, flow if state.pyramid is not None else None)
        state.pyramid = raw["pyramid"]
        features = raw["features"][:4]
        padded = tuple(image.shape[2:])
        proposals = self.proposals(raw["rpn_logits"], raw["rpn_deltas"], image_size)
        logits, deltas = self.bbox_head(pool_rois(features, _rois(proposals), 7))
        found = select_detections(
            proposals, logits, deltas, padded, c.score_thresh, c.nms_thresh, c.max_detections
        )
        rois = _rois(found.boxes)
        if c.track:
            embeddings = self.track_head(pool_rois(features, rois, 7))
            memory = state.memory
            match = None
            if len(memory):
                match = self.track_head.match_logits(embeddings, memory.embeddings)
            ids = memory.assign(embeddings, found.boxes, found.scores, found.classes, match,
                                c.match_weights)  # fmt: skip
        else:
            ids = torch.arange(len(found))
        masks = self.mask_head(pool_rois(features, rois, 14))
        masks = masks[torch.arange(len(found), device=masks.device), found.classes]
        kept, energy = remove_overlaps(found, masks, padded, c.overlap_thresh)
        found, ids = found.take(kept), ids[kept]
        semantic = raw["fcn_output"][0]
        panoptic = panoptic_logits(semantic, found, energy, c.num_stuff).argmax(dim=0)
        height, width = image_size
        panoptic = panoptic[:height, :width].cpu().numpy()
        semantic_map = semantic.argmax(dim=0)[:height, :width].cpu().numpy()
        maps = unify(panoptic, semantic_map, found.classes.tolist(), ids.tolist(), c.num_stuff,
                     c.stuff_area)  # fmt: skip
        return FrameOutput(maps, semantic_map.astype(np.uint8), found, ids)


def _rois(boxes: Tensor) -> Tensor:
    """[R, 4] -> [R, 5] with batch index 0."""
    return torch.cat([boxes.new_zeros(len(boxes), 1), boxes], dim=1)

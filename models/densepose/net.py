"""DensePose R-CNN (GeneralizedRCNN + DensePoseROIHeads) with detectron2's parameter names."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from .backbone import build_backbone
from .config import (
    COARSE_CHANNELS,
    HEATMAP_SIZE,
    MAX_SIZE,
    MIN_SIZE,
    NUM_PATCHES,
    VARIANTS,
    DensePoseConfig,
)
from .heads import DensePoseROIHeads
from .preprocess import to_input
from .rpn import RPN, clip_boxes


@dataclass
class DensePoseInstances:
    """The detections of one image with their chart (IUV) predictions.

    Attributes:
        boxes: float32 [K, 4], xyxy, pixels of the image size asked for (see
            ``DensePoseRCNN.inference``), best score first.
        scores: float32 [K], person probability.
        coarse_segm: [K, 2, 112, 112] logits (background, person) over the box.
        fine_segm: [K, 25, 112, 112] logits over background + 24 parts.
        u: [K, 25, 112, 112] raw U regression per part (nominally 0..1).
        v: [K, 25, 112, 112] raw V regression per part.

    The four chart tensors cover each box's own area (resampled to 112x112 whatever the box
    size), so they do not change when the boxes are rescaled.
    """

    boxes: Tensor
    scores: Tensor
    coarse_segm: Tensor
    fine_segm: Tensor
    u: Tensor
    v: Tensor

    def __len__(self) -> int:
        return len(self.boxes)


class DensePoseRCNN(nn.Module):
    """DensePose R-CNN: FPN backbone, RPN, box head and the chart-based DensePose head.

    Submodules (and state_dict keys) are detectron2's: ``backbone`` (``fpn_*``,
    ``bottom_up.*``), ``proposal_generator.rpn_head.*``, ``roi_heads.*``. Model-zoo
    checkpoints load strictly with ``weights.load_weights``.

    Args:
        config: the variant and its test-time settings.
    """

    def __init__(self, config: DensePoseConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = build_backbone(config.backbone)
        self.proposal_generator = RPN()
        self.roi_heads = DensePoseROIHeads(
            config.densepose_head, config.head_dim, config.head_convs, config.box_head_dim
        )

    def forward(self, images: Tensor) -> dict[str, list[Tensor] | Tensor]:
        """Raw outputs on a normalised, padded batch (``preprocess.to_input``).

        Everything after this needs decoding and NMS (``inference``); the box and DensePose
        heads run on boxes, so their raw outputs come from ``roi_heads.box_outputs`` and
        ``roi_heads.densepose_outputs``.

        Args:
            images: float32 [N, 3, H, W], BGR minus the pixel mean, H and W multiples of 32.

        Returns:
            ``features``: P2..P6 [N, 256, H/s, W/s], s = 4..64;
            ``objectness_logits``: per level [N, 3, H/s, W/s];
            ``anchor_deltas``: per level [N, 12, H/s, W/s] (anchor-major: 3 x (dx, dy, dw, dh));
            ``decoded``: the DensePose decoder's map [N, 256, H/4, W/4].
        """
        features = self.backbone(images)
        logits, deltas = self.proposal_generator(features)
        return {
            "features": features,
            "objectness_logits": logits,
            "anchor_deltas": deltas,
            "decoded": self.roi_heads.decoder(features[:4]),
        }

    @torch.no_grad()
    def inference(
        self,
        images: Tensor,
        image_sizes: Sequence[tuple[int, int]] | None = None,
        output_sizes: Sequence[tuple[int, int]] | None = None,
        raw: dict[str, list[Tensor] | Tensor] | None = None,
    ) -> list[DensePoseInstances]:
        """Detections and their chart predictions, as detectron2's ``GeneralizedRCNN.inference``.

        Args:
            images: float32 [N, 3, H, W], normalised and padded (``preprocess.to_input``).
            image_sizes: per image (height, width) of the resized image inside the padding
                (default: the whole batch).
            output_sizes: per image (height, width) the boxes are scaled to, normally the
                original image's (default: ``image_sizes``, i.e. boxes in the network's
                input pixels). As detectron2's ``detector_postprocess``, boxes are then
                clipped to it and boxes left empty are dropped.
            raw: ``forward(images)`` when another backend ran it (``export.raw_outputs``);
                None runs it here.

        Returns:
            per image a ``DensePoseInstances`` with K <= ``config.detections_per_image``.
        """
        c = self.config
        if image_sizes is None:
            image_sizes = [tuple(images.shape[2:])] * len(images)
        output_sizes = list(output_sizes) if output_sizes is not None else list(image_sizes)
        raw = self(images) if raw is None else raw
        proposals = self.proposal_generator.proposals(
            raw["objectness_logits"],
            raw["anchor_deltas"],
            list(image_sizes),
            c.rpn_pre_nms_topk,
            c.rpn_post_nms_topk,
            c.rpn_nms_thresh,
        )
        logits, deltas = self.roi_heads.box_outputs(raw["features"], proposals)
        detections = self.roi_heads.detections(
            logits,
            deltas,
            proposals,
            list(image_sizes),
            c.score_thresh,
            c.nms_thresh,
            c.detections_per_image,
        )
        boxes = [box for box, _ in detections]
        if sum(len(b) for b in boxes):
            charts = self.roi_heads.densepose_outputs(raw["decoded"], boxes)
        else:  # nothing to pool: empty outputs of the documented shapes
            side, parts = HEATMAP_SIZE, NUM_PATCHES + 1
            empty = images.new_zeros(0, parts, side, side)
            charts = {
                "coarse_segm": images.new_zeros(0, COARSE_CHANNELS, side, side),
                "fine_segm": empty,
                "u": empty,
                "v": empty,
            }
        counts = [len(b) for b in boxes]
        split = {k: v.split(counts) for k, v in charts.items()}
        out = []
        for i, ((box, score), (in_h, in_w), (out_h, out_w)) in enumerate(
            zip(detections, image_sizes, output_sizes, strict=True)
        ):
            # DensePose ran on the boxes in input pixels; only the boxes are rescaled.
            scale = box.new_tensor([out_w / in_w, out_h / in_h, out_w / in_w, out_h / in_h])
            box = clip_boxes(box * scale, out_h, out_w)
            keep = (box[:, 2] > box[:, 0]) & (box[:, 3] > box[:, 1])
            out.append(
                DensePoseInstances(
                    box[keep],
                    score[keep],
                    *(split[k][i][keep] for k in ("coarse_segm", "fine_segm", "u", "v")),
                )
            )
        return out

    def predict(
        self,
        images: Sequence[np.ndarray | Tensor] | np.ndarray | Tensor,
        min_size: int = MIN_SIZE,
        max_size: int = MAX_SIZE,
    ) -> list[DensePoseInstances]:
        """``to_input`` then ``inference``, boxes in the given images' pixels.

        Args:
            images: uint8 [H, W, 3] BGR, one or a list.
            min_size: shortest edge the network sees (800 as detectron2; smaller is faster).
            max_size: cap on the longest edge.
        """
        device = next(self.parameters()).device
        batch, sizes, originals = to_input(images, min_size, max_size, device)
        return self.inference(batch, sizes, originals)


def build_model(variant: str = "densepose_rcnn_R_50_FPN_s1x") -> DensePoseRCNN:
    """A DensePose R-CNN with random weights, in eval mode (FrozenBN everywhere but the
    MobileNetV2 variant's BatchNorm).

    Args:
        variant: an official config name or "densepose_rcnn_mobilenetv2_FPN" (``VARIANTS``).
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown DensePose variant {variant!r}; one of {sorted(VARIANTS)}")
    return DensePoseRCNN(VARIANTS[variant]).eval()

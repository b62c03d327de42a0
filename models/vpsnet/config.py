"""VPSNet variants: the official Cityscapes-VPS configurations and our light synthetic one."""

from __future__ import annotations

import math
from dataclasses import dataclass

RGB_MEAN = (123.675, 116.28, 103.53)
"""Subtracted from RGB 0..255 pixels (mmdet ``img_norm_cfg``, ``to_rgb=True``)."""

RGB_STD = (58.395, 57.12, 57.375)
"""Then divided by this."""

SIZE_DIVISOR = 32
"""The normalised image is zero-padded (bottom / right) to a multiple of this."""

STRIDES = (4, 8, 16, 32, 64)
"""P2..P6; the RPN anchors' base sizes equal them (``anchor_strides``)."""

ANCHOR_SCALE = 8
ANCHOR_RATIOS = (0.5, 1.0, 2.0)

MAX_DELTA_RATIO = abs(math.log(16 / 1000))
"""Largest |log| size change a box delta may ask for (mmdet ``wh_ratio_clip``)."""

BOX_STDS = (0.1, 0.1, 0.2, 0.2)
"""R-CNN delta normalisation (``target_stds``; UPSNet's (10, 10, 5, 5) weights)."""

FINEST_SCALE = 56
"""RoIs of about this side map to P2, twice that to P3, ... (``SingleRoIExtractor``)."""


@dataclass(frozen=True)
class VPSNetConfig:
    """One VPSNet variant and its test-time settings.

    Semantic channels run stuff first, then things (Cityscapes trainIds: 11 stuff, 8 things);
    detector class ``c`` (1-based, 0 = background) is semantic channel ``num_stuff + c - 1``.

    Attributes:
        name: configuration name ("fusetrack", "fuse" follow mcahny/vps configs/cityscapes).
        backbone: "resnet50" (torchvision / mmdet pytorch-style keys) or "mobilenetv2".
        num_things: detector classes without background.
        num_stuff: stuff classes of the semantic head.
        channels: FPN width (every head's input).
        semantic_channels: the widths of the semantic subnet's three deformable convs.
        fc_dim: width of the box head's and track head's fully connected layers.
        mask_channels: width of the mask head's convs.
        deformable: the semantic head's convs are deformable (official) or plain.
        fusion: has ``extra_neck`` (flow-guided temporal fusion with the previous frame).
        track: has ``track_head`` (instance ids across frames).
        rpn_pre_nms: proposals kept per level before NMS (``nms_pre``).
        rpn_post_nms: kept per level after NMS (``nms_post``).
        rpn_max: kept per image (``max_num``).
        rpn_nms: proposal NMS IoU.
        score_thresh: detections score above this (``MaskROI``: 0.6).
        nms_thresh: class-agnostic detection NMS IoU.
        max_detections: detections kept per image.
        overlap_thresh: an instance whose mask overlaps kept ones of its class by more than
            this fraction is dropped (``MaskRemoval``).
        stuff_area: stuff segments smaller than this many pixels become void.
        match_weights: track matching weights of detection score, IoU and same label.
    """

    name: str
    backbone: str = "resnet50"
    num_things: int = 8
    num_stuff: int = 11
    channels: int = 256
    semantic_channels: tuple[int, int, int] = (256, 128, 128)
    fc_dim: int = 1024
    mask_channels: int = 256
    deformable: bool = True
    fusion: bool = True
    track: bool = True
    rpn_pre_nms: int = 1000
    rpn_post_nms: int = 1000
    rpn_max: int = 1000
    rpn_nms: float = 0.7
    score_thresh: float = 0.6
    nms_thresh: float = 0.5
    max_detections: int = 100
    overlap_thresh: float = 0.3
    stuff_area: int = 2048
    match_weights: tuple[float, float, float] = (1.0, 2.0, 10.0)

    @property
    def num_classes(self) -> int:
        """Semantic classes (stuff + things)."""
        return self.num_stuff + self.num_things


VARIANTS: dict[str, VPSNetConfig] = {
    c.name: c
    for c in (
        VPSNetConfig("fusetrack"),
        VPSNetConfig("fuse", track=False),
        # Not official: the light variant our demo weights are trained for (synthetic world:
        # 7 things, 4 stuff). ImageNet MobileNetV2 under a 128-wide FPN; every head scaled
        # down so the compact checkpoint stays far under 20 MB. Same modules and names, but
        # plain convs in the semantic head (no ``conv_offset``): deformable convs do not
        # train in reasonable time on a CPU.
        VPSNetConfig(
            "fusetrack_mobilenetv2",
            backbone="mobilenetv2",
            num_things=7,
            num_stuff=4,
            channels=128,
            semantic_channels=(128, 64, 64),
            fc_dim=256,
            mask_channels=128,
            deformable=False,
            rpn_pre_nms=500,
            rpn_post_nms=300,
            rpn_max=300,
            score_thresh=0.5,
            stuff_area=256,
        ),
    )
}

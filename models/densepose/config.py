"""DensePose R-CNN variants and the detectron2 defaults they share (Base-DensePose-RCNN-FPN)."""

from __future__ import annotations

import math
from dataclasses import dataclass

PIXEL_MEAN_BGR = (103.530, 116.280, 123.675)
"""Subtracted from BGR 0..255 pixels; the std is 1 (MSRA ResNet weights, no scaling)."""

MIN_SIZE = 800
"""Test-time shortest edge (``INPUT.MIN_SIZE_TEST``)."""

MAX_SIZE = 1333
"""Test-time cap on the longest edge (``INPUT.MAX_SIZE_TEST``)."""

SIZE_DIVISIBILITY = 32
"""The batch is zero-padded (after normalisation) to a multiple of this, the FPN's top stride."""

NUM_PATCHES = 24
"""Body parts of the chart model; the fine segmentation and U / V have 24 + 1 (background)."""

COARSE_CHANNELS = 2
"""Coarse segmentation: background / person."""

HEATMAP_SIZE = 112
"""Side of the per-box predictor outputs: 28 pooled -> 56 deconv -> 112 bilinear."""

ANCHOR_SIZES = (32, 64, 128, 256, 512)
"""One anchor size per level p2..p6 (strides 4..64), three aspect ratios each."""

ANCHOR_RATIOS = (0.5, 1.0, 2.0)

SCALE_CLAMP = math.log(1000.0 / 16)
"""Largest log-size change a box delta may ask for (detectron2's ``_DEFAULT_SCALE_CLAMP``)."""


@dataclass(frozen=True)
class DensePoseConfig:
    """One DensePose R-CNN variant plus its test-time settings.

    Test-time settings are the detectron2 defaults; change them with ``dataclasses.replace``
    (e.g. ``score_thresh=0.8`` as apply_net's ``show`` does) and build ``DensePoseRCNN(config)``.

    Attributes:
        name: official config name (e.g. "densepose_rcnn_R_50_FPN_DL_s1x").
        backbone: "resnet50", "resnet101" or "mobilenetv2" (torchvision layout, not official).
        densepose_head: "v1convx" (DensePoseV1ConvXHead) or "deeplab" (DensePoseDeepLabHead).
        head_dim: channels of the DensePose head's stacked convs (CONV_HEAD_DIM).
        head_convs: number of stacked convs (NUM_STACKED_CONVS).
        box_head_dim: width of the box head's two fully connected layers (FC_DIM).
        rpn_pre_nms_topk: proposals kept per FPN level before NMS.
        rpn_post_nms_topk: proposals kept per image after NMS.
        rpn_nms_thresh: IoU threshold of the proposal NMS.
        score_thresh: detections scoring at most this are dropped.
        nms_thresh: IoU threshold of the detection NMS.
        detections_per_image: detections kept per image, best first.
    """

    name: str
    backbone: str
    densepose_head: str
    head_dim: int = 512
    head_convs: int = 8
    box_head_dim: int = 1024
    rpn_pre_nms_topk: int = 1000
    rpn_post_nms_topk: int = 1000
    rpn_nms_thresh: float = 0.7
    score_thresh: float = 0.05
    nms_thresh: float = 0.5
    detections_per_image: int = 100


VARIANTS: dict[str, DensePoseConfig] = {
    c.name: c
    for c in (
        DensePoseConfig("densepose_rcnn_R_50_FPN_s1x", "resnet50", "v1convx"),
        DensePoseConfig("densepose_rcnn_R_50_FPN_DL_s1x", "resnet50", "deeplab"),
        DensePoseConfig("densepose_rcnn_R_101_FPN_DL_s1x", "resnet101", "deeplab"),
        # Not official: the light variant our demo weights are trained for. ImageNet MobileNetV2
        # features (torchvision keys) under the same FPN / RPN; a box head of 2 x 256 instead of
        # 2 x 1024 (its first fc is 12.8M of the R-50's weights) and the DeepLab DensePose head
        # with 4 x 128 convs instead of 8 x 512, so the compact checkpoint stays under 20 MB.
        # DeepLab, not V1ConvX: its ASPP image-pooling branch sees the whole box, and telling a
        # person seen from the back (other part ids, left and right swapped) needs the head.
        DensePoseConfig(
            "densepose_rcnn_mobilenetv2_FPN",
            "mobilenetv2",
            "deeplab",
            head_dim=128,
            head_convs=4,
            box_head_dim=256,
        ),
    )
}

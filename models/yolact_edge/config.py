"""YolactEdge variants: backbone, classes and whether the video (flow) modules exist."""

from __future__ import annotations

from dataclasses import dataclass

MAX_SIZE = 550
"""Input side: images are resized to 550x550 (aspect ratio ignored), as official."""

MEAN_BGR = (103.94, 116.78, 123.68)
STD_BGR = (57.38, 57.12, 58.40)

COCO_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich",
    "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote",
    "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book",
    "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip

YOUTUBE_VIS_CLASSES = (
    "person", "giant_panda", "lizard", "parrot", "skateboard", "sedan", "ape", "dog", "snake",
    "monkey", "hand", "rabbit", "duck", "cat", "cow", "fish", "train", "horse", "turtle", "bear",
    "motorbike", "giraffe", "leopard", "fox", "deer", "owl", "surfboard", "airplane", "truck",
    "zebra", "tiger", "elephant", "snowboard", "boat", "shark", "mouse", "frog", "eagle",
    "earless_seal", "tennis_racket",
)  # fmt: skip


@dataclass(frozen=True)
class YolactEdgeConfig:
    """One YolactEdge variant.

    Attributes:
        name: official config name (e.g. "yolact_edge_vid_resnet50").
        backbone: "resnet101", "resnet50" or "mobilenetv2".
        class_names: foreground classes; the network predicts ``len + 1`` (background first).
        video: builds the flow network, its pre-convs and SPA (temporal feature reuse).
    """

    name: str
    backbone: str
    class_names: tuple[str, ...]
    video: bool

    @property
    def num_classes(self) -> int:
        """Classes including background (the conf layer's width per anchor)."""
        return len(self.class_names) + 1


VARIANTS: dict[str, YolactEdgeConfig] = {
    c.name: c
    for c in (
        YolactEdgeConfig("yolact_edge", "resnet101", COCO_CLASSES, False),
        YolactEdgeConfig("yolact_edge_resnet50", "resnet50", COCO_CLASSES, False),
        YolactEdgeConfig("yolact_edge_mobilenetv2", "mobilenetv2", COCO_CLASSES, False),
        YolactEdgeConfig("yolact_edge_vid", "resnet101", YOUTUBE_VIS_CLASSES, True),
        YolactEdgeConfig("yolact_edge_vid_resnet50", "resnet50", YOUTUBE_VIS_CLASSES, True),
        # Not official: MobileNetV2 with the video modules (the official one has no partial
        # backbone, so no video mode).
        YolactEdgeConfig("yolact_edge_vid_mobilenetv2", "mobilenetv2", YOUTUBE_VIS_CLASSES, True),
    )
}

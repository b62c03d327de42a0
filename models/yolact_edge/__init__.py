"""YolactEdge: real-time instance segmentation with temporal feature reuse on video.

Pure PyTorch (runs on CPU and GPU), the official parameter names (released checkpoints load
with ``strict=True``; see ``weights``), the official priors, decoding and Fast NMS vectorised on
the model's device, and keyframe / non-keyframe inference (``YolactEdge.keyframe`` /
``YolactEdge.non_keyframe``). Facts: ../shared/reference/models-video.md part A.
"""

from .bundle import load
from .config import MAX_SIZE, VARIANTS, YolactEdgeConfig
from .net import KeyframeState, YolactEdge, build_model
from .postprocess import (
    FrameInstances,
    Instances,
    boxes_in_pixels,
    decode,
    detect,
    fast_nms,
    frame_instances,
    masks,
)
from .preprocess import to_input
from .priors import level_sizes, priors
from .weights import load_weights, remap, weights_meta

__all__ = [
    "MAX_SIZE",
    "VARIANTS",
    "FrameInstances",
    "Instances",
    "KeyframeState",
    "YolactEdge",
    "YolactEdgeConfig",
    "boxes_in_pixels",
    "build_model",
    "decode",
    "detect",
    "fast_nms",
    "frame_instances",
    "level_sizes",
    "load",
    "load_weights",
    "masks",
    "priors",
    "remap",
    "to_input",
    "weights_meta",
]

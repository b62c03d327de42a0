"""VPSNet: video panoptic segmentation with flow-guided feature fusion and tracking
(mcahny/vps), in pure PyTorch on torchvision ops.

    model = build_model("fusetrack")          # official Cityscapes-VPS layout
    load_weights(model, "cityscapes_vps_fusetrack_latest.pth")
    state = VideoState()
    for frame in frames:                       # BGR uint8
        image, size = to_input(frame)
        out = model.eval().inference(image, size, state, flow)

``export`` makes the whole-image part two graphs (first frame, later frames) for the backends.
"""

from __future__ import annotations

from .bundle import load
from .config import VARIANTS, VPSNetConfig
from .export import FirstFrameGraph, NextFrameGraph, graph_specs, raw_outputs
from .flownet2 import FlowNet2, flownet2_flow
from .net import FrameOutput, VideoState, VPSNet
from .panoptic import VOID, Detections, PanopticMaps, frame_segments, segment_ids
from .preprocess import TEST_SCALE, denormalise, normalise, resize_frame, to_input
from .tracking import TrackMemory
from .weights import load_flownet2, load_weights


def build_model(variant: str = "fusetrack") -> VPSNet:
    """The network of an official configuration ("fusetrack", "fuse") or of our light
    "fusetrack_mobilenetv2", with the official parameter names.

    Raises:
        ValueError: unknown variant.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown VPSNet variant {variant!r}; one of {sorted(VARIANTS)}")
    return VPSNet(VARIANTS[variant])


__all__ = [
    "TEST_SCALE",
    "VARIANTS",
    "VOID",
    "Detections",
    "FirstFrameGraph",
    "FlowNet2",
    "FrameOutput",
    "NextFrameGraph",
    "PanopticMaps",
    "TrackMemory",
    "VPSNet",
    "VPSNetConfig",
    "VideoState",
    "build_model",
    "denormalise",
    "flownet2_flow",
    "frame_segments",
    "graph_specs",
    "load",
    "load_flownet2",
    "load_weights",
    "normalise",
    "raw_outputs",
    "resize_frame",
    "segment_ids",
    "to_input",
]

"""VPSNet's whole-image part as two exportable graphs: a video's first frame, and the rest.

Backbone, FPN, the temporal fusion, the RPN head and the semantic head run on the whole image
and are tensor-in, tensors-out graphs, so any backend can run them: exported at one input
size (see :func:`graph_specs`) with a dynamic batch axis, so one call can take the frames of
several videos (nothing in the graphs mixes the samples of a batch). The state crossing
frames (the previous frame's un-fused pyramid) crosses the graph boundary: the first-frame
graph fuses a frame with itself (as the official test does), the next-frame graph takes the
previous pyramid and the flow to it, each sample of a batch its own. What depends on detections
(proposals, RoI heads, tracking, panoptic fusion) stays in PyTorch:
``VPSNet.inference(..., raw=raw_outputs(outputs))`` continues from the maps.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from models.backends.base import GraphSpec

from .net import VPSNet

LEVELS = ("p2", "p3", "p4", "p5", "p6")
REFERENCE = tuple(f"reference_{level}" for level in LEVELS)
OUTPUTS = (
    *(f"pyramid_{level}" for level in LEVELS),
    *(f"features_{level}" for level in LEVELS),
    *(f"rpn_logits_{level}" for level in LEVELS),
    *(f"rpn_deltas_{level}" for level in LEVELS),
    "fcn_output",
    "fcn_score",
)


def _flat(raw: dict[str, list[Tensor] | Tensor]) -> tuple[Tensor, ...]:
    return (*raw["pyramid"], *raw["features"], *raw["rpn_logits"], *raw["rpn_deltas"],
            raw["fcn_output"], raw["fcn_score"])  # fmt: skip


class FirstFrameGraph(nn.Module):
    """``images -> OUTPUTS``: a video's first frame, its own reference, zero flow.

    Args:
        model: the model (shared, not copied).
    """

    def __init__(self, model: VPSNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        """images: [N, 3, H, W] from ``normalise`` -> the 22 maps of :data:`OUTPUTS`."""
        # The zero flow the model would make itself, but shaped from ``images`` rather than
        # from ``len(images)``, which an export would fix at the example's batch of 1.
        return _flat(self.model(images, None, torch.zeros_like(images[:, :2])))


class NextFrameGraph(nn.Module):
    """``images, reference_p2..p6, flow -> OUTPUTS``: a later frame, fused with the previous
    frame's pyramid (the first graph's ``pyramid_*`` outputs) warped by ``flow``.

    Args:
        model: the model (shared, not copied).
    """

    def __init__(self, model: VPSNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor, *reference_and_flow: Tensor) -> tuple[Tensor, ...]:
        """images [N, 3, H, W], the previous pyramid P2..P6 [N, C, H/s, W/s] and flow
        [N, 2, H, W] (this frame to the previous, input pixels) -> :data:`OUTPUTS`."""
        *reference, flow = reference_and_flow
        return _flat(self.model(images, list(reference), flow))


def raw_outputs(outputs: tuple[Tensor, ...]) -> dict[str, list[Tensor] | Tensor]:
    """A graph's outputs back in the dict ``VPSNet.forward`` returns."""
    if len(outputs) != len(OUTPUTS):
        raise ValueError(f"expected {len(OUTPUTS)} VPSNet graph outputs, got {len(outputs)}")
    n = len(LEVELS)
    return {
        "pyramid": list(outputs[:n]),
        "features": list(outputs[n : 2 * n]),
        "rpn_logits": list(outputs[2 * n : 3 * n]),
        "rpn_deltas": list(outputs[3 * n : 4 * n]),
        "fcn_output": outputs[4 * n],
        "fcn_score": outputs[4 * n + 1],
    }


MAX_BATCH = 8
"""The largest batch a TensorRT engine of these graphs accepts (unless the stage's ``batch``
is larger: ``models.backends.select.at_batch``)."""


def graph_specs(channels: int, height: int, width: int) -> tuple[GraphSpec, GraphSpec]:
    """The first-frame and next-frame graphs' interfaces at one padded input size, any batch
    (1 to :data:`MAX_BATCH` for engines; each frame of a next-frame batch brings its own
    video's reference pyramid and flow).

    Height and width are fixed: the fusion's balanced feature pyramid pools P2 to P4's size
    with an adaptive pooling ONNX cannot express for sizes unknown at export. A video's
    frames all have one size, so a backend per input size (made at its first frame) serves a
    stream. The batch axis is dynamic on every input and output.

    Args:
        channels: the pyramid's width (``config.channels``).
        height: the input height (a multiple of 32, as ``normalise`` pads).
        width: the input width (a multiple of 32).
    """
    # P6 is P5 max-pooled with stride 2: ceil(H / 64)
    levels = [(1, channels, -(-height // s), -(-width // s)) for s in (4, 8, 16, 32, 64)]
    first = GraphSpec.any_batch(("images",), OUTPUTS, ((1, 3, height, width),), MAX_BATCH)
    following = GraphSpec.any_batch(
        ("images", *REFERENCE, "flow"), OUTPUTS,
        ((1, 3, height, width), *levels, (1, 2, height, width)), MAX_BATCH,
    )  # fmt: skip
    return first, following

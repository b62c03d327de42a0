"""YolactEdge as two exportable graphs: keyframe and non-keyframe.

A stateful video model cannot be one ONNX graph; its state crosses the graph boundary instead.
The keyframe graph returns the head outputs plus the state (phase-1 P4', P5' and the flow
network's features of the C3 lateral; P3' is never warped, so it is not carried); the
non-keyframe graph takes a frame and that state. Both wrap the same :class:`YolactEdge`, so
torch and every backend share weights.
"""

from __future__ import annotations

from torch import Tensor, nn

from models.backends.base import GraphSpec

from .config import MAX_SIZE
from .net import KeyframeState, YolactEdge
from .priors import level_sizes

HEAD_OUTPUTS = ("loc", "conf", "coeffs", "proto")
STATE = ("key_p4", "key_p5", "key_flow")


class KeyframeGraph(nn.Module):
    """``x -> loc, conf, coeffs, proto, key_p4, key_p5, key_flow``."""

    def __init__(self, model: YolactEdge) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        outputs, state = self.model.keyframe(x)
        if state.flow_features is None:  # an image variant: nothing to carry
            return outputs
        return (*outputs, state.features[1], state.features[2], state.flow_features)


class NonKeyframeGraph(nn.Module):
    """``x, key_p4, key_p5, key_flow -> loc, conf, coeffs, proto, motion``.

    ``motion`` [N] is the mean flow magnitude at stride 16, in pixels of the 550 input: the
    adaptive keyframe policy reads it.
    """

    def __init__(self, model: YolactEdge) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, x: Tensor, key_p4: Tensor, key_p5: Tensor, key_flow: Tensor
    ) -> tuple[Tensor, ...]:
        # A non-keyframe reads P4', P5' and the flow features only (P3' and the lateral are
        # rebuilt from the current frame), so the first entries are placeholders.
        state = KeyframeState([key_p4, key_p4, key_p5], key_flow, flow_features=key_flow)
        outputs, flow = self.model.non_keyframe(x, state, return_flow=True)
        # Flow is in normalised units x 8 (see heads.warp): pixels = flow / 8 * (size - 1) / 2
        # on the stride-16 grid, x 16 for input pixels.
        h, w = flow.shape[-2:]
        dx = flow[:, 0] / 8 * (w - 1) / 2 * 16
        dy = flow[:, 1] / 8 * (h - 1) / 2 * 16
        return (*outputs, (dx * dx + dy * dy).sqrt().mean(dim=(1, 2)))


MAX_BATCH = 8
"""The largest batch a TensorRT engine of these graphs accepts."""


def graph_specs(size: int = MAX_SIZE, video: bool = True) -> tuple[GraphSpec, GraphSpec]:
    """The two graphs' interfaces at a ``size`` x ``size`` input: fixed sizes, any batch
    (1 to :data:`MAX_BATCH` for engines; each frame of a non-keyframe batch brings its own
    source's state).

    For an image variant (``video=False``) the keyframe graph returns the head outputs only.
    """
    p3, p4, p5 = level_sizes(size, size)[:3]
    key_outputs = (*HEAD_OUTPUTS, *STATE) if video else HEAD_OUTPUTS
    key = GraphSpec.any_batch(("x",), key_outputs, ((1, 3, size, size),), MAX_BATCH)
    non_key_example = ((1, 3, size, size), (1, 256, *p4), (1, 256, *p5), (1, 64, *p3))
    non_key = GraphSpec.any_batch(("x", *STATE), (*HEAD_OUTPUTS, "motion"), non_key_example,
                                  MAX_BATCH)  # fmt: skip
    return key, non_key

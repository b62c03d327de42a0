"""DensePose R-CNN's dense part as one exportable graph: image in, pyramid and RPN maps out.

Everything that runs on the whole image (backbone, FPN, RPN head, the DensePose decoder) is one
tensor-in, tensors-out graph with dynamic height and width, so any backend can run it. What
depends on the detections (proposals, NMS, the box and DensePose heads on RoIs) stays in
PyTorch: ``DensePoseRCNN.inference(..., raw=raw_outputs(outputs))`` continues from it.
"""

from __future__ import annotations

from torch import Tensor, nn

from models.backends.base import GraphSpec

from .net import DensePoseRCNN

LEVELS = ("p2", "p3", "p4", "p5", "p6")
OUTPUTS = (
    *LEVELS,
    *(f"objectness_{level}" for level in LEVELS),
    *(f"deltas_{level}" for level in LEVELS),
    "decoded",
)


class DenseGraph(nn.Module):
    """``images -> p2..p6, objectness_p2..p6, deltas_p2..p6, decoded`` of a DensePose R-CNN.

    Args:
        model: the model (shared, not copied).
    """

    def __init__(self, model: DensePoseRCNN) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        """images: float32 [N, 3, H, W] from ``to_input`` -> the 16 maps of :data:`OUTPUTS`
        (shapes as ``DensePoseRCNN.forward`` documents)."""
        raw = self.model(images)
        return (*raw["features"], *raw["objectness_logits"], *raw["anchor_deltas"],
                raw["decoded"])  # fmt: skip


def raw_outputs(outputs: tuple[Tensor, ...]) -> dict[str, list[Tensor] | Tensor]:
    """The graph's outputs back in the dict ``DensePoseRCNN.forward`` returns."""
    if len(outputs) != len(OUTPUTS):
        raise ValueError(f"expected {len(OUTPUTS)} DensePose graph outputs, got {len(outputs)}")
    n = len(LEVELS)
    return {
        "features": list(outputs[:n]),
        "objectness_logits": list(outputs[n : 2 * n]),
        "anchor_deltas": list(outputs[2 * n : 3 * n]),
        "decoded": outputs[3 * n],
    }


def graph_spec(height: int = 320, width: int = 448) -> GraphSpec:
    """The dense graph's interface: ``images`` float32 [N, 3, H, W], H and W multiples of 32
    (``to_input`` pads to them); batch, height and width are dynamic (engines accept 1..4 x 3
    x 64..1344 x 64..1344).

    Args:
        height: example input height (TensorRT's optimum).
        width: example input width.
    """
    spatial = {0: "batch", 2: "height", 3: "width"}
    return GraphSpec(
        inputs=("images",),
        outputs=OUTPUTS,
        example=((1, 3, height, width),),
        dynamic={name: spatial for name in ("images", *OUTPUTS)},
        min_shapes=((1, 3, 64, 64),),
        max_shapes=((4, 3, 1344, 1344),),
    )

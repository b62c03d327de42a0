"""A translator as one exportable graph: padded RGB 0..1 in, RGB 0..1 out, any size.

Padding to the network's size multiple and cropping back stay outside the graph (the
``Translator`` does them around whatever backend runs the graph), so one export with dynamic
height and width serves every frame size.
"""

from __future__ import annotations

from torch import Tensor, nn

from models.backends.base import GraphSpec

from .translator import Translator


class TranslatorGraph(nn.Module):
    """``rgb -> translated``: :meth:`Translator.core` of a translator, style included.

    A multistyle translator's style weights are a persistent buffer here, so they are part of
    the state the export cache hashes: two styles are two exports, never one served for both.

    Args:
        translator: the translator (shared, not copied).
    """

    def __init__(self, translator: Translator) -> None:
        super().__init__()
        self.translator = translator
        if translator.style is not None:
            self.register_buffer("style", translator.style.clone())

    def forward(self, rgb: Tensor) -> Tensor:
        """rgb: float [N, 3, H, W] in 0..1, H and W multiples of the translator's ``multiple``
        -> float [N, 3, H, W] in 0..1."""
        return self.translator.core(rgb)


def graph_spec(height: int = 360, width: int = 640, dynamic: bool = True) -> GraphSpec:
    """The translation graph: ``rgb`` float [N, 3, H, W] in 0..1 -> ``translated`` the same.

    Args:
        height: example input height (a multiple of the network's; TensorRT's optimum).
        width: example input width.
        dynamic: batch, height and width may vary (engines accept 1..4 x 3 x 16..1088 x
            16..1920).
    """
    axes: dict[str, dict[int, str]] = {}
    if dynamic:
        axes = {name: {0: "batch", 2: "height", 3: "width"} for name in ("rgb", "translated")}
    return GraphSpec(
        inputs=("rgb",),
        outputs=("translated",),
        example=((1, 3, height, width),),
        dynamic=axes,
        min_shapes=((1, 3, 16, 16),) if dynamic else None,
        max_shapes=((4, 3, 1088, 1920),) if dynamic else None,
    )

"""DensePose R-CNN (chart-based IUV): detectron2's DensePose in pure PyTorch.

Runs on CPU and GPU, with detectron2's parameter names so the model-zoo ``model_final_*.pkl``
files load with strict matching (``weights``); the RPN, box head and DensePose head follow
detectron2's test-time computation (anchors, decoding, level assignment, NMS); ``export``
makes the whole-image part one graph for the backends. Facts:
../shared/reference/models-per-frame.md part 2.
"""

from .bundle import load
from .config import MAX_SIZE, MIN_SIZE, PIXEL_MEAN_BGR, VARIANTS, DensePoseConfig
from .export import DenseGraph, graph_spec, raw_outputs
from .net import DensePoseInstances, DensePoseRCNN, build_model
from .postprocess import box_size, chart_arrays, chart_result, chart_results, quantize
from .preprocess import resized_size, to_input
from .rpn import apply_deltas, cell_anchors, grid_anchors
from .weights import load_weights, read_model_zoo_pkl

__all__ = [
    "MAX_SIZE",
    "MIN_SIZE",
    "PIXEL_MEAN_BGR",
    "VARIANTS",
    "DenseGraph",
    "DensePoseConfig",
    "DensePoseInstances",
    "DensePoseRCNN",
    "apply_deltas",
    "box_size",
    "build_model",
    "cell_anchors",
    "chart_arrays",
    "chart_result",
    "chart_results",
    "graph_spec",
    "grid_anchors",
    "load",
    "load_weights",
    "quantize",
    "raw_outputs",
    "read_model_zoo_pkl",
    "resized_size",
    "to_input",
]

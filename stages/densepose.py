"""DensePose on video: every person's body part index I and chart coordinates U, V.

The ``densepose`` stage runs a DensePose R-CNN (``models.densepose``: detectron2's model-zoo
checkpoints, or our demo weights) and turns its chart outputs into per-box I, U, V as
detectron2 does; the ``draw`` stage pastes them into a full-frame IUV image and renders parts,
U, V or contours. To save compute on video it can run every N frames: on the frames between,
each person's last result is carried along the optical flow of its box (OpenCV DIS, median
motion inside the box), so the overlay follows people without running the network.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch

from models import densepose
from models.backends import Calibration
from models.flow import backward_flow
from pipeline.config import register
from pipeline.errors import ConfigError
from pipeline.frame import Frame
from pipeline.results import DensePoseResult
from stages.model_stage import ModelStage, model_error
from stages.model_weights import sidecar_variant

log = logging.getLogger("framegraph")


@dataclass
class _Carried:
    """A source's last network result and the frame it was made on (for the flow)."""

    result: DensePoseResult
    image: np.ndarray
    index: int


@register("densepose")
class DensePoseDetector(ModelStage):
    """People with DensePose charts, as a DensePoseResult (best first).

    Args:
        variant: a ``models.densepose.VARIANTS`` name (default: the checkpoint's sidecar,
            else densepose_rcnn_R_50_FPN_s1x).
        weights: a checkpoint: detectron2 model-zoo ``model_final_*.pkl``, a state_dict, our
            demo weights; or ``random`` (timing and tests only).
        size: shortest edge the network sees (detectron2: 800; smaller is faster; default:
            the checkpoint's sidecar, else 800).
        max_size: cap on the longest edge.
        min_score: keep people scoring at least this (apply_net ``show`` uses 0.8).
        every: run the network every this many frames; results are carried by optical flow
            in between (1 = every frame).
        **options: the run options (``models.backends.RunOptions``) of the whole-image part
            (backbone, FPN, RPN head, DensePose decoder; the onnxruntime export has a
            dynamic size); ``auto`` measures at the working size when the stage opens. The
            heads on each person's box run in torch, in fp32.
    """

    produces = (DensePoseResult,)
    stateful = True
    family = "densepose"
    int8 = True

    def __init__(
        self,
        variant: str | None = None,
        weights: str | None = None,
        size: int | None = None,
        max_size: int = densepose.MAX_SIZE,
        min_score: float = 0.8,
        every: int = 1,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        if variant is not None and variant not in densepose.VARIANTS:
            raise ConfigError(f"densepose: variant must be one of {sorted(densepose.VARIANTS)}")
        if weights is None:
            raise ConfigError("densepose: weights is required (a checkpoint path, or random)")
        if every < 1:
            raise ConfigError("densepose: every must be >= 1")
        self.variant, self.weights, self.size, self.max_size = variant, weights, size, max_size
        self.min_score, self.every = min_score, every
        self._carried: dict[str, _Carried] = {}
        self.counts = {"network": 0, "carried": 0}

    def open(self) -> None:
        self.check_options()
        self.variant, meta = sidecar_variant(
            "densepose",
            "DensePose",
            self.weights,
            self.variant,
            "densepose_rcnn_R_50_FPN_s1x",
            densepose.VARIANTS,
        )
        self.size = self.size or meta.get("input_size", densepose.MIN_SIZE)
        model = densepose.build_model(self.variant)
        if self.weights == "random":
            log.warning("densepose: random weights: results are meaningless (timing only)")
        else:
            try:
                densepose.load_weights(model, self.weights)
            except (OSError, ValueError) as error:
                raise model_error(self.kind, error) from None
        self.model = model.eval().to(self.device)
        # The torch backend casts its module in place: in float16 it gets its own copy, so the
        # heads on the boxes keep running in float32 on the shared model.
        half = self.options.precision != "fp32"
        graph = densepose.DenseGraph(copy.deepcopy(self.model) if half else self.model)
        height = self.size + -self.size % 32
        width = round(self.size * 16 / 9)
        self.backend = self.open_backend(graph, densepose.graph_spec(height, width + -width % 32),
                                         calibration=self.calibration)  # fmt: skip

    def calibration(self) -> Calibration:
        """int8's calibration inputs: 8 frames of a synthetic training sequence (seed 1000;
        the held-out scenes start at 9000), prepared at the working size."""
        from synthetic.generator import generate

        return [
            (densepose.to_input([f.image], self.size, self.max_size, "cpu")[0],)
            for f in generate(1000, 8, 320, 320)
        ]

    def on_gap(self, source_id: str, missing: int) -> None:
        self._carried.pop(source_id, None)  # the flow cannot bridge lost frames

    @torch.inference_mode()
    def detect(self, image: np.ndarray) -> DensePoseResult:
        """Runs the network on one BGR uint8 [H, W, 3] frame."""
        batch, sizes, originals = densepose.to_input([image], self.size, self.max_size,
                                                     self.device)  # fmt: skip
        raw = densepose.raw_outputs(self.backend(batch))
        (found,) = self.model.inference(batch, sizes, originals, raw)
        return DensePoseResult(*densepose.chart_arrays(found, self.min_score))

    @staticmethod
    def carry(result: DensePoseResult, previous: np.ndarray, image: np.ndarray) -> DensePoseResult:
        """``result`` made on ``previous``, moved to ``image`` by the median optical flow of
        each box (frames BGR uint8 [H, W, 3])."""
        if len(result.boxes) == 0:
            return result
        # forward flow: previous(p) ~ image(p + flow(p)), so a box moves by its flow
        flow = backward_flow(previous, image, cv2.DISOPTICAL_FLOW_PRESET_FAST, scale=0.5)
        height, width = image.shape[:2]
        moved = result.boxes.copy()
        for k, (x0, y0, x1, y1) in enumerate(result.boxes):
            c0, r0 = int(np.clip(x0, 0, width - 1)), int(np.clip(y0, 0, height - 1))
            c1 = int(np.clip(np.ceil(x1), c0 + 1, width))
            r1 = int(np.clip(np.ceil(y1), r0 + 1, height))
            box_flow = flow[r0:r1, c0:c1]
            # The person's own pixels move with it; the box's background may not.
            body = cv2.resize(
                result.parts[k], box_flow.shape[1::-1], interpolation=cv2.INTER_NEAREST
            )
            inside = box_flow[body > 0] if (body > 0).any() else box_flow.reshape(-1, 2)
            dx, dy = np.median(inside, axis=0)
            moved[k] += [dx, dy, dx, dy]
        return DensePoseResult(moved, result.parts, result.uv, result.scores)

    def process(self, frame: Frame) -> Frame:
        carried = self._carried.get(frame.source_id)
        due = carried is None or frame.index - carried.index >= self.every
        if due:
            result = self.detect(frame.image)
            self.counts["network"] += 1
        else:
            result = self.carry(carried.result, carried.image, frame.image)
            self.counts["carried"] += 1
        if due or carried is not None:
            index = frame.index if due else carried.index
            self._carried[frame.source_id] = _Carried(result, frame.image, index)
        frame.results[self.name] = result
        return frame

    def status(self) -> dict:
        return dict(self.counts)

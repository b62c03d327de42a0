"""DensePose on video: every person's body part index I and chart coordinates U, V.

The ``densepose`` stage runs a DensePose R-CNN (``models.densepose``: detectron2's model-zoo
checkpoints, or our demo weights) and turns its chart outputs into per-box I, U, V as
detectron2 does; the ``draw`` stage pastes them into a full-frame IUV image and renders parts,
U, V or contours.

It runs as three parts on threads of their own, so they overlap:

- ``preprocess`` (per source, in order) decides whether a frame is due for the network: on
  those it resizes and normalises the frame (``models.densepose.to_input``); on the others it
  computes the optical flow from the source's previous frame (OpenCV DIS);
- ``infer`` runs the whole-image part of the network (backbone, FPN, RPN head, DensePose
  decoder) through the run options' backend, on a batch of frames of any sources with
  ``batch`` > 1 (one call per input size);
- ``postprocess`` (per source, in order) runs the heads on each person's box in torch and
  makes the ``DensePoseResult``, or, on a frame between network frames, moves each person of
  the source's last result by the median flow inside its box.

To save compute on video it can run the network every N frames: on the frames between, each
person's last result is carried along the optical flow, so the overlay follows people without
running the network.
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
from stages.intermediate import intermediate
from stages.model_stage import ModelStage, model_error

log = logging.getLogger("framegraph")


@dataclass
class DenseInput:
    """A frame due for the network: its input and where its people go back to.

    Attributes:
        tensor: float32 [1, 3, H', W'] on the device, BGR minus the pixel mean, the shorter
            edge resized to ``size``, zero-padded to multiples of 32.
        size: (height, width) of the resized frame inside the padding.
        original: the frame's (height, width).
    """

    tensor: torch.Tensor
    size: tuple[int, int]
    original: tuple[int, int]


@dataclass
class DenseRaw:
    """A network frame's whole-image maps (``models.densepose.DenseGraph``), batch 1.

    Attributes:
        tensor: the frame's input, float32 [1, 3, H', W'] (as ``DenseInput``).
        size: (height, width) of the resized frame inside the padding.
        original: the frame's (height, width).
        outputs: the 16 maps of ``models.densepose.export.OUTPUTS``: P2..P6 [1, 256, H'/s,
            W'/s], objectness per level [1, 3, H'/s, W'/s], anchor deltas per level [1, 12,
            H'/s, W'/s] (s = 4..64), the DensePose decoder's map [1, 256, H'/4, W'/4].
    """

    tensor: torch.Tensor
    size: tuple[int, int]
    original: tuple[int, int]
    outputs: tuple[torch.Tensor, ...]


@dataclass
class DenseCarry:
    """A frame between network frames (``every`` > 1): it skips the network.

    Attributes:
        flow: float32 [H, W, 2], the forward flow (dx, dy) in pixels from the source's
            previous frame to this one: ``previous(p) ~ frame(p + flow(p))``.
    """

    flow: np.ndarray


@dataclass
class _Schedule:
    """``preprocess``'s view of a source: its last frame, in grey, and the last network frame."""

    index: int
    gray: np.ndarray | None
    network: int


@dataclass
class _Carried:
    """``postprocess``'s view of a source: the result of its last frame."""

    result: DensePoseResult
    index: int


def _nobody() -> DensePoseResult:
    return DensePoseResult(np.zeros((0, 4), np.float32), [], [], np.zeros(0, np.float32))


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
        every: run the network every this many frames of a source; results are carried by
            optical flow in between (1 = every frame). A source's first frame, the frame
            after a gap in its indices and a frame whose size changed always run it.
        **options: the run options (``models.backends.RunOptions``) of the whole-image part
            (backbone, FPN, RPN head, DensePose decoder; its export has a dynamic batch and
            size); ``auto`` measures at the working size and the stage's ``batch`` when the
            stage opens. With ``batch`` > 1, the frames due for the network that one
            ``infer`` call takes (any sources) run in one backend call per input size. The
            heads on each person's box run in torch, in fp32, one frame at a time.
    """

    produces = (DensePoseResult,)
    stateful = True
    family = "densepose"
    int8 = True
    steps = ("preprocess", "infer", "postprocess")
    stateful_steps = frozenset({"preprocess", "postprocess"})

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
        self._schedules: dict[str, _Schedule] = {}  # preprocess's, per source
        self._carried: dict[str, _Carried] = {}  # postprocess's, per source
        self.counts = {"network": 0, "carried": 0}

    def open(self) -> None:
        self.check_options()
        try:
            self.bundle = densepose.load(self.weights, self.variant, self.size, self.max_size)
        except (OSError, ValueError) as error:
            raise model_error(self.kind, error) from None
        if self.weights == "random":
            log.warning("densepose: random weights: results are meaningless (timing only)")
        self.variant, self.size = self.bundle.meta.variant, self.bundle.meta.input_size
        self.model = self.bundle.module.to(self.device)
        height = self.size + -self.size % 32
        width = round(self.size * 16 / 9)
        dense = self.bundle.graphs(height, width + -width % 32)["dense"]
        # The torch backend casts its module in place: in float16 it gets its own copy, so the
        # heads on the boxes keep running in float32 on the shared model.
        half = self.options.precision != "fp32"
        graph = copy.deepcopy(dense.module) if half else dense.module
        self.backend = self.open_backend(graph, dense.spec, calibration=self.calibration)

    def calibration(self) -> Calibration:
        """int8's calibration inputs: 8 frames of a synthetic training sequence (seed 1000;
        the held-out scenes start at 9000), prepared at the working size."""
        from synthetic.generator import generate

        return [(self.bundle.preprocess([f.image], "cpu")[0],) for f in generate(1000, 8, 320, 320)]

    def on_gap(self, source_id: str, missing: int) -> None:
        """Nothing to do: the flow cannot bridge lost frames, and ``preprocess`` sees the jump
        in the source's indices itself (this notice comes to ``infer``, behind it)."""

    def on_source_end(self, source_id: str) -> None:
        """The source's last frame has passed every part: its state goes."""
        self._schedules.pop(source_id, None)
        self._carried.pop(source_id, None)

    def preprocess(self, frame: Frame) -> Frame:
        """BGR uint8 [H, W, 3] frame -> ``DenseInput`` when it is due for the network, else
        ``DenseCarry`` (the flow from the source's previous frame).

        A frame is due when it is its source's first, follows a gap or a change of size, or
        comes ``every`` frames after the source's last network frame.
        """
        last = self._schedules.get(frame.source_id)
        gray = None
        if self.every > 1:  # the flow runs on grey frames: each is converted once
            gray = cv2.cvtColor(frame.image, cv2.COLOR_BGR2GRAY)
        if (
            last is not None and last.gray is not None and gray is not None
            and frame.index == last.index + 1 and last.gray.shape == gray.shape
            and frame.index - last.network < self.every
        ):  # fmt: skip
            frame.results[self.name] = DenseCarry(self.forward_flow(last.gray, gray))
            network = last.network
        else:
            batch, sizes, originals = self.bundle.preprocess([frame.image], self.device)
            frame.results[self.name] = DenseInput(batch, sizes[0], originals[0])
            network = frame.index
        self._schedules[frame.source_id] = _Schedule(frame.index, gray, network)
        return frame

    def infer(self, frame: Frame) -> Frame:
        """``DenseInput`` -> ``DenseRaw``: the network's whole-image part (a ``DenseCarry``
        passes through)."""
        return self.infer_batch([frame])[0]

    @torch.inference_mode()
    def infer_batch(self, frames: list[Frame]) -> list[Frame]:
        """``infer`` on several frames (any sources, each source's in order): the frames due
        for the network run in one backend call per input size, float32 [n, 3, H', W'];
        each gets its own rows of the 16 maps."""
        due = [f for f in frames if not isinstance(f.results.get(self.name), DenseCarry)]
        inputs = [intermediate(f, self.name, DenseInput, self.name) for f in due]
        for members in self.alike([tuple(prepared.tensor.shape) for prepared in inputs]):
            x = torch.cat([inputs[i].tensor for i in members])
            outputs = self.backend(x)
            for row, i in enumerate(members):
                prepared = inputs[i]
                due[i].results[self.name] = DenseRaw(
                    prepared.tensor, prepared.size, prepared.original,
                    tuple(out[row : row + 1] for out in outputs),
                )  # fmt: skip
            self.counts["network"] += len(members)
        return frames

    @torch.inference_mode()
    def postprocess(self, frame: Frame) -> Frame:
        """``DenseRaw`` -> ``DensePoseResult``: proposals, the box and DensePose heads on the
        boxes (torch), I, U, V per person scoring at least ``min_score``; or ``DenseCarry``
        -> the source's last result moved along the flow.

        A carried frame whose previous frame's result was lost (it failed in an earlier
        part) has nobody to carry: it comes out empty until the next network frame.
        """
        value = frame.results.get(self.name)
        if isinstance(value, DenseCarry):
            last = self._carried.get(frame.source_id)
            if last is not None and last.index == frame.index - 1:
                result = self.moved(last.result, value.flow)
            else:
                log.debug("densepose: %s#%d: nothing to carry", frame.source_id, frame.index)
                result = _nobody()
            self.counts["carried"] += 1
        else:
            raw = intermediate(frame, self.name, DenseRaw, self.name)
            (charts,) = self.bundle.postprocess(raw.tensor, [raw.size], [raw.original],
                                                raw.outputs, self.min_score)  # fmt: skip
            result = DensePoseResult(*charts)
        if self.every > 1:
            self._carried[frame.source_id] = _Carried(result, frame.index)
        frame.results[self.name] = result
        return frame

    @staticmethod
    def forward_flow(previous: np.ndarray, image: np.ndarray) -> np.ndarray:
        """float32 [H, W, 2]: the flow along which results move from ``previous`` to ``image``
        (BGR uint8 [H, W, 3] or grey [H, W]): DIS's fast preset at half resolution."""
        # forward flow: previous(p) ~ image(p + flow(p)), so a box moves by its flow
        return backward_flow(previous, image, cv2.DISOPTICAL_FLOW_PRESET_FAST, scale=0.5)

    @staticmethod
    def moved(result: DensePoseResult, flow: np.ndarray) -> DensePoseResult:
        """``result`` with each box moved by the median of ``flow`` (float32 [H, W, 2], from
        :meth:`forward_flow`) over the person's own pixels in it (the whole box when it has
        none); parts, UV and scores are kept."""
        if len(result.boxes) == 0:
            return result
        height, width = flow.shape[:2]
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

    @classmethod
    def carry(
        cls, result: DensePoseResult, previous: np.ndarray, image: np.ndarray
    ) -> DensePoseResult:
        """``result`` made on ``previous``, moved to ``image`` by the median optical flow of
        each box (frames BGR uint8 [H, W, 3]): :meth:`moved` by :meth:`forward_flow`."""
        if len(result.boxes) == 0:
            return result
        return cls.moved(result, cls.forward_flow(previous, image))

    def status(self) -> dict:
        return dict(self.counts)

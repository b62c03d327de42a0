"""YolactEdge in the graph: one ``yolact_edge`` stage that runs as three parts on threads of
their own, so they overlap: ``preprocess`` (resize, normalise, to the device), ``infer``
(keyframes and warped non-keyframes, state per source) and ``postprocess`` (Fast NMS,
masks -> ``Detections``). Track ids come from a ``track`` stage after it (stages/track.py).

Keyframe policy, per source: the first frame, every ``keyframe_interval``-th
frame after a keyframe, the frame after a gap (dropped or missing frames: the warp would reach
across the gap), and a scene cut (a coarse thumbnail of the frame differs from the keyframe's
by more than ``scene_cut``). With ``adaptive: true`` the interval becomes a ceiling and a
non-keyframe whose estimated motion exceeds ``motion_threshold`` pixels makes the next frame a
keyframe.
"""

from __future__ import annotations

import functools
import itertools
import logging
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from models import yolact_edge
from pipeline.config import register
from pipeline.errors import ConfigError
from pipeline.frame import Frame
from pipeline.results import Detections
from stages.intermediate import intermediate
from stages.model_stage import ModelStage, model_error

log = logging.getLogger("framegraph")


@dataclass
class YolactInput:
    """Network input of one frame: float32 [1, 3, S, S] and the frame's (height, width)."""

    tensor: torch.Tensor
    frame_size: tuple[int, int]


@dataclass
class YolactRaw:
    """Head outputs of one frame (see ``models.yolact_edge.YolactEdge.forward``)."""

    loc: torch.Tensor
    conf: torch.Tensor
    coeffs: torch.Tensor
    proto: torch.Tensor
    input_size: int
    frame_size: tuple[int, int]
    class_names: tuple[str, ...]
    keyframe: bool


@dataclass
class _SourceState:
    key: tuple[torch.Tensor, ...] = ()
    thumbnail: torch.Tensor | None = None
    since_key: int = 0
    last_index: int = -1
    force: bool = True


@register("yolact_edge")
class YolactEdgeDetector(ModelStage):
    """Instances (boxes, classes, masks) as ``Detections``, with YolactEdge's temporal
    feature reuse. A ``track`` stage after it gives them track ids.

    Args:
        variant: an official config name (``yolact_edge_vid_resnet50``, ...); video variants
            reuse keyframe features, image variants run every frame in full. Default: the
            checkpoint's own (its JSON sidecar), else yolact_edge_vid_mobilenetv2.
        weights: a checkpoint path (official or ours; loaded strictly), or ``random`` for
            random weights (timing and tests only).
        class_names: the checkpoint's foreground classes when they are not the variant's
            (default: from the checkpoint's sidecar).
        size: network input side (default: the checkpoint's sidecar, else 550).
        keyframe_interval: a keyframe at least every this many frames (1 = every frame).
        adaptive: also start a keyframe after a frame whose motion exceeds the threshold.
        motion_threshold: mean flow magnitude, in input pixels, that triggers a keyframe.
        scene_cut: thumbnail difference (in units of the input normalisation, ~57 grey
            levels) above which a frame is a keyframe.
        score_threshold: detections below it are dropped (after NMS).
        nms_threshold: Fast NMS IoU.
        max_detections: per frame.
        masks: compute instance masks (bool, frame size).
        **options: the run options (``models.backends.RunOptions``) of the keyframe and
            non-keyframe graphs; ``auto`` measures each graph when the stage opens.
            ``channels_last`` defaults to on: NHWC convolutions run 5-25% faster on this
            model on a CPU (bench/yolact_edge.py) as well as on GPUs.
    """

    stateful = True
    produces = (Detections,)
    family = "yolact_edge"
    int8 = True
    channels_last_default = True
    steps = ("preprocess", "infer", "postprocess")
    stateful_steps = frozenset({"infer"})  # keyframe features; postprocess keeps nothing

    def __init__(
        self,
        variant: str | None = None,
        weights: str | None = None,
        class_names: list[str] | None = None,
        size: int | None = None,
        keyframe_interval: int = 5,
        adaptive: bool = False,
        motion_threshold: float = 8.0,
        scene_cut: float = 0.5,
        score_threshold: float = 0.3,
        nms_threshold: float = 0.5,
        max_detections: int = 100,
        masks: bool = True,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        if variant is not None and variant not in yolact_edge.VARIANTS:
            raise ConfigError(f"yolact_edge: variant must be one of {sorted(yolact_edge.VARIANTS)}")
        if keyframe_interval < 1:
            raise ConfigError("yolact_edge: keyframe_interval must be >= 1")
        if weights is None:
            raise ConfigError("yolact_edge: weights is required (a checkpoint path, or random)")
        if size is not None and size < 64:
            raise ConfigError(f"yolact_edge: size must be >= 64, got {size}")
        self.variant, self.weights = variant, weights
        self.class_names = tuple(class_names) if class_names else None
        self.size = size
        self.interval, self.adaptive = keyframe_interval, adaptive
        self.motion_threshold, self.scene_cut = motion_threshold, scene_cut
        self.states: dict[str, _SourceState] = {}
        self.counts = {"keyframes": 0, "warped": 0}
        self.score_threshold, self.nms_threshold = score_threshold, nms_threshold
        self.max_detections, self.masks = max_detections, masks

    def open(self) -> None:
        self.check_options()
        try:
            bundle = yolact_edge.load(self.weights, self.variant, self.class_names, self.size)
        except (OSError, ValueError) as error:
            raise model_error(self.kind, error) from None
        if self.weights == "random":
            log.warning("yolact_edge: random weights: detections are meaningless (timing only)")
        self.bundle, self.model = bundle, bundle.module
        self.variant, self.size = bundle.meta.variant, bundle.meta.input_size
        self.class_names = bundle.meta.class_names
        self.video = self.model.config.video and (self.interval > 1 or self.adaptive)
        graphs = bundle.graphs(self.size, self.size)
        key_graph = graphs["keyframe"]
        frames = functools.cache(self._calibration_inputs)  # rendered once for both graphs
        self.key_backend = self.open_backend(
            key_graph.module, key_graph.spec, calibration=lambda: [(x,) for x in frames()]
        )
        self.non_key_backend = None
        if self.video:
            non_key = graphs["non_keyframe"]
            self.non_key_backend = self.open_backend(
                non_key.module, non_key.spec,
                calibration=lambda: self._warp_calibration(key_graph.module, frames()),
            )  # fmt: skip

    def _calibration_inputs(self) -> list[torch.Tensor]:
        """int8's calibration frames: 8 frames of a synthetic training sequence (seed 1000;
        the held-out scenes start at 9000), prepared at the stage's size."""
        from synthetic.generator import generate

        return [
            self.bundle.preprocess(f.image, "cpu")
            for f in generate(1000, 8, self.size, self.size)  # type: ignore[arg-type]
        ]

    @torch.inference_mode()
    def _warp_calibration(
        self, key_graph: torch.nn.Module, xs: list[torch.Tensor]
    ) -> list[tuple[torch.Tensor, ...]]:
        """Each calibration frame with the keyframe state of the frame before it (fp32 torch)."""
        return [(x, *key_graph(previous)[4:]) for previous, x in itertools.pairwise(xs)]

    def on_gap(self, source_id: str, missing: int) -> None:
        self.states.setdefault(source_id, _SourceState()).force = True

    def on_source_end(self, source_id: str) -> None:
        """The source's keyframe features go (it ended or was removed)."""
        self.states.pop(source_id, None)

    def _needs_keyframe(self, state: _SourceState, frame: Frame, thumbnail: torch.Tensor) -> bool:
        if not self.video or state.force or not state.key:
            return True
        if frame.index != state.last_index + 1 or state.since_key + 1 >= self.interval:
            return True
        return bool((thumbnail - state.thumbnail).abs().mean() > self.scene_cut)

    def preprocess(self, frame: Frame) -> Frame:
        """BGR frame -> ``YolactInput`` (``size`` square, normalised, RGB, on the device)."""
        tensor = self.bundle.preprocess(frame.image, self.device)
        frame.results[self.name] = YolactInput(tensor, frame.image.shape[:2])
        return frame

    def infer(self, frame: Frame) -> Frame:
        """``YolactInput`` -> ``YolactRaw``: a keyframe, or a non-keyframe warped from the
        source's last keyframe."""
        return self.infer_batch([frame])[0]

    @torch.inference_mode()
    def infer_batch(self, frames: list[Frame]) -> list[Frame]:
        """``infer`` on several frames, in rounds of at most one frame per source (a
        source's next frame may warp from this one): per round, one call for its keyframes
        and one for its non-keyframes, each bringing its own source's state."""
        for group in self.rounds(frames):
            self._infer_round(group)
        return frames

    def _infer_round(self, frames: list[Frame]) -> None:
        prepared = [intermediate(f, self.name, YolactInput, self.name) for f in frames]
        inputs = [p.tensor for p in prepared]
        states = [self.states.setdefault(f.source_id, _SourceState()) for f in frames]
        thumbnails = [F.adaptive_avg_pool2d(x, 16) for x in inputs]
        keyframe = [
            self._needs_keyframe(state, frame, thumbnail)
            for state, frame, thumbnail in zip(states, frames, thumbnails, strict=True)
        ]
        outputs: dict[int, tuple[torch.Tensor, ...]] = {}
        for is_key in (True, False):
            members = [i for i, k in enumerate(keyframe) if k is is_key]
            if not members:
                continue
            x = torch.cat([inputs[i] for i in members])
            if is_key:
                batch = self.key_backend(x)
            else:
                carried = zip(*(states[i].key for i in members), strict=True)
                batch = self.non_key_backend(x, *(torch.cat(t) for t in carried))  # type: ignore[misc]
            for row, i in enumerate(members):
                outputs[i] = tuple(out[row : row + 1] for out in batch)
        for i, frame in enumerate(frames):
            state, out = states[i], outputs[i]
            if keyframe[i]:
                state.key, state.thumbnail, state.since_key, state.force = (
                    out[4:], thumbnails[i], 0, False,
                )  # fmt: skip
                self.counts["keyframes"] += 1
            else:
                state.since_key += 1
                if self.adaptive and float(out[4].max()) > self.motion_threshold:
                    state.force = True
                self.counts["warped"] += 1
            state.last_index = frame.index
            loc, conf, coeffs, proto = out[:4]
            frame.results[self.name] = YolactRaw(
                loc, conf, coeffs, proto, inputs[i].shape[-1], prepared[i].frame_size,
                self.model.config.class_names, keyframe[i],
            )  # fmt: skip

    def status(self) -> dict[str, int]:
        return dict(self.counts)

    def postprocess(self, frame: Frame) -> Frame:
        """``YolactRaw`` -> ``Detections``: Fast NMS, masks at frame size."""
        raw = intermediate(frame, self.name, YolactRaw, self.name)
        found = yolact_edge.frame_instances(  # the bundle's postprocess, needing no model
            raw.loc, raw.conf, raw.coeffs, raw.proto, raw.input_size, raw.frame_size,
            score_threshold=self.score_threshold, nms_threshold=self.nms_threshold,
            max_detections=self.max_detections, with_masks=self.masks,
        )  # fmt: skip
        frame.results[self.name] = Detections(
            found.boxes, found.scores, found.classes, masks=found.masks,
            class_names=raw.class_names,
        )  # fmt: skip
        return frame

"""YolactEdge in the graph: ``yolact_preprocess`` -> ``yolact_edge`` (keyframes and warped
non-keyframes, state per source) -> ``yolact_postprocess`` (Fast NMS, masks, track ids ->
``Detections``).

Keyframe policy of ``yolact_edge``, per source: the first frame, every ``keyframe_interval``-th
frame after a keyframe, the frame after a gap (dropped or missing frames: the warp would reach
across the gap), and a scene cut (a coarse thumbnail of the frame differs from the keyframe's
by more than ``scene_cut``). With ``adaptive: true`` the interval becomes a ceiling and a
non-keyframe whose estimated motion exceeds ``motion_threshold`` pixels makes the next frame a
keyframe.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from models import yolact_edge
from models.backends import Backend
from models.yolact_edge.export import KeyframeGraph, NonKeyframeGraph, graph_specs
from pipeline.config import register
from pipeline.errors import ConfigError, ModelError
from pipeline.frame import Frame
from pipeline.results import Detections
from pipeline.stage import Stage
from stages.intermediate import drop_intermediates, intermediate
from stages.model_backend import check_device, open_backend
from stages.model_weights import sidecar_variant
from stages.tracking import IoUTracker

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


@register("yolact_preprocess")
class YolactPreprocess(Stage):
    """BGR frame -> YolactEdge input (550x550, normalised, RGB).

    Args:
        size: network input side.
        device: where the tensor goes.
    """

    def __init__(self, size: int = yolact_edge.MAX_SIZE, device: str = "cpu") -> None:
        if size < 64:
            raise ConfigError(f"yolact_preprocess: size must be >= 64, got {size}")
        self.size, self.device = size, device

    def process(self, frame: Frame) -> Frame:
        tensor = yolact_edge.to_input(frame.image, self.size, self.device)
        frame.results[self.name] = YolactInput(tensor, frame.image.shape[:2])
        return frame


@dataclass
class _SourceState:
    key: tuple[torch.Tensor, ...] = ()
    thumbnail: torch.Tensor | None = None
    since_key: int = 0
    last_index: int = -1
    force: bool = True


@register("yolact_edge")
class YolactEdgeDetector(Stage):
    """The YolactEdge network with temporal feature reuse.

    Args:
        input: name of the ``yolact_preprocess`` stage.
        variant: an official config name (``yolact_edge_vid_resnet50``, ...); video variants
            reuse keyframe features, image variants run every frame in full. Default: the
            checkpoint's own (its JSON sidecar), else yolact_edge_vid_mobilenetv2.
        weights: a checkpoint path (official or ours; loaded strictly), or ``random`` for
            random weights (timing and tests only).
        class_names: the checkpoint's foreground classes when they are not the variant's
            (default: from the checkpoint's sidecar).
        size: network input side; must match ``yolact_preprocess``'s (default: the
            checkpoint's sidecar, else 550).
        device: ``cpu`` or ``cuda``.
        half: run the network in float16 (CUDA only; torch and tensorrt backends).
        cuda_graph: torch on CUDA: capture the network once per input size and replay it
            (on an H100 2-9x faster than eager at batch 1: bench/gpu.py).
        backend: what runs the keyframe and non-keyframe graphs (models/backends): ``torch``,
            ``onnxruntime``, ``tensorrt`` (needs TensorRT and a GPU) or ``auto`` (the fastest
            of torch, onnxruntime and tensorrt where they run, measured per graph when the
            stage opens).
        threads: onnxruntime intra-op threads.
        channels_last: torch backend: NHWC memory format, whose convolutions run 5-25%
            faster on this model on a CPU (bench/yolact_edge.py) as well as on GPUs.
        keyframe_interval: a keyframe at least every this many frames (1 = every frame).
        adaptive: also start a keyframe after a frame whose motion exceeds the threshold.
        motion_threshold: mean flow magnitude, in input pixels, that triggers a keyframe.
        scene_cut: thumbnail difference (in units of the input normalisation, ~57 grey
            levels) above which a frame is a keyframe.
    """

    stateful = True

    def __init__(
        self,
        input: str = "yolact_preprocess",
        variant: str | None = None,
        weights: str | None = None,
        class_names: list[str] | None = None,
        size: int | None = None,
        device: str = "cpu",
        half: bool = False,
        cuda_graph: bool = False,
        backend: Literal["torch", "onnxruntime", "tensorrt", "auto"] = "auto",
        threads: int | None = None,
        channels_last: bool = True,
        keyframe_interval: int = 5,
        adaptive: bool = False,
        motion_threshold: float = 8.0,
        scene_cut: float = 0.5,
    ) -> None:
        if variant is not None and variant not in yolact_edge.VARIANTS:
            raise ConfigError(f"yolact_edge: variant must be one of {sorted(yolact_edge.VARIANTS)}")
        if keyframe_interval < 1:
            raise ConfigError("yolact_edge: keyframe_interval must be >= 1")
        if weights is None:
            raise ConfigError("yolact_edge: weights is required (a checkpoint path, or random)")
        self.input, self.variant, self.weights = input, variant, weights
        self.class_names = tuple(class_names) if class_names else None
        self.size = size
        self.device = torch.device(device)
        self.half, self.backend_kind, self.threads = half, backend, threads
        self.cuda_graph = cuda_graph
        self.channels_last = channels_last
        self.interval, self.adaptive = keyframe_interval, adaptive
        self.motion_threshold, self.scene_cut = motion_threshold, scene_cut
        self.states: dict[str, _SourceState] = {}
        self.counts = {"keyframes": 0, "warped": 0}

    def open(self) -> None:
        check_device("yolact_edge", self.device, self.half, self.cuda_graph, self.backend_kind)
        self.variant, meta = sidecar_variant(
            "yolact_edge",
            "YolactEdge",
            self.weights,
            self.variant,
            "yolact_edge_vid_mobilenetv2",
            yolact_edge.VARIANTS,
        )
        self.class_names = self.class_names or tuple(meta.get("class_names", ())) or None
        self.size = self.size or meta.get("input_size", yolact_edge.MAX_SIZE)
        model = yolact_edge.build_model(self.variant, self.class_names)
        if self.weights == "random":
            log.warning("yolact_edge: random weights: detections are meaningless (timing only)")
        else:
            try:
                yolact_edge.load_weights(model, self.weights)
            except (OSError, ValueError) as error:
                raise ModelError(f"yolact_edge: {str(error).splitlines()[0]}") from None
        model.eval()
        self.model = model
        self.video = model.config.video and (self.interval > 1 or self.adaptive)
        key_spec, non_key_spec = graph_specs(self.size, video=model.config.video)
        self.key_backend = self._backend(KeyframeGraph(model), key_spec)
        self.non_key_backend = (
            self._backend(NonKeyframeGraph(model), non_key_spec) if self.video else None
        )

    def _backend(self, graph: torch.nn.Module, spec) -> Backend:
        return open_backend("yolact_edge", self.backend_kind, graph, spec, "yolact_edge",
                            self.device, "fp16" if self.half else "fp32", self.threads,
                            self.channels_last, self.cuda_graph)  # fmt: skip

    def on_gap(self, source_id: str, missing: int) -> None:
        self.states.setdefault(source_id, _SourceState()).force = True

    def _needs_keyframe(self, state: _SourceState, frame: Frame, thumbnail: torch.Tensor) -> bool:
        if not self.video or state.force or not state.key:
            return True
        if frame.index != state.last_index + 1 or state.since_key + 1 >= self.interval:
            return True
        return bool((thumbnail - state.thumbnail).abs().mean() > self.scene_cut)

    @torch.inference_mode()
    def process(self, frame: Frame) -> Frame:
        batch = intermediate(frame, self.input, YolactInput, self.name)
        x = batch.tensor
        if x.shape[-1] != self.size:
            raise ConfigError(
                f"yolact_edge: the model takes {self.size}x{self.size} input, "
                f"set yolact_preprocess size: {self.size}"
            )
        state = self.states.setdefault(frame.source_id, _SourceState())
        thumbnail = F.adaptive_avg_pool2d(x, 16)
        keyframe = self._needs_keyframe(state, frame, thumbnail)
        if keyframe:
            outputs = self.key_backend(x)
            state.key, state.thumbnail, state.since_key, state.force = (
                outputs[4:],
                thumbnail,
                0,
                False,
            )
            self.counts["keyframes"] += 1
        else:
            outputs = self.non_key_backend(x, *state.key)  # type: ignore[misc]
            state.since_key += 1
            if self.adaptive and float(outputs[4].max()) > self.motion_threshold:
                state.force = True
            self.counts["warped"] += 1
        state.last_index = frame.index
        loc, conf, coeffs, proto = outputs[:4]
        frame.results[self.name] = YolactRaw(
            loc, conf, coeffs, proto, x.shape[-1], batch.frame_size,
            self.model.config.class_names, keyframe,
        )  # fmt: skip
        return frame

    def status(self) -> dict[str, int]:
        return dict(self.counts)


@register("yolact_postprocess")
class YolactPostprocess(Stage):
    """Fast NMS, masks at frame size and track ids -> ``Detections``.

    Args:
        input: name of the ``yolact_edge`` stage.
        score_threshold: detections below it are dropped (after NMS).
        nms_threshold: Fast NMS IoU.
        max_detections: per frame.
        masks: compute instance masks (bool, frame size).
        track: give detections track ids (IoU tracker per source) so colours stay stable.
    """

    stateful = True
    produces = (Detections,)

    def __init__(
        self,
        input: str = "yolact_edge",
        score_threshold: float = 0.3,
        nms_threshold: float = 0.5,
        max_detections: int = 100,
        masks: bool = True,
        track: bool = True,
    ) -> None:
        self.input = input
        self.score_threshold, self.nms_threshold = score_threshold, nms_threshold
        self.max_detections, self.masks, self.track = max_detections, masks, track
        self.trackers: dict[str, IoUTracker] = {}

    def process(self, frame: Frame) -> Frame:
        raw = intermediate(frame, self.input, YolactRaw, self.name)
        prior = yolact_edge.priors(raw.input_size, raw.input_size, raw.loc.device)
        (found,) = yolact_edge.detect(
            raw.loc, raw.conf, raw.coeffs, prior, nms_threshold=self.nms_threshold,
            max_detections=self.max_detections,
        )  # fmt: skip
        keep = found.scores >= self.score_threshold
        found = found.select(keep)
        height, width = raw.frame_size
        boxes = yolact_edge.boxes_in_pixels(found.boxes, height, width).cpu().numpy()
        scores, classes = found.scores.cpu().numpy(), found.classes.cpu().numpy()
        masks = (
            yolact_edge.masks(raw.proto[0], found, height, width).cpu().numpy()
            if self.masks
            else None
        )
        track_ids = None
        if self.track:
            tracker = self.trackers.setdefault(frame.source_id, IoUTracker())
            track_ids = tracker.update(boxes, classes, scores)
        frame.results[self.name] = Detections(
            boxes, scores, classes, track_ids=track_ids, masks=masks, class_names=raw.class_names
        )
        drop_intermediates(frame, YolactInput, YolactRaw)
        return frame

"""Video panoptic segmentation: every pixel a stuff class or a tracked thing (VPSNet).

The ``vpsnet`` stage runs ``models.vpsnet`` per source: the previous frame's feature pyramid
is kept (not recomputed) as the temporal fusion's reference, the flow between the two frames
comes from a pluggable source (OpenCV DIS by default, FlowNet2 as officially when its weights
are at hand, or none), and the track memory gives
each object a stable id. A gap of more than ``max_gap`` lost frames starts a new video (the
fusion and the tracker cannot bridge it). The result is a ``PanopticSegmentation`` at frame
size whose thing segments carry their track id (segment id ``class * 1000 + track``, the
Cityscapes-VPS convention), so ``draw`` keeps one colour per track.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import torch

from models import vpsnet
from models.backends import Backend
from models.checkpoints import read_checkpoint
from models.flow import backward_flow
from models.vpsnet.weights import flownet2_state_dict
from pipeline.config import register
from pipeline.errors import ConfigError, ModelError
from pipeline.frame import Frame
from pipeline.results import PanopticSegmentation
from stages.model_stage import ModelStage, model_error
from stages.model_weights import sidecar_variant

log = logging.getLogger("framegraph")

FLOW_SOURCES = ("dis", "flownet2", "none")
"""``dis``: OpenCV DIS optical flow (fast preset), on frames resized by ``flow_scale``;
``flownet2``: NVIDIA's FlowNet2 (~162 M parameters, slow on a CPU) on the network input, as the
official model computes it; its weights are not bundled: the ``flownet2.*`` keys of the
official checkpoint given as ``weights``, or ``flownet2_weights``; ``none``: zero flow (fusion
without motion compensation)."""


@dataclass
class _Video:
    """One source's state: the model's, the previous resized frame (and, for FlowNet2, its
    network input) and its index."""

    state: vpsnet.VideoState = field(default_factory=vpsnet.VideoState)
    previous: np.ndarray | None = None
    previous_input: torch.Tensor | None = None
    index: int = -1


@register("vpsnet")
class VPSNetSegmenter(ModelStage):
    """Panoptic segmentation with stable instance ids, as a ``PanopticSegmentation``.

    Args:
        variant: a ``models.vpsnet.VARIANTS`` name (default: the checkpoint's sidecar, else
            "fusetrack").
        weights: a checkpoint (the official mmcv ``.pth`` or our demo weights), or ``random``
            (timing and tests only).
        scale: (long, short) edges the frame is fitted into (default: the sidecar's, else the
            official 2048 x 1024).
        flow: where the fusion's flow comes from (:data:`FLOW_SOURCES`): "dis", "flownet2"
            or "none". FlowNet2 runs as the official ``compute_flow``: on the de-normalised
            network input (RGB, the padding the mean colour), zero-padded to multiples of 64,
            current frame first; unlike the official code, a video's first frame gets zero
            flow rather than FlowNet2's (near-zero) flow of the frame against itself.
        flownet2_weights: for flow "flownet2" when ``weights`` lacks ``flownet2.*`` keys:
            NVIDIA's ``FlowNet2_checkpoint.pth.tar`` (or a file with ``flownet2.*`` keys), or
            ``random`` (timing and tests only).
        flow_scale: DIS runs on frames resized by this (cheaper, coarser).
        max_gap: lost frames after which the next frame starts a new video.
        category_ids: the category id of each semantic class, stuff first then things
            (default: the sidecar's, else 1, 2, ...).
        **options: the run options (``models.backends.RunOptions``) of the whole-image part
            (backbone, FPN, fusion, RPN and semantic heads); ``precision`` applies to it
            alone. ``auto`` is torch for the official variants, whose deformable
            convolutions ONNX lacks. Exports have fixed shapes (see
            ``models.vpsnet.export``), so the backends for an input size are made, and
            ``auto`` measured, at the first frame of that size. The heads on the
            detections, tracking and FlowNet2 run in torch.
    """

    produces = (PanopticSegmentation,)
    stateful = True
    family = "vpsnet"

    def __init__(
        self,
        variant: str | None = None,
        weights: str | None = None,
        scale: tuple[int, int] | None = None,
        flow: str = "dis",
        flownet2_weights: str | None = None,
        flow_scale: float = 0.5,
        max_gap: int = 5,
        category_ids: list[int] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        if variant is not None and variant not in vpsnet.VARIANTS:
            raise ConfigError(f"vpsnet: variant must be one of {sorted(vpsnet.VARIANTS)}")
        if weights is None:
            raise ConfigError("vpsnet: weights is required (a checkpoint path, or random)")
        if flow not in FLOW_SOURCES:
            raise ConfigError(f"vpsnet: flow must be one of {list(FLOW_SOURCES)}, got {flow!r}")
        if flownet2_weights is not None and flow != "flownet2":
            raise ConfigError("vpsnet: flownet2_weights is only used with flow: flownet2")
        if flow == "flownet2" and weights == "random" and flownet2_weights is None:
            raise ConfigError(
                "vpsnet: flow flownet2 with random weights needs flownet2_weights "
                "(a FlowNet2 checkpoint, or random)"
            )
        if not 0.0 < flow_scale <= 1.0:
            raise ConfigError("vpsnet: flow_scale must be in (0, 1]")
        if max_gap < 0:
            raise ConfigError("vpsnet: max_gap must be >= 0")
        self.variant, self.weights, self.scale = variant, weights, scale
        self.flow, self.flow_scale, self.max_gap = flow, flow_scale, max_gap
        self.flownet2_weights = flownet2_weights
        self.flownet2: vpsnet.FlowNet2 | None = None
        self.category_ids = category_ids
        self._backends: dict[tuple[int, ...], tuple[Backend, Backend | None]] = {}
        self.videos: dict[str, _Video] = {}
        self.counts = {"frames": 0, "new_videos": 0}

    def open(self) -> None:
        self.check_options()
        self.variant, meta = sidecar_variant(
            "vpsnet", "VPSNet", self.weights, self.variant, "fusetrack", vpsnet.VARIANTS
        )
        self.scale = tuple(self.scale or meta.get("input_scale", vpsnet.TEST_SCALE))
        model = vpsnet.build_model(self.variant)
        config = model.config
        self.category_ids = list(
            self.category_ids or meta.get("category_ids", range(1, config.num_classes + 1))
        )
        if len(self.category_ids) != config.num_classes:
            raise ConfigError(
                f"vpsnet: category_ids has {len(self.category_ids)} entries, the model "
                f"{config.num_classes} classes"
            )
        checkpoint = None
        if self.weights == "random":
            log.warning("vpsnet: random weights: results are meaningless (timing only)")
        else:
            try:
                checkpoint = read_checkpoint(self.weights)
                vpsnet.load_weights(model, checkpoint, self.weights)
            except (OSError, ValueError) as error:
                raise model_error(self.kind, error) from None
        if self.flow == "flownet2":
            self.flownet2 = self._open_flownet2(checkpoint).eval().to(self.device)
        del checkpoint
        self.model = model.eval().to(self.device)
        # The torch backend casts its module in place: in float16 the graphs get their own
        # copy, so the heads on the detections keep running in float32 on the shared model.
        half = self.options.precision != "fp32"
        self._graph_model = copy.deepcopy(self.model) if half else self.model
        self.check_backend()

    def backends(self, image: torch.Tensor) -> tuple[Backend, Backend | None]:
        """The first-frame and next-frame backends for ``image``'s size (the latter None
        without fusion), made at the first frame of that size."""
        size = tuple(image.shape[2:])
        if size not in self._backends:
            first_spec, next_spec = vpsnet.graph_specs(self.model.config.channels, *size)
            options = self.options
            if options.backend == "auto" and self.model.config.deformable:
                # ONNX has no deformable convolution: no export to try
                options = options.model_copy(update={"backend": "torch"})
            graphs = [vpsnet.FirstFrameGraph(self._graph_model)]
            if self.model.config.fusion:
                graphs.append(vpsnet.NextFrameGraph(self._graph_model))
            first, *following = [
                self.open_backend(graph, spec, options)
                for graph, spec in zip(graphs, (first_spec, next_spec), strict=False)
            ]
            self._backends[size] = (first, following[0] if following else None)
        return self._backends[size]

    def _open_flownet2(self, checkpoint: object) -> vpsnet.FlowNet2:
        """FlowNet2 with ``flownet2_weights``, else the ``flownet2.*`` part of ``checkpoint``
        (the file given as ``weights``)."""
        source: object = self.flownet2_weights
        name = str(source)
        if source is None:
            try:
                source = flownet2_state_dict(checkpoint, self.weights)
            except ValueError as error:
                raise model_error(self.kind, error) from None
            if not source:
                raise ModelError(
                    f"vpsnet: flow flownet2 needs FlowNet2 weights, but {self.weights} has no "
                    "flownet2.* keys; give flownet2_weights (NVIDIA's FlowNet2_checkpoint.pth.tar)"
                )
            name = f"{self.weights} (flownet2.*)"
        model = vpsnet.FlowNet2()
        if source == "random":
            log.warning("vpsnet: random FlowNet2 weights: the flow is meaningless (timing only)")
            return model
        try:
            return vpsnet.load_flownet2(model, source, name)
        except (OSError, ValueError) as error:
            raise model_error(self.kind, error) from None

    def on_gap(self, source_id: str, missing: int) -> None:
        if missing > self.max_gap:
            self.videos.pop(source_id, None)

    def _flow(self, resized: np.ndarray, image: torch.Tensor, video: _Video) -> torch.Tensor:
        """[1, 2, H', W'] from this frame to the previous one (DIS: zero in the padding)."""
        if self.flow == "flownet2" and video.previous_input is not None:
            current, previous = vpsnet.denormalise(image), vpsnet.denormalise(video.previous_input)
            with torch.inference_mode():
                return vpsnet.flownet2_flow(self.flownet2, current, previous)
        flow = torch.zeros(1, 2, *image.shape[2:], device=self.device)
        if self.flow == "dis" and video.previous is not None:
            dense = backward_flow(resized, video.previous, cv2.DISOPTICAL_FLOW_PRESET_FAST,
                                  scale=self.flow_scale)  # fmt: skip
            height, width = resized.shape[:2]
            flow[0, :, :height, :width] = torch.from_numpy(dense).permute(2, 0, 1)
        return flow

    def process(self, frame: Frame) -> Frame:
        video = self.videos.get(frame.source_id)
        if video is None:
            video = self.videos[frame.source_id] = _Video()
            self.counts["new_videos"] += 1
        resized = vpsnet.resize_frame(frame.image, self.scale)
        image = vpsnet.normalise(resized, self.device)
        flow = self._flow(resized, image, video)
        first, following = self.backends(image)
        if video.state.pyramid is None or following is None:
            outputs = first(image)
        else:
            outputs = following(image, *video.state.pyramid, flow)
        out = self.model.inference(image, resized.shape[:2], video.state, flow,
                                   vpsnet.raw_outputs(outputs))  # fmt: skip
        video.previous, video.index = resized, frame.index
        if self.flow == "flownet2":
            video.previous_input = image
        self.counts["frames"] += 1
        frame.results[self.name] = self.segmentation(out.maps, frame.image.shape[:2])
        return frame

    def segmentation(
        self, maps: vpsnet.PanopticMaps, size: tuple[int, int]
    ) -> PanopticSegmentation:
        """The model's maps (network resolution) -> segments at frame ``size`` (nearest)."""
        num_stuff = self.model.config.num_stuff
        segment_map, categories = vpsnet.segment_ids(maps, self.category_ids, num_stuff)
        height, width = size
        if segment_map.shape != (height, width):
            segment_map = cv2.resize(segment_map, (width, height), interpolation=cv2.INTER_NEAREST)
        thing_ids = set(self.category_ids[num_stuff:])
        ids, areas = np.unique(segment_map, return_counts=True)
        segments = {}
        for sid, area in zip(ids.tolist(), areas.tolist(), strict=True):
            if sid == 0:
                continue
            is_thing = categories[sid] in thing_ids and sid % 1000 > 0
            track = sid % 1000 if is_thing else None
            segments[sid] = {"class": categories[sid], "is_thing": is_thing,
                             "track_id": track, "area": area}  # fmt: skip
        return PanopticSegmentation(segment_map, segments)

    def status(self) -> dict[str, int]:
        return dict(self.counts)

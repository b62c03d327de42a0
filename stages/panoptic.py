"""Video panoptic segmentation: every pixel a stuff class or a tracked thing (VPSNet).

The ``vpsnet`` stage runs ``models.vpsnet`` per source, as three parts on threads of their
own, so they overlap:

- ``preprocess``: the frame fitted into ``scale``, normalised and padded, and (flow "dis")
  the OpenCV DIS flow to the source's previous frame;
- ``infer``: the whole-image graphs (backbone, FPN, temporal fusion, RPN and semantic
  heads): a video's first frame alone, a later frame fused with the previous frame's feature
  pyramid (kept, not recomputed) warped by the flow (FlowNet2's, computed here, with flow
  "flownet2"). With ``batch`` > 1 one call takes frames of several sources, in rounds of at
  most one frame per source (a source's next frame needs this one's pyramid): per round one
  call for first frames and one for later frames, each frame bringing its own video's
  pyramid and flow;
- ``postprocess``: the heads on the detections (proposals, boxes, masks), the track memory
  that gives each object a stable id, and the panoptic fusion, to a
  ``PanopticSegmentation`` at frame size whose thing segments carry their track id (segment
  id ``class * 1000 + track``, the Cityscapes-VPS convention), so ``draw`` keeps one colour
  per track.

Each part keeps its own per-source state (the previous frame; the pyramid; the track
memory), freed when the source ends. Should a frame be lost between ``preprocess`` and
``infer`` (an error), its DIS flow would be to a frame the pyramid is not of: ``infer`` then
computes the flow to the right one itself. A gap of more than ``max_gap`` lost frames
starts a new video (the fusion and the tracker cannot bridge it): ``infer`` forgets the
pyramid and marks the frame, so that ``postprocess`` forgets the tracks when that frame
reaches it, not before.

The light variant (``fusetrack_mobilenetv2``, plain convolutions) exports to ONNX and so
runs ``precision: int8`` on onnxruntime, calibrated on synthetic training frames; the
official variants' deformable convolutions do not export (int8 is a config error).
"""

from __future__ import annotations

import copy
import functools
import itertools
import logging
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch

from models import vpsnet
from models.backends import Backend, Calibration
from models.bundle import ExportGraph
from models.checkpoints import read_checkpoint
from models.flow import backward_flow
from models.vpsnet.export import LEVELS
from models.vpsnet.weights import flownet2_state_dict
from pipeline.config import register
from pipeline.errors import ConfigError, ModelError
from pipeline.frame import Frame
from pipeline.results import PanopticSegmentation
from stages.intermediate import intermediate
from stages.model_stage import ModelStage, model_error

log = logging.getLogger("framegraph")

FLOW_SOURCES = ("dis", "flownet2", "none")
"""``dis``: OpenCV DIS optical flow (fast preset), on frames resized by ``flow_scale``;
``flownet2``: NVIDIA's FlowNet2 (~162 M parameters, slow on a CPU) on the network input, as the
official model computes it; its weights are not bundled: the ``flownet2.*`` keys of the
official checkpoint given as ``weights``, or ``flownet2_weights``; ``none``: zero flow (fusion
without motion compensation)."""

CALIBRATION_SEED = 1000
"""int8 calibrates on frames of this synthetic training sequence (held-out scenes: 9000+)."""

CALIBRATION_FRAMES = 8
"""How many: the first-frame graph calibrates on each, the next-frame graph on each but the
first (with the pyramid of, and the flow to, the frame before it)."""


@dataclass
class VPSNetInput:
    """What ``preprocess`` hands ``infer`` for one frame.

    Attributes:
        image: float32 [1, 3, H', W'] normalised, zero-padded to multiples of 32, on the
            device.
        resized: uint8 [h, w, 3] BGR, the frame fitted into ``scale`` (h <= H', w <= W').
        frame_size: the frame's (height, width).
        flow: float32 [1, 2, H', W'] DIS flow from this frame to ``reference`` (input pixels,
            zero in the padding), or None (flow "flownet2" / "none", or the source's first
            frame).
        reference: the index of the source's frame before this one, as ``preprocess`` saw
            it (None for its first).
    """

    image: torch.Tensor
    resized: np.ndarray
    frame_size: tuple[int, int]
    flow: torch.Tensor | None
    reference: int | None


@dataclass
class VPSNetRaw:
    """What ``infer`` hands ``postprocess`` for one frame.

    Attributes:
        image: float32 [1, 3, H', W'], the network input (the heads read its padded size).
        size: (h, w) of the input inside its padding.
        frame_size: the frame's (height, width).
        outputs: the whole-image graph's outputs for this frame
            (``models.vpsnet.raw_outputs``: pyramid and fused P2..P6 [1, C, H'/s, W'/s], RPN
            maps, semantic logits [1, K, H', W'] and [1, K, H'/4, W'/4]).
        flow: float32 [1, 2, H', W'], the flow the fusion used (zero on a first frame).
        new_video: the first frame of a video (its source's first, or the first after a
            long gap): the tracks start afresh.
    """

    image: torch.Tensor
    size: tuple[int, int]
    frame_size: tuple[int, int]
    outputs: dict[str, Any]
    flow: torch.Tensor
    new_video: bool


@dataclass
class _Video:
    """``infer``'s state of one source: the previous frame's un-fused pyramid (P2..P6
    [1, C, H'/s, W'/s]), its resized image (for DIS when ``preprocess``'s flow is to another
    frame), its network input (FlowNet2's reference), its index and padded size (H', W')."""

    pyramid: list[torch.Tensor] | None = None
    previous: np.ndarray | None = None
    previous_input: torch.Tensor | None = None
    index: int = -1
    size: tuple[int, ...] = ()


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
            alone. ``auto`` is torch for the official variants: their deformable
            convolutions do not export to ONNX, which onnxruntime, TensorRT and int8 need.
            Exports have a fixed height and width and a dynamic batch (see
            ``models.vpsnet.export``), so the backends for an input size are made, and
            ``auto`` measured (at ``batch``), at the first frame of that size; so is
            ``precision: int8`` (onnxruntime on the CPU, the light variant) calibrated, on
            :data:`CALIBRATION_FRAMES` frames of a synthetic training sequence rendered at
            that size. ``batch`` > 1 stacks frames of several sources (see the module
            docstring). The heads on the detections, tracking and FlowNet2 run in torch.

    Attributes:
        videos: ``infer``'s state per source.
        tracks: ``postprocess``'s state per source (the track memory).
        counts: frames through ``infer`` and videos started.
    """

    produces = (PanopticSegmentation,)
    stateful = True
    family = "vpsnet"
    int8 = True
    steps = ("preprocess", "infer", "postprocess")
    stateful_steps = frozenset(steps)

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
        self._previous: dict[str, tuple[int, np.ndarray]] = {}  # preprocess's state
        self.videos: dict[str, _Video] = {}
        self.tracks: dict[str, vpsnet.VideoState] = {}
        self.counts = {"frames": 0, "new_videos": 0}

    def open(self) -> None:
        self.check_options()
        try:
            self.bundle = vpsnet.load(self.weights, self.variant, self.scale)
        except (OSError, ValueError) as error:
            raise model_error(self.kind, error) from None
        self.variant, self.scale = self.bundle.meta.variant, self.bundle.meta.input_size
        config = self.bundle.module.config
        if self.options.precision == "int8" and config.deformable:
            raise ConfigError(
                f"vpsnet: precision int8 is not available for variant {self.variant} (its "
                "deformable convolutions do not export to ONNX); fusetrack_mobilenetv2 runs it"
            )
        sidecar = self.bundle.meta.sidecar
        self.category_ids = list(
            self.category_ids or sidecar.get("category_ids", range(1, config.num_classes + 1))
        )
        if len(self.category_ids) != config.num_classes:
            raise ConfigError(
                f"vpsnet: category_ids has {len(self.category_ids)} entries, the model "
                f"{config.num_classes} classes"
            )
        if self.weights == "random":
            log.warning("vpsnet: random weights: results are meaningless (timing only)")
        if self.flow == "flownet2":
            checkpoint = None
            if self.flownet2_weights is None:  # FlowNet2's keys are in the VPSNet checkpoint
                try:
                    checkpoint = read_checkpoint(self.weights)
                except (OSError, ValueError) as error:
                    raise model_error(self.kind, error) from None
            self.flownet2 = self._open_flownet2(checkpoint).eval().to(self.device)
        self.model = self.bundle.module.to(self.device)
        self.check_backend()

    def backends(self, prepared: VPSNetInput) -> tuple[Backend, Backend | None]:
        """The first-frame and next-frame backends for ``prepared``'s input size (the latter
        None without fusion), made at the first frame of that size."""
        size = tuple(prepared.image.shape[2:])
        if size not in self._backends:
            graphs = self.bundle.graphs(*size)
            if self.options.precision in ("fp16", "bf16"):
                # The torch backend casts its module in place: the graphs get their own copy,
                # so the heads on the detections keep running in float32 on the shared model.
                graphs = {
                    k: ExportGraph(copy.deepcopy(g.module), g.spec) for k, g in graphs.items()
                }
            options = self.options
            if options.backend == "auto" and self.model.config.deformable:
                # ONNX has no deformable convolution: no export to try
                options = options.model_copy(update={"backend": "torch"})
            first_graph = graphs["first_frame"]
            frames = functools.cache(lambda: self._calibration_frames(prepared.resized.shape[:2]))
            first = self.open_backend(first_graph.module, first_graph.spec, options,
                                      calibration=lambda: [(x,) for _, x in frames()])  # fmt: skip
            following = None
            if "next_frame" in graphs:
                following = self.open_backend(
                    graphs["next_frame"].module, graphs["next_frame"].spec, options,
                    calibration=lambda: self._fusion_calibration(first_graph.module, frames()),
                )  # fmt: skip
            self._backends[size] = (first, following)
        return self._backends[size]

    def _calibration_frames(self, size: tuple[int, int]) -> list[tuple[np.ndarray, torch.Tensor]]:
        """int8's calibration frames: :data:`CALIBRATION_FRAMES` frames of the synthetic
        training sequence :data:`CALIBRATION_SEED`, rendered at the input size ``size`` (h, w)
        inside the padding (so fitting them into ``scale`` leaves them as they are), then
        prepared as ``preprocess`` prepares frames: ``(resized BGR, input [1, 3, H', W'])``
        each, on the CPU."""
        from synthetic.generator import generate

        height, width = size
        out = []
        for rendered in generate(CALIBRATION_SEED, CALIBRATION_FRAMES, width, height):
            resized = vpsnet.resize_frame(rendered.image, self.scale)  # type: ignore[arg-type]
            if resized.shape[:2] != (height, width):  # rounding: fit exactly
                resized = cv2.resize(resized, (width, height), interpolation=cv2.INTER_LINEAR)
            out.append((resized, vpsnet.normalise(resized, "cpu")))
        return out

    @torch.inference_mode()
    def _fusion_calibration(
        self, first_graph: torch.nn.Module, frames: list[tuple[np.ndarray, torch.Tensor]]
    ) -> Calibration:
        """The next-frame graph's calibration inputs: each calibration frame with the frame
        before it's pyramid (fp32 torch) and the flow to it, as the stage computes it."""
        out = []
        for (previous, x_previous), (resized, x) in itertools.pairwise(frames):
            x, x_previous = x.to(self.device), x_previous.to(self.device)
            pyramid = first_graph(x_previous)[: len(LEVELS)]
            if self.flow == "dis":
                flow = self._dis_flow(resized, previous, x.shape[2:])
            elif self.flow == "flownet2":
                flow = self._flownet2_flow(x, x_previous)
            else:
                flow = x.new_zeros(1, 2, *x.shape[2:])
            out.append(tuple(t.cpu() for t in (x, *pyramid, flow)))
        return out

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
        """A gap of more than ``max_gap`` frames starts a new video: the pyramid goes now,
        the tracks when the next frame (marked ``new_video``) reaches ``postprocess``."""
        if missing > self.max_gap:
            self.videos.pop(source_id, None)

    def on_source_end(self, source_id: str) -> None:
        """The source's last frame has passed every part: its state in each goes."""
        self._previous.pop(source_id, None)
        self.videos.pop(source_id, None)
        self.tracks.pop(source_id, None)

    def _dis_flow(
        self, resized: np.ndarray, previous: np.ndarray, padded: torch.Size
    ) -> torch.Tensor:
        """[1, 2, H', W'] DIS flow from ``resized`` to ``previous`` (input pixels), zero in the
        padding up to ``padded`` (H', W')."""
        dense = backward_flow(resized, previous, cv2.DISOPTICAL_FLOW_PRESET_FAST,
                              scale=self.flow_scale)  # fmt: skip
        flow = torch.zeros(1, 2, *padded)
        height, width = resized.shape[:2]
        flow[0, :, :height, :width] = torch.from_numpy(dense).permute(2, 0, 1)
        return flow.to(self.device)

    def _flownet2_flow(self, images: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        """[N, 2, H', W'] FlowNet2 flow from each input [N, 3, H', W'] to its previous one, on
        the de-normalised inputs, in one call."""
        current, reference = vpsnet.denormalise(images), vpsnet.denormalise(previous)
        with torch.inference_mode():
            return vpsnet.flownet2_flow(self.flownet2, current, reference)  # type: ignore[arg-type]

    def preprocess(self, frame: Frame) -> Frame:
        """BGR frame -> ``VPSNetInput``: fitted into ``scale``, normalised, padded, on the
        device; with flow "dis" (and fusion), the DIS flow to the source's previous frame."""
        image, resized = self.bundle.preprocess(frame.image, self.device)
        flow, reference = None, None
        before = self._previous.get(frame.source_id)
        if before is not None:
            reference, previous = before
            dis = self.flow == "dis" and self.model.config.fusion
            if dis and previous.shape == resized.shape:
                flow = self._dis_flow(resized, previous, image.shape[2:])
        self._previous[frame.source_id] = (frame.index, resized)
        frame.results[self.name] = VPSNetInput(image, resized, frame.image.shape[:2], flow,
                                               reference)  # fmt: skip
        return frame

    def infer(self, frame: Frame) -> Frame:
        """``VPSNetInput`` -> ``VPSNetRaw``: the first-frame graph on a video's first frame,
        else the next-frame graph with the previous frame's pyramid and the flow to it."""
        return self.infer_batch([frame])[0]

    def infer_batch(self, frames: list[Frame]) -> list[Frame]:
        """``infer`` on several frames (any sources, each source's in order), in rounds of at
        most one frame per source (a source's next frame fuses this one's pyramid): per round
        and input size, one call for the first frames and one for the later ones, each frame
        bringing its own video's pyramid and flow."""
        for group in self.rounds(frames):
            self._infer_round(group)
        return frames

    def _infer_round(self, frames: list[Frame]) -> None:
        """``infer`` on frames of distinct sources."""
        prepared = [intermediate(f, self.name, VPSNetInput, self.name) for f in frames]
        videos, new = [], []
        for f in frames:
            video = self.videos.get(f.source_id)
            new.append(video is None)
            if video is None:
                video = self.videos[f.source_id] = _Video()
                self.counts["new_videos"] += 1
            videos.append(video)
        fusion = self.model.config.fusion
        first = [
            not fusion or video.pyramid is None or video.size != tuple(p.image.shape[2:])
            for video, p in zip(videos, prepared, strict=True)
        ]  # a video whose frames change size starts over: the graphs fuse equal sizes
        keys = [(first[i], tuple(p.image.shape)) for i, p in enumerate(prepared)]
        for members in self.alike(keys):
            backends = self.backends(prepared[members[0]])  # outside inference mode: exports
            with torch.inference_mode():
                x = torch.cat([prepared[i].image for i in members])
                if first[members[0]]:
                    flow = x.new_zeros(len(members), 2, *x.shape[2:])
                    outputs = backends[0](x)
                else:
                    flow = self._next_flows([prepared[i] for i in members],
                                            [videos[i] for i in members], x)  # fmt: skip
                    pyramids = [videos[i].pyramid for i in members]
                    reference = [torch.cat(level) for level in zip(*pyramids, strict=True)]
                    outputs = backends[1](x, *reference, flow)  # type: ignore[misc]
            for row, i in enumerate(members):
                raw = vpsnet.raw_outputs(tuple(out[row : row + 1] for out in outputs))
                video, frame = videos[i], frames[i]
                video.pyramid = raw["pyramid"]  # type: ignore[assignment]
                video.previous, video.index = prepared[i].resized, frame.index
                video.size = tuple(x.shape[2:])
                if self.flow == "flownet2":
                    video.previous_input = prepared[i].image
                self.counts["frames"] += 1
                frame.results[self.name] = VPSNetRaw(
                    prepared[i].image, prepared[i].resized.shape[:2], prepared[i].frame_size,
                    raw, flow[row : row + 1], new[i],
                )  # fmt: skip

    def _next_flows(
        self, prepared: list[VPSNetInput], videos: list[_Video], images: torch.Tensor
    ) -> torch.Tensor:
        """[N, 2, H', W'] from each later frame to the one its video's pyramid is of:
        ``preprocess``'s DIS flow when it is to that frame (else, a frame having been lost
        between the parts, DIS here), FlowNet2 in one call, or zero."""
        if self.flow == "dis":
            flows = []
            for p, video in zip(prepared, videos, strict=True):
                padded = images.shape[2:]
                if p.flow is not None and p.reference == video.index:
                    flows.append(p.flow)
                elif video.previous is not None and video.previous.shape == p.resized.shape:
                    flows.append(self._dis_flow(p.resized, video.previous, padded))
                else:
                    flows.append(images.new_zeros(1, 2, *padded))
            return torch.cat(flows)
        if self.flow == "flownet2":
            previous = torch.cat([v.previous_input for v in videos])  # type: ignore[misc]
            return self._flownet2_flow(images, previous)
        return images.new_zeros(len(images), 2, *images.shape[2:])

    def postprocess(self, frame: Frame) -> Frame:
        """``VPSNetRaw`` -> ``PanopticSegmentation`` at frame size: proposals, box, track and
        mask heads, tracking against the source's memory, panoptic fusion."""
        raw = intermediate(frame, self.name, VPSNetRaw, self.name)
        state = self.tracks.get(frame.source_id)
        if state is None or raw.new_video:
            state = self.tracks[frame.source_id] = vpsnet.VideoState()
        out = self.model.inference(raw.image, raw.size, state, raw.flow, raw.outputs)
        state.pyramid = None  # infer keeps the reference; here only the tracks matter
        frame.results[self.name] = self.segmentation(out.maps, raw.frame_size)
        return frame

    def segmentation(
        self, maps: vpsnet.PanopticMaps, size: tuple[int, int]
    ) -> PanopticSegmentation:
        """The model's maps (network resolution) -> segments at frame ``size`` (nearest)."""
        num_stuff = self.model.config.num_stuff
        return PanopticSegmentation(
            *vpsnet.frame_segments(maps, self.category_ids, num_stuff, size)
        )

    def status(self) -> dict[str, int]:
        return dict(self.counts)

"""Video translation: restyle frames with an image-to-image network, without flicker.

The ``translate`` stage runs any network of ``models.translation`` (multistyle26, vintagify,
or the user's fast-style / CycleGAN / pix2pix checkpoint) on each frame, optionally at a
smaller working size, then makes the result temporally consistent (flow-guided blending, or
Lai et al.'s blind consistency network) and puts it on the whole frame or only inside / outside
the masks of another branch (e.g. stylise only the people YolactEdge found).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import cv2
import numpy as np
import torch

from models import translation
from models.backends import Calibration
from models.translation.consistency import FlowBlend
from pipeline.config import register
from pipeline.errors import ConfigError
from pipeline.frame import Frame
from pipeline.results import Detections
from pipeline.stage import References
from stages.intermediate import intermediate
from stages.model_stage import ModelStage, bundled_frames, model_error

log = logging.getLogger("framegraph")


@dataclass
class Translated:
    """What ``translate`` did to a frame.

    Attributes:
        network: the network's name.
        region: ``frame``, ``inside`` or ``outside``.
        coverage: fraction of the frame's pixels replaced by the translation (0..1).
        consistency: the temporal consistency method applied (``off`` on a source's first
            frame after a gap, where there is nothing to be consistent with).
    """

    network: str
    region: str
    coverage: float
    consistency: str

    def to_json(self) -> dict:
        return {"network": self.network, "region": self.region,
                "coverage": round(self.coverage, 4), "consistency": self.consistency}  # fmt: skip


@dataclass
class _Work:
    """A frame at the working size (BGR uint8) and, once ``infer`` ran, its translation."""

    image: np.ndarray
    translated: np.ndarray | None = None


@register("translate")
class Translate(ModelStage):
    """Replaces the frame image by its translation.

    Args:
        network: ``multistyle26``, ``vintagify``, ``transformer_net``, ``resnet_9blocks``,
            ``resnet_6blocks``, ``unet_128`` or ``unet_256``.
        weights: checkpoint of the official layout (needed for the last five).
        style: multistyle26: a style index 0..25, or ``{index: weight}`` to mix styles.
        norm: junyanz generators: ``instance`` or ``batch`` (default: upstream's, instance
            for resnets as CycleGAN trains them, batch for U-Nets as pix2pix does).
        dropout: junyanz generators trained with dropout (their key layout differs; default:
            upstream's, off for resnets, on for U-Nets).
        size: translate (and make consistent) at this shorter side, then resize to the
            frame; None = frame size.
        consistency: ``off``, ``flow`` (flow-guided blending) or ``blind`` (Lai et al. 2018,
            needs ``consistency_weights``).
        alpha: ``flow``: weight of the motion-compensated previous output (0..1).
        flow_preset: ``flow``: DIS preset, ``ultrafast``, ``fast`` or ``medium``.
        consistency_weights: ``blind``: the official ECCV18_blind_consistency.pth.
        region: ``frame`` (all of it), ``inside`` or ``outside`` the masks of ``masks``.
        masks: name of the stage whose Detections masks define the region.
        classes: only masks of these class names (default: all).
        feather: soft edge of the region, pixels.
        **options: the run options (``models.backends.RunOptions``) of the network (the
            onnxruntime export has dynamic height and width); ``auto`` measures at the
            working size when the stage opens. The blind consistency network always runs
            in torch.
    """

    consumes = ()  # Detections when the region comes from masks (set per instance)
    produces = (Translated,)
    references: ClassVar[References] = {"masks": (Detections,)}
    stateful = True
    family = "translation"
    int8 = True
    steps = ("preprocess", "infer", "postprocess")
    stateful_steps = frozenset({"postprocess"})  # the consistency state of each source

    def __init__(
        self,
        network: str = "multistyle26",
        weights: str | None = None,
        style: int | dict[int, float] = 7,
        norm: Literal["instance", "batch"] | None = None,
        dropout: bool | None = None,
        size: int | None = None,
        consistency: Literal["off", "flow", "blind"] = "flow",
        alpha: float = 0.7,
        flow_preset: Literal["ultrafast", "fast", "medium"] = "fast",
        consistency_weights: str | None = None,
        region: Literal["frame", "inside", "outside"] = "frame",
        masks: str | None = None,
        classes: list[str] | None = None,
        feather: int = 3,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        if network not in translation.NETWORKS:
            raise ConfigError(f"translate: network must be one of {list(translation.NETWORKS)}")
        if region != "frame" and masks is None:
            raise ConfigError(f"translate: region {region!r} needs masks (a stage name)")
        if consistency == "blind" and consistency_weights is None:
            raise ConfigError("translate: consistency blind needs consistency_weights")
        if consistency == "flow" and not 0.0 <= alpha < 1.0:
            raise ConfigError("translate: alpha must be in [0, 1)")
        if (norm is not None or dropout is not None) and not network.startswith(("resnet", "unet")):
            raise ConfigError(
                f"translate: norm and dropout are junyanz generator options, not {network}'s"
            )
        if size is not None and size < 16:
            raise ConfigError("translate: size must be at least 16")
        self.network, self.weights, self.style = network, weights, style
        self.generator_options = {"norm": norm, "use_dropout": dropout}
        self.size, self.consistency = size, consistency
        self.alpha, self.flow_preset = alpha, flow_preset
        self.consistency_weights = consistency_weights
        self.region, self.masks, self.classes = region, masks, classes
        if region != "frame":
            self.consumes = (Detections,)
        self.feather = feather
        self._consistency: dict[str, object] = {}

    def open(self) -> None:
        self.check_options()
        options = {k: v for k, v in self.generator_options.items() if v is not None}
        try:
            self.model = translation.load(self.weights, self.network, self.style, **options)
            self.blind_net = (
                translation.load_blind_consistency(self.consistency_weights).to(self.device)
                if self.consistency == "blind"
                else None
            )
        except (OSError, ValueError) as error:
            raise model_error(self.kind, error) from None
        self.translator = self.model.module
        net = self.model.graphs(*self._example_size())["net"]
        self.backend = self.open_backend(net.module, net.spec, calibration=self.calibration)

    def calibration(self) -> Calibration:
        """int8's calibration inputs: every 50th frame of the bundled street clip at the
        working size, as the network sees them (RGB in 0..1, padded)."""
        frames = bundled_frames("pedestrians.mp4", every=50)
        return [(self.model.preprocess([self.working_image(f.image)]),) for f in frames]

    def _example_size(self) -> tuple[int, int]:
        """(height, width) the backends are measured at: a 16:9 frame at the working size,
        padded to the network's multiple."""
        height = self.size or 360
        width = round(height * 16 / 9)
        multiple = self.translator.multiple
        return height + -height % multiple, width + -width % multiple

    def on_gap(self, source_id: str, missing: int) -> None:
        self._consistency.pop(source_id, None)

    def on_source_end(self, source_id: str) -> None:
        self._consistency.pop(source_id, None)

    def _temporal(self, source_id: str, frame_side: int, work_side: int):
        """The source's consistency state; ``*_side``: the shorter side of the frame and of
        the working image."""
        state = self._consistency.get(source_id)
        if state is None:
            if self.consistency == "flow":
                # the flow at half the frame's size (FlowBlend's default), or at the whole
                # working size when that is smaller: on the bundled clip at size 288 this
                # removes more flicker (61% against 59% of the warping error) than blending
                # at the frame's size did, and costs a fifth (6 against 34 ms)
                flow_scale = min(1.0, 0.5 * frame_side / work_side)
                state = FlowBlend(self.alpha, preset=self.flow_preset, flow_scale=flow_scale)
            else:
                state = translation.BlindConsistency(self.blind_net)  # the net keeps no state
            self._consistency[source_id] = state
        return state

    @torch.inference_mode()
    def working_image(self, image: np.ndarray) -> np.ndarray:
        """BGR uint8 [H, W, 3] -> the frame at the working size (``size`` as its shorter side),
        or the frame itself."""
        height, width = image.shape[:2]
        if self.size is None or min(height, width) == self.size:
            return image
        scale = self.size / min(height, width)
        return cv2.resize(image, (round(width * scale), round(height * scale)),
                          interpolation=cv2.INTER_AREA)  # fmt: skip

    def translate(self, image: np.ndarray) -> np.ndarray:
        """BGR uint8 [h, w, 3] -> its per-frame translation, BGR uint8 [h, w, 3]."""
        return self._translate([image])[0]

    @torch.inference_mode()
    def _translate(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """Same-size BGR uint8 images -> their translations, in one network call."""
        (y,) = self.backend(self.model.preprocess(images, self.device))
        return self.model.postprocess(y, images[0].shape[:2])

    def preprocess(self, frame: Frame) -> Frame:
        """The frame at the working size, for the network."""
        frame.results[self.name] = _Work(self.working_image(frame.image))
        return frame

    def infer(self, frame: Frame) -> Frame:
        """The network on the working image."""
        return self.infer_batch([frame])[0]

    def infer_batch(self, frames: list[Frame]) -> list[Frame]:
        """``infer`` on several frames: one network call per working size among them."""
        works = [intermediate(f, self.name, _Work, self.name) for f in frames]
        for members in self.alike([work.image.shape for work in works]):
            translated = self._translate([works[i].image for i in members])
            for i, image in zip(members, translated, strict=True):
                works[i].translated = image
        return frames

    def region_weight(self, frame: Frame) -> np.ndarray | None:
        """float32 [H, W, 1]: how much of the translation each pixel takes (None: all)."""
        if self.region == "frame":
            return None
        found = frame.results.get(self.masks)
        height, width = frame.image.shape[:2]
        inside = np.zeros((height, width), np.float32)
        if isinstance(found, Detections) and found.masks is not None and len(found):
            keep = [i for i in range(len(found))
                    if self.classes is None or found.label(i) in self.classes]  # fmt: skip
            if keep:
                inside = found.masks[keep].any(axis=0).astype(np.float32)
        elif not isinstance(found, Detections):
            log.warning("translate: frame %s#%d has no %r masks", frame.source_id, frame.index,
                        self.masks)  # fmt: skip
        if self.feather > 0:
            inside = cv2.GaussianBlur(inside, (0, 0), self.feather)
        weight = inside if self.region == "inside" else 1.0 - inside
        return weight[..., None]

    def postprocess(self, frame: Frame) -> Frame:
        """Temporal consistency per source, back to the frame's size, the region: the frame
        becomes its translation."""
        # translated and made consistent at the working size, then resized once: the
        # blending's flow, warps and mask cost a quarter at half the side, and the detail
        # the resize adds back was never translated
        done = intermediate(frame, self.name, _Work, self.name)
        work, translated = done.image, done.translated
        assert translated is not None, "infer runs before postprocess"
        method = "off"
        if self.consistency != "off":
            state = self._temporal(frame.source_id, min(frame.image.shape[:2]), min(work.shape[:2]))
            method = self.consistency if state.previous_output is not None else "off"
            translated = state(work, translated)
        height, width = frame.image.shape[:2]
        if translated.shape[:2] != (height, width):
            translated = cv2.resize(translated, (width, height), interpolation=cv2.INTER_LINEAR)
        weight = self.region_weight(frame)
        if weight is None:
            frame.image, coverage = translated, 1.0
        else:
            mixed = frame.image + weight * (translated.astype(np.float32) - frame.image)
            frame.image = np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
            coverage = float(weight.mean())
        frame.results[self.name] = Translated(self.network, self.region, coverage, method)
        return frame

"""The YolactEdge network: image mode, keyframes and non-keyframes (temporal feature reuse)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .backbone import build_backbone, selected_channels
from .config import VARIANTS, YolactEdgeConfig
from .heads import (
    SPA,
    FlowNetMini,
    FlowNetPreConvs,
    FPNPhase1,
    FPNPhase2,
    PredictionModule,
    build_proto_net,
    warp,
)


@dataclass
class KeyframeState:
    """What a keyframe leaves for the frames after it.

    Attributes:
        features: phase-1 FPN features ``[P3', P4', P5']`` (before the 3x3 convs).
        lateral: the C3 lateral, float [N, 256, H/8, W/8].
        flow_features: ``flow_net_pre_convs(lateral)``, float [N, 64, H/8, W/8] (video
            variants): computed once here instead of on every non-keyframe, as official.
    """

    features: list[Tensor]
    lateral: Tensor
    flow_features: Tensor | None = None


class YolactEdge(nn.Module):
    """YolactEdge with the official parameter names.

    Registration order follows the official module, so ``state_dict()`` lists keys in the
    checkpoints' order: backbone, proto_net, fpn_phase_1, fpn_phase_2, [spa,
    flow_net_pre_convs, flow_net], prediction_layers, semantic_seg_conv.

    Args:
        config: the variant.
    """

    def __init__(self, config: YolactEdgeConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = build_backbone(config.backbone)
        self.proto_net = build_proto_net()
        channels = selected_channels(self.backbone)
        self.fpn_phase_1 = FPNPhase1(channels)
        self.fpn_phase_2 = FPNPhase2()
        if config.video:
            self.spa = SPA()
            self.flow_net_pre_convs = FlowNetPreConvs()
            self.flow_net = FlowNetMini()
        self.prediction_layers = nn.ModuleList([PredictionModule(config.num_classes)])
        self.semantic_seg_conv = nn.Conv2d(256, config.num_classes - 1, kernel_size=1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Image mode (every frame a keyframe): the raw head outputs.

        Args:
            x: float [N, 3, 550, 550], normalised RGB (see ``preprocess``).

        Returns:
            ``loc`` [N, P, 4] box offsets, ``conf`` [N, P, C] softmax scores (background at 0),
            ``coeffs`` [N, P, 32] mask coefficients in (-1, 1), ``proto`` [N, 138, 138, 32]
            prototypes; P = 19,248 at 550.
        """
        outputs, _ = self.keyframe(x)
        return outputs

    def keyframe(
        self, x: Tensor, logits: bool = False
    ) -> tuple[tuple[Tensor, Tensor, Tensor, Tensor], KeyframeState]:
        """Full backbone; also returns the state later non-keyframes warp from.

        Args:
            x: as for :meth:`forward`.
            logits: return class logits instead of softmax scores (training).
        """
        c3, c4, c5 = self.backbone(x)
        features, lateral = self.fpn_phase_1(c3, c4, c5)
        flow_features = self.flow_net_pre_convs(lateral) if self.config.video else None
        state = KeyframeState(features, lateral, flow_features)
        return self.pyramid_heads(features, logits), state

    def non_keyframe(
        self, x: Tensor, key: KeyframeState, return_flow: bool = False, logits: bool = False
    ) -> (
        tuple[Tensor, Tensor, Tensor, Tensor] | tuple[tuple[Tensor, Tensor, Tensor, Tensor], Tensor]
    ):
        """Partial backbone to C3, flow to the keyframe, warped P4'/P5', rebuilt P3', SPA.

        Args:
            x: the current frame, as for :meth:`forward`.
            key: the last keyframe's state (warping is always from it, never chained). Its
                ``lateral`` is not needed when ``flow_features`` is set.
            return_flow: also return the stride-16 flow [N, 2, h, w] (normalised x 8).
            logits: return class logits instead of softmax scores (training).
        """
        features, flow = self.warped_features(x, key)
        outputs = self.pyramid_heads(features, logits)
        return (outputs, flow) if return_flow else outputs

    def warped_features(self, x: Tensor, key: KeyframeState) -> tuple[list[Tensor], Tensor]:
        """The non-keyframe's phase-1 features ``[P3', P4', P5']`` and its stride-16 flow.

        P4' and P5' are the keyframe's, warped by the estimated flow, scaled, biased and
        refined by SPA; P3' is the current C3 lateral plus the upsampled warped P4'.
        """
        if not self.config.video:
            raise RuntimeError(f"{self.config.name} has no video modules (use a *_vid_* variant)")
        (c3,) = self.backbone(x, partial=True)
        lateral = self.fpn_phase_1.lat_layers[-1](c3)
        key_flow = key.flow_features
        if key_flow is None:
            key_flow = self.flow_net_pre_convs(key.lateral)
        flows = self.flow_net(self.flow_net_pre_convs(lateral), key_flow)
        warped = [
            warp(feature, flow) * scale + bias
            for (flow, scale, bias), feature in zip(flows, key.features[1:], strict=True)
        ]
        p3 = F.interpolate(warped[0], size=c3.shape[-2:], mode="bilinear", align_corners=False)
        p3 = p3 + lateral
        p4, p5 = self.spa(lateral, *warped)
        return [p3, p4, p5], flows[0][0]

    def pyramid_heads(
        self, features: list[Tensor], logits: bool = False
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """FPN phase 2 and the heads on phase-1 features ``[P3', P4', P5']``."""
        return self._heads(self.fpn_phase_2(*features), logits)

    def _heads(
        self, pyramid: list[Tensor], logits: bool = False
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        proto = F.relu(self.proto_net(pyramid[0])).permute(0, 2, 3, 1).contiguous()
        head = self.prediction_layers[0]
        locs, confs, coeffs = zip(*(head(level) for level in pyramid), strict=True)
        conf = torch.cat(confs, dim=1)
        conf = conf if logits else F.softmax(conf, dim=-1)
        return torch.cat(locs, dim=1), conf, torch.cat(coeffs, dim=1), proto


def build_model(
    variant: str = "yolact_edge_mobilenetv2", class_names: tuple[str, ...] | None = None
) -> YolactEdge:
    """A YolactEdge with random weights.

    Args:
        variant: an official config name (see ``config.VARIANTS``).
        class_names: replaces the variant's classes (for models trained on other data).
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown YolactEdge variant {variant!r}; one of {sorted(VARIANTS)}")
    config = VARIANTS[variant]
    if class_names is not None:
        config = YolactEdgeConfig(config.name, config.backbone, tuple(class_names), config.video)
    return YolactEdge(config)

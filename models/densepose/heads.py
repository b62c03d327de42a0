"""``roi_heads``: the box head and predictor, the DensePose decoder, head and predictor."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import batched_nms, roi_align

from .backbone import Conv2d
from .config import COARSE_CHANNELS, NUM_PATCHES
from .rpn import apply_deltas, clip_boxes

BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
"""Box-head delta weights (``ROI_BOX_HEAD.BBOX_REG_WEIGHTS``)."""


def _rois(boxes: list[Tensor]) -> Tensor:
    """Per-image boxes -> [R, 5] (image index, x0, y0, x1, y1), as roi_align wants."""
    return torch.cat(
        [torch.cat([torch.full_like(b[:, :1], i), b], dim=1) for i, b in enumerate(boxes)]
    )


def assign_levels(boxes: Tensor, min_level: int = 2, max_level: int = 5) -> Tensor:
    """detectron2's FPN level of each box: ``floor(4 + log2(sqrt(area) / 224 + 1e-8))``,
    clamped to [min_level, max_level] (canonical box 224 px on level 4).

    Args:
        boxes: [R, 4] xyxy in input pixels.

    Returns:
        int64 [R], the level index from 0 (= P``min_level``).
    """
    sizes = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).sqrt()
    levels = torch.floor(4 + torch.log2(sizes / 224 + 1e-8))
    return levels.clamp(min_level, max_level).long() - min_level


def box_pooler(features: list[Tensor], boxes: list[Tensor]) -> Tensor:
    """7x7 ROIAlign (aligned=False, sampling 2) of each box on its level of P2..P5.

    Args:
        features: P2..P5 [N, C, H/s, W/s], s = 4, 8, 16, 32.
        boxes: per image [R_i, 4] xyxy in input pixels.

    Returns:
        [sum R_i, C, 7, 7], boxes in order.
    """
    rois = _rois(boxes)
    levels = assign_levels(rois[:, 1:])
    out = rois.new_zeros(len(rois), features[0].shape[1], 7, 7)
    for level, feature in enumerate(features):
        index = torch.nonzero(levels == level).squeeze(1)
        if len(index):
            out[index] = roi_align(
                feature,
                rois[index],
                7,
                spatial_scale=1.0 / 2 ** (level + 2),
                sampling_ratio=2,
                aligned=False,
            )
    return out


class FastRCNNConvFCHead(nn.Module):
    """``box_head``: flatten [R, 256, 7, 7] (C, H, W order) -> fc1 -> ReLU -> fc2 -> ReLU."""

    def __init__(self, in_features: int = 256 * 7 * 7, dim: int = 1024) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, dim)
        self.fc2 = nn.Linear(dim, dim)
        for layer in (self.fc1, self.fc2):  # detectron2's c2_xavier_fill
            nn.init.kaiming_uniform_(layer.weight, a=1)
            nn.init.zeros_(layer.bias)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.fc2(F.relu(self.fc1(x.flatten(1)))))


class FastRCNNOutputLayers(nn.Module):
    """``box_predictor``: class logits [R, 2] = (person, background), background LAST as in
    detectron2 (torchvision puts it first), and one class's deltas [R, 4]."""

    def __init__(self, dim: int = 1024, num_classes: int = 1) -> None:
        super().__init__()
        self.cls_score = nn.Linear(dim, num_classes + 1)
        self.bbox_pred = nn.Linear(dim, num_classes * 4)
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        nn.init.zeros_(self.cls_score.bias)
        nn.init.zeros_(self.bbox_pred.bias)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.cls_score(x), self.bbox_pred(x)


class _ConvReLU(nn.Conv2d):
    """A conv with its ReLU inside, so a chain's indices count convs and upsamples only."""

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(super().forward(x))


class Decoder(nn.Module):
    """Panoptic-FPN style merge of P2..P5 into one stride-4 map (``roi_heads.decoder``).

    Level ``p{k}`` runs max(1, k - 2) x [3x3 conv + ReLU (+ bilinear x2 when k > 2)], so every
    branch lands on stride 4; the sum goes through the 1x1 ``predictor``. The upsamples sit
    between the convs in one Sequential, hence keys ``p4.0`` and ``p4.2``.
    """

    def __init__(self, channels: int = 256, out_channels: int = 256) -> None:
        super().__init__()
        for level in (2, 3, 4, 5):
            ops: list[nn.Module] = []
            for _ in range(max(1, level - 2)):
                ops.append(_ConvReLU(channels, channels, 3, padding=1))
                if level != 2:
                    ops.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
            self.add_module(f"p{level}", nn.Sequential(*ops))
        self.predictor = nn.Conv2d(channels, out_channels, 1)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):  # detectron2's c2_msra_fill
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)

    def forward(self, features: list[Tensor]) -> Tensor:
        """P2..P5 -> [N, 256, H/4, W/4]."""
        x = self.p2(features[0])
        for level, feature in zip((3, 4, 5), features[1:4], strict=True):
            x = x + getattr(self, f"p{level}")(feature)
        return self.predictor(x)


class DensePoseV1ConvXHead(nn.Module):
    """``body_conv_fcn1..n``: 3x3 conv (bias) + ReLU each; [R, C, 28, 28] -> [R, dim, 28, 28]."""

    def __init__(self, in_channels: int = 256, dim: int = 512, num_convs: int = 8) -> None:
        super().__init__()
        self.num_convs = num_convs
        for i in range(num_convs):
            layer = nn.Conv2d(in_channels if i == 0 else dim, dim, 3, padding=1)
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(layer.bias)
            self.add_module(f"body_conv_fcn{i + 1}", layer)

    def forward(self, x: Tensor) -> Tensor:
        for i in range(self.num_convs):
            x = F.relu(getattr(self, f"body_conv_fcn{i + 1}")(x))
        return x


def _conv_gn_relu(in_channels: int, out_channels: int, kernel: int, dilation: int = 1) -> list:
    pad = dilation if kernel == 3 else 0
    return [
        nn.Conv2d(in_channels, out_channels, kernel, padding=pad, dilation=dilation, bias=False),
        nn.GroupNorm(32, out_channels),
        nn.ReLU(),
    ]


class _ASPPPooling(nn.Sequential):
    """Global average -> 1x1 conv + GN + ReLU, broadcast back by bilinear upsampling."""

    def forward(self, x: Tensor) -> Tensor:
        return F.interpolate(
            super().forward(x), size=x.shape[-2:], mode="bilinear", align_corners=False
        )


class ASPP(nn.Module):
    """DeepLabV3 atrous pyramid: 1x1, three 3x3 at ``rates`` and image pooling, each with
    GroupNorm(32) + ReLU, concatenated and projected by a 1x1 conv (no bias) + ReLU.

    The official rates are 6, 12 and 56; on a 28x28 ROI the rate-56 branch only sees its
    own centre tap (the others fall in the zero padding), kept for weight compatibility.
    """

    def __init__(self, channels: int = 256, rates: tuple[int, int, int] = (6, 12, 56)) -> None:
        super().__init__()
        branches = [nn.Sequential(*_conv_gn_relu(channels, channels, 1))]
        branches += [nn.Sequential(*_conv_gn_relu(channels, channels, 3, r)) for r in rates]
        branches.append(
            _ASPPPooling(nn.AdaptiveAvgPool2d(1), *_conv_gn_relu(channels, channels, 1))
        )
        self.convs = nn.ModuleList(branches)
        self.project = nn.Sequential(nn.Conv2d(5 * channels, channels, 1, bias=False), nn.ReLU())

    def forward(self, x: Tensor) -> Tensor:
        return self.project(torch.cat([branch(x) for branch in self.convs], dim=1))


class DensePoseDeepLabHead(nn.Module):
    """``ASPP`` then ``body_conv_fcn1..n``: 3x3 conv (no bias) + GroupNorm(32) + ReLU each;
    [R, C, 28, 28] -> [R, dim, 28, 28]."""

    def __init__(self, in_channels: int = 256, dim: int = 512, num_convs: int = 8) -> None:
        super().__init__()
        self.ASPP = ASPP(in_channels)
        self.num_convs = num_convs
        for i in range(num_convs):
            layer = Conv2d(
                in_channels if i == 0 else dim,
                dim,
                3,
                padding=1,
                bias=False,
                norm=nn.GroupNorm(32, dim),
            )
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
            self.add_module(f"body_conv_fcn{i + 1}", layer)

    def forward(self, x: Tensor) -> Tensor:
        x = self.ASPP(x)
        for i in range(self.num_convs):
            x = F.relu(getattr(self, f"body_conv_fcn{i + 1}")(x))
        return x


class DensePoseChartPredictor(nn.Module):
    """``densepose_predictor``: four ConvTranspose2d (k4, s2, p1) then bilinear x2.

    [R, dim, 28, 28] -> coarse_segm [R, 2, 112, 112], fine_segm / u / v [R, 25, 112, 112]
    (raw logits and raw U / V regressions, in the box's own 112x112 frame).
    """

    def __init__(self, in_channels: int = 512) -> None:
        super().__init__()
        patches = NUM_PATCHES + 1
        for name, out in (
            ("ann_index_lowres", COARSE_CHANNELS),
            ("index_uv_lowres", patches),
            ("u_lowres", patches),
            ("v_lowres", patches),
        ):
            layer = nn.ConvTranspose2d(in_channels, out, 4, stride=2, padding=1)
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(layer.bias)
            self.add_module(name, layer)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        def up(layer: nn.Module) -> Tensor:
            return F.interpolate(layer(x), scale_factor=2, mode="bilinear", align_corners=False)

        return {
            "coarse_segm": up(self.ann_index_lowres),
            "fine_segm": up(self.index_uv_lowres),
            "u": up(self.u_lowres),
            "v": up(self.v_lowres),
        }


class DensePoseROIHeads(nn.Module):
    """``roi_heads``, registered in detectron2's order: box_head, box_predictor, decoder,
    densepose_head, densepose_predictor.

    Args:
        head: "v1convx" or "deeplab".
        head_dim: width of the DensePose head's convs.
        head_convs: how many stacked convs.
        box_head_dim: width of the box head's fully connected layers.
    """

    def __init__(
        self, head: str, head_dim: int = 512, head_convs: int = 8, box_head_dim: int = 1024
    ) -> None:
        super().__init__()
        heads = {"v1convx": DensePoseV1ConvXHead, "deeplab": DensePoseDeepLabHead}
        if head not in heads:
            raise ValueError(f"unknown DensePose head {head!r}; one of {sorted(heads)}")
        self.box_head = FastRCNNConvFCHead(dim=box_head_dim)
        self.box_predictor = FastRCNNOutputLayers(box_head_dim)
        self.decoder = Decoder()
        self.densepose_head = heads[head](256, head_dim, head_convs)
        self.densepose_predictor = DensePoseChartPredictor(head_dim)

    def box_outputs(self, features: list[Tensor], proposals: list[Tensor]) -> tuple[Tensor, Tensor]:
        """Raw box-head outputs for the proposals of all images, in order.

        Args:
            features: P2..P5 (P6 is ignored if given).
            proposals: per image [R_i, 4] xyxy in input pixels.

        Returns:
            class logits [sum R_i, 2] (person, background) and deltas [sum R_i, 4].
        """
        return self.box_predictor(self.box_head(box_pooler(features[:4], proposals)))

    def detections(
        self,
        logits: Tensor,
        deltas: Tensor,
        proposals: list[Tensor],
        image_sizes: list[tuple[int, int]],
        score_thresh: float = 0.05,
        nms_thresh: float = 0.5,
        topk: int = 100,
    ) -> list[tuple[Tensor, Tensor]]:
        """detectron2's ``fast_rcnn_inference``: softmax, drop the background column, decode
        with (10, 10, 5, 5), clip to the image, keep scores > ``score_thresh``, NMS, best
        ``topk``.

        Returns:
            per image (boxes float32 [K, 4] xyxy in input pixels, scores [K]), best first.
        """
        scores = F.softmax(logits, dim=-1)[:, :-1]
        boxes = apply_deltas(deltas, torch.cat(proposals), BOX_WEIGHTS)
        out = []
        for (height, width), box, score in zip(
            image_sizes,
            boxes.split([len(p) for p in proposals]),
            scores.split([len(p) for p in proposals]),
            strict=True,
        ):
            valid = torch.isfinite(box).all(dim=1) & torch.isfinite(score).all(dim=1)
            box, score = clip_boxes(box[valid], height, width), score[valid]
            rows, classes = torch.nonzero(score > score_thresh, as_tuple=True)
            box, score = box[rows], score[rows, classes]
            keep = batched_nms(box, score, classes, nms_thresh)[:topk]
            out.append((box[keep], score[keep]))
        return out

    def densepose_outputs(self, decoded: Tensor, boxes: list[Tensor]) -> dict[str, Tensor]:
        """The chart predictor's outputs for given boxes.

        Args:
            decoded: the decoder's map [N, 256, H/4, W/4].
            boxes: per image [K_i, 4] xyxy in input pixels (the padded batch's frame).

        Returns:
            coarse_segm [sum K_i, 2, 112, 112], fine_segm, u, v [sum K_i, 25, 112, 112].
        """
        # ROIAlignV2: aligned=True (half-pixel offset), unlike the box pooler.
        pooled = roi_align(decoded, _rois(boxes), 28, 0.25, sampling_ratio=2, aligned=True)
        return self.densepose_predictor(self.densepose_head(pooled))

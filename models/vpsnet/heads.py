"""RPN, box, mask and track heads in mmdetection v1's layouts (``rpn_head``, ``bbox_head``,
``mask_head``, ``track_head``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .neck import ConvModule


class RPNHead(nn.Module):
    """3x3 conv + ReLU, then per anchor (3 per cell) one sigmoid objectness logit and four
    deltas."""

    def __init__(self, channels: int = 256, anchors: int = 3) -> None:
        super().__init__()
        self.rpn_conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.rpn_cls = nn.Conv2d(channels, anchors, 1)
        self.rpn_reg = nn.Conv2d(channels, anchors * 4, 1)
        for conv in (self.rpn_conv, self.rpn_cls, self.rpn_reg):  # mmdet normal_init(std=0.01)
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)

    def forward(self, features: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """P2..P6 -> per level logits [N, 3, H, W] and deltas [N, 12, H, W]."""
        hidden = [F.relu(self.rpn_conv(x)) for x in features]
        return [self.rpn_cls(x) for x in hidden], [self.rpn_reg(x) for x in hidden]


class SharedFCBBoxHead(nn.Module):
    """Flattened 7x7 RoI features -> two fc + ReLU -> class logits (background FIRST, as in
    mmdet) and class-specific deltas.

    ``fc_cls`` / ``fc_reg`` are registered before ``shared_fcs``, as the official state_dict
    lists them.
    """

    def __init__(self, channels: int = 256, dim: int = 1024, num_classes: int = 9) -> None:
        super().__init__()
        self.fc_cls = nn.Linear(dim, num_classes)
        self.fc_reg = nn.Linear(dim, 4 * num_classes)
        self.shared_fcs = nn.ModuleList([nn.Linear(channels * 49, dim), nn.Linear(dim, dim)])
        nn.init.normal_(self.fc_cls.weight, std=0.01)
        nn.init.normal_(self.fc_reg.weight, std=0.001)
        for fc in (self.fc_cls, self.fc_reg, *self.shared_fcs):
            nn.init.zeros_(fc.bias)
        for fc in self.shared_fcs:
            nn.init.xavier_uniform_(fc.weight)

    def forward(self, rois: Tensor) -> tuple[Tensor, Tensor]:
        """[R, C, 7, 7] -> (logits [R, K + 1], deltas [R, 4 (K + 1)])."""
        x = rois.flatten(1)
        for fc in self.shared_fcs:
            x = F.relu(fc(x))
        return self.fc_cls(x), self.fc_reg(x)


class FCNMaskHead(nn.Module):
    """14x14 RoI features -> 4 x (3x3 conv + ReLU) -> 2x2 deconv + ReLU -> 1x1 conv: one
    28x28 logit map per class (background channel included)."""

    def __init__(self, channels: int = 256, width: int = 256, num_classes: int = 9) -> None:
        super().__init__()
        widths = (channels, width, width, width)
        self.convs = nn.ModuleList(ConvModule(c, width, 3, relu=True) for c in widths)
        self.upsample = nn.ConvTranspose2d(width, width, 2, stride=2)
        self.conv_logits = nn.Conv2d(width, num_classes, 1)
        for conv in (self.upsample, self.conv_logits):  # mmdet kaiming_normal_(fan_out)
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(conv.bias)

    def forward(self, rois: Tensor) -> Tensor:
        """[R, C, 14, 14] -> [R, K + 1, 28, 28]."""
        for conv in self.convs:
            rois = conv(rois)
        return self.conv_logits(F.relu(self.upsample(rois)))


class TrackHead(nn.Module):
    """MaskTrack R-CNN's embedding: flattened 7x7 RoI features -> fc + ReLU -> fc (no ReLU,
    no normalisation); matched by dot products (see ``tracking``)."""

    def __init__(self, channels: int = 256, dim: int = 1024) -> None:
        super().__init__()
        self.fcs = nn.ModuleList([nn.Linear(channels * 49, dim), nn.Linear(dim, dim)])
        for fc in self.fcs:
            nn.init.normal_(fc.weight, std=0.01)
            nn.init.zeros_(fc.bias)

    def forward(self, rois: Tensor) -> Tensor:
        """[R, C, 7, 7] -> embeddings [R, dim]."""
        return self.fcs[1](F.relu(self.fcs[0](rois.flatten(1))))

    def match_logits(self, current: Tensor, memory: Tensor) -> Tensor:
        """Dot products of the embeddings [n, D] and [m, D] with a zero "new object" column
        first: [n, m + 1]."""
        return torch.cat([current.new_zeros(len(current), 1), current @ memory.t()], dim=1)

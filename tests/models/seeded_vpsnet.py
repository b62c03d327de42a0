"""VPSNet's seeded weights and synthetic scenario, shared by the golden recorder
(tools/golden_vpsnet.py, on the official modules) and the tests (on our port).

The same seed gives the official modules and ours the same weights (their keys are the same), and
the same functions give both the same inputs, so the recorded outputs and ours can be compared
number for number. tools/golden_flownet2.py seeds FlowNet2 with :func:`seeded_state_dict` too.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

CHANNELS = 256
LEVELS = ((8, 16), (4, 8), (2, 4), (1, 2), (1, 1))  # P2..P6 of a 32x64 input
PADDED = (64, 96)  # the padded test image (height, width)
IMAGE = (60, 90)  # before padding
NUM_STUFF = 11
NUM_SEM = 19
MATCH_COEFF = (1.0, 2.0, 10.0)
STUFF_AREA = 300  # small image, so the stuff-area limit is scaled down from 2048
IID_BASE = 10000 * 7  # video 7; frame ids 1, 2, 3
SEEDS = {"extra_neck": 0, "panopticFPN": 1, "track_head": 2}

# The synthetic video: detector class, class-logit level, mask strength of each object, and
# its box per frame (xyxy inclusive, padded-image pixels). F sits where A was; G lies inside A
# with a weak mask (kept, wins no pixel); C's pixels look like road to the semantic head; B's
# like a truck; E is new in frame 1 (a class already seen), H in frame 2 (a new class); D
# vanishes in frame 1 and comes back in frame 2.
OBJECTS = {
    "A": (3, 5.0, 6.0),
    "B": (3, 4.0, 5.0),
    "C": (1, 4.5, 8.0),
    "D": (2, 3.5, 5.0),
    "E": (1, 3.8, 5.0),
    "F": (3, 3.0, 5.0),
    "G": (8, 4.8, 0.6),
    "H": (5, 4.2, 6.0),
}
FRAMES = (
    {
        "A": (8, 10, 38, 34),
        "B": (50, 18, 80, 42),
        "C": (30, 28, 41, 56),
        "D": (70, 4, 88, 24),
        "G": (14, 14, 26, 26),
    },
    {
        "A": (18, 14, 48, 38),
        "F": (9, 10, 39, 34),
        "B": (52, 18, 82, 42),
        "C": (32, 28, 43, 56),
        "E": (4, 38, 18, 60),
        "G": (24, 18, 36, 30),
    },
    {
        "A": (20, 15, 50, 39),
        "B": (58, 20, 95, 44),
        "C": (34, 29, 45, 57),
        "D": (72, 2, 90, 22),
        "E": (6, 38, 20, 60),
        "G": (26, 19, 38, 31),
        "H": (48, 47, 80, 63),
    },
)


def seeded_state_dict(model: nn.Module, seed: int) -> dict[str, Tensor]:
    """Deterministic, well-scaled weights for every key of ``model`` (in state_dict order).

    Conv / linear weights ~ N(0, 2 / fan_in) (He: activations keep their size through the
    ReLUs, so the refined flow and the DCN offsets are O(1) pixels); 1-D ``weight`` (GroupNorm)
    1 + 0.1 N; other 1-D tensors (biases) 0.01 N (small, so the track embeddings share no large
    constant part). The official modules and ours have the same keys in the same order, so the
    same seed gives both the same weights.
    """
    generator = torch.Generator().manual_seed(seed)
    out = {}
    for key, tensor in model.state_dict().items():
        shape = tuple(tensor.shape)
        noise = torch.randn(shape, generator=generator)
        if tensor.dim() == 1 and key.endswith("weight"):
            value = 1 + 0.1 * noise
        elif tensor.dim() == 1:
            value = 0.01 * noise
        else:
            value = noise * math.sqrt(2.0 / math.prod(shape[1:]))
        out[key] = value.to(tensor.dtype)
    return out


def _smooth(generator: torch.Generator, channels: int, size: tuple[int, int], cells=(3, 4)):
    coarse = torch.randn(1, channels, *cells, generator=generator)
    return F.interpolate(coarse, size=size, mode="bilinear", align_corners=False)


def fusion_inputs() -> tuple[list[Tensor], list[Tensor], Tensor]:
    """(current P2..P6, reference P2..P6, flow [1, 2, 8, 16] in P2 pixels).

    The reference is the current pyramid shifted by one P2 pixel plus noise; the flow is
    smooth, up to about 3 pixels, and points outside the map near the borders.
    """
    generator = torch.Generator().manual_seed(100)
    current, reference = [], []
    for size in LEVELS:
        x = 0.5 * _smooth(generator, CHANNELS, size) + 0.5 * torch.randn(
            1, CHANNELS, *size, generator=generator
        )
        current.append(x)
        moved = torch.roll(x, shifts=1, dims=3)
        reference.append(moved + 0.1 * torch.randn(x.shape, generator=generator))
    height, width = LEVELS[0]
    xs = torch.linspace(-1, 1, width)[None, :].expand(height, width)
    ys = torch.linspace(-1, 1, height)[:, None].expand(height, width)
    flow = torch.stack([2.0 + 1.5 * xs * ys, -1.0 + 2.0 * torch.sin(3 * xs) * ys])[None]
    flow = flow + 0.3 * torch.randn(flow.shape, generator=generator)
    return current, reference, flow


def roi_features(boxes: Tensor) -> Tensor:
    """The fake RoI extractor: [n, 4] boxes -> [n, 256, 7, 7], a smooth function of the box
    (nearby boxes get similar features, so the track embeddings separate objects)."""
    generator = torch.Generator().manual_seed(11)
    basis = torch.randn(4, CHANNELS * 49, generator=generator)
    phase = 2 * math.pi * torch.rand(CHANNELS * 49, generator=generator)
    height, width = PADDED
    norm = boxes.float() / torch.tensor([width, height, width, height], dtype=torch.float32)
    return (0.1 * torch.sin(3 * norm @ basis + phase)).view(-1, CHANNELS, 7, 7)


def box_head_outputs(frame: int) -> tuple[Tensor, Tensor, Tensor]:
    """(proposals [R, 4], class logits [R, 9] background first, deltas [R, 36]) of one frame:
    three jittered proposals per object whose own class is likely, four background ones."""
    generator = torch.Generator().manual_seed(200 + frame)
    proposals, logits = [], []
    for name, box in FRAMES[frame].items():
        cls, level, _ = OBJECTS[name]
        for _ in range(3):
            jitter = 0.7 * torch.randn(4, generator=generator)
            proposals.append(torch.tensor(box, dtype=torch.float32) + jitter)
            row = 0.3 * torch.randn(9, generator=generator)
            row[0] = 0.0
            row[cls] = level + 0.2 * torch.randn((), generator=generator)
            logits.append(row)
    height, width = PADDED
    for _ in range(4):
        x1 = float(torch.rand((), generator=generator) * (width - 20))
        y1 = float(torch.rand((), generator=generator) * (height - 20))
        proposals.append(torch.tensor([x1, y1, x1 + 15, y1 + 12]))
        row = 0.3 * torch.randn(9, generator=generator)
        row[0] = 4.0
        logits.append(row)
    boxes = torch.stack(proposals)
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width - 1)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height - 1)
    deltas = 0.2 * torch.randn(len(boxes), 36, generator=generator)
    return boxes, torch.stack(logits), deltas


def nearest_object(frame: int, box: Tensor) -> str:
    """The name of the object of ``frame`` whose box overlaps ``box`` most (IoU)."""

    def iou(other: tuple[int, ...]) -> float:
        a, b = box.tolist(), other
        w = max(min(a[2], b[2]) - max(a[0], b[0]) + 1, 0)
        h = max(min(a[3], b[3]) - max(a[1], b[1]) + 1, 0)
        area_a = (a[2] - a[0] + 1) * (a[3] - a[1] + 1)
        return w * h / (area_a + (b[2] - b[0] + 1) * (b[3] - b[1] + 1) - w * h)

    return max(FRAMES[frame], key=lambda name: iou(FRAMES[frame][name]))


def mask_logits(frame: int, boxes: Tensor) -> Tensor:
    """Fake mask-head logits of the detections' own class: [n, 28, 28], an elliptic blob as
    strong as the object's mask strength, plus noise."""
    generator = torch.Generator().manual_seed(300 + frame)
    grid = (torch.arange(28, dtype=torch.float32) - 13.5) / 11.0
    radius = grid[:, None] ** 2 + grid[None, :] ** 2
    out = []
    for box in boxes:
        strength = OBJECTS[nearest_object(frame, box)][2]
        out.append(strength * (1 - radius) - 0.5 + 0.3 * torch.randn(28, 28, generator=generator))
    return torch.stack(out)


def semantic_logits(frame: int) -> Tensor:
    """Fake full-resolution semantic logits [19, 64, 96]: smooth positive stuff fields,
    thing channels low except inside their objects' boxes (C's box votes road, B's truck)."""
    generator = torch.Generator().manual_seed(400 + frame)
    stuff = 1.5 + 1.5 * _smooth(generator, NUM_STUFF, PADDED)[0]
    things = torch.full((NUM_SEM - NUM_STUFF, *PADDED), -1.0)
    out = torch.cat([stuff, things])
    for name, (x1, y1, x2, y2) in FRAMES[frame].items():
        cls = OBJECTS[name][0]
        window = (slice(y1, y2 + 1), slice(x1, x2 + 1))
        if name == "C":
            out[(0, *window)] += 4.0
        elif name == "B":
            out[(14, *window)] += 8.0
            out[(NUM_STUFF + cls - 1, *window)] += 2.0
        elif name != "G":
            out[(NUM_STUFF + cls - 1, *window)] += 5.0
    return out

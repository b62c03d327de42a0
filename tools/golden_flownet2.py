#!/usr/bin/env python3
"""Record FlowNet2 golden outputs from the OFFICIAL code (mcahny/vps's copy of NVIDIA
flownet2-pytorch), for tests/models/test_vpsnet_flownet2.py, and its state_dict manifest.

As tools/golden_vpsnet.py: only the files in :data:`COPIED` are written, at their own paths,
into a temporary directory outside this repository, beside stand-ins (:data:`STUBS`) for the
three CUDA packages they import; ``compute_flow`` (``PanopticFuseTrack``) and ``denormalize``
(``flow_utils``) are cut out of their files with ``ast``. CPU, float32, eval mode; weights from
``seeded_vpsnet.seeded_state_dict`` (seed :data:`SEED`), so only inputs' seeds and outputs are
stored.

The stand-ins implement the CUDA kernels' formulas in plain torch, written here independently
of the port:

- ``Correlation``: both inputs zero-padded by ``pad_size``, displacements ``stride2 * k`` for
  ``|k| <= max_displacement // stride2``, sum over channels / (kernel_size^2 * C), dy-major;
- ``Resample2d``: ``grid_sample(padding_mode="border", align_corners=True)`` at ``(x + dx,
  y + dy)``, which is the kernel's clamp-each-neighbour bilinear rule (the port gathers the
  four neighbours itself, so the two agree only if that reading of the kernel is right);
- ``ChannelNorm``: ``torch.linalg.vector_norm`` over channels.

Recorded (tests/data/vpsnet/flownet2_golden.pt):

1. ``forward``: ``FlowNet2.forward`` on :func:`flow_frames` (64 x 64, the reference a shifted,
   noisy copy of the current frame), with each sub-network's output (``flownetc``,
   ``flownets_1``, ``flownets_2``, ``flownets_d``: flow / 20 at 1/4 size).
2. ``compute_flow``: ``PanopticFuseTrack.compute_flow`` (de-normalise, stack, the official zero
   padding of a 200 x 400 input to 256 x 448, FlowNet2, crop) at ``scale_factor=1``, on
   :func:`normalised` 200 x 400 frames.

Also written: tests/data/vpsnet/flownet2.json, ``[key, shape, dtype]`` of the official
``FlowNet2(args, requires_grad=False)``'s state_dict in order.

    python tools/golden_flownet2.py --official /path/to/vps   # checkout or bare git dir
"""

from __future__ import annotations

import argparse
import ast
import importlib
import json
import math
import sys
import types
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# The weights, the inputs and where they go: the same ones the tests give the port.
from tests.models.seeded_flownet2 import (
    COMPUTE_FLOW_SIZE,
    FORWARD_SIZE,
    GOLDEN,
    MANIFEST,
    MEAN,
    SEED,
    STD,
    flow_frames,
    normalised,
)
from tests.models.seeded_vpsnet import seeded_state_dict
from tools.golden_vpsnet import extract_method, official_import_path, official_sources, on_cpu

ROOT = Path(__file__).resolve().parents[1]

FLOW_DIR = "mmdet/models/flow_modules"
COPIED = tuple(
    f"{FLOW_DIR}/{name}.py"
    for name in ("flownet2", "FlowNetC", "FlowNetS", "FlowNetSD", "FlowNetFusion", "submodules")
)
DETECTOR = "mmdet/models/detectors/panoptic_fusetrack.py"
FLOW_UTILS = "mmdet/models/utils/flow_utils.py"

# Stand-ins written by this tool (not official code) for the CUDA packages.
STUBS = {
    f"{FLOW_DIR}/__init__.py": "",
    f"{FLOW_DIR}/correlation_package/correlation.py": """
import torch.nn.functional as F
from torch import nn


class Correlation(nn.Module):
    def __init__(self, pad_size=0, kernel_size=0, max_displacement=0, stride1=1, stride2=2,
                 corr_multiply=1):
        super().__init__()
        assert kernel_size == 1 and stride1 == 1
        self.pad, self.d, self.s = pad_size, max_displacement, stride2

    def forward(self, input1, input2):
        pad, d, s = self.pad, self.d, self.s
        r = d // s
        n, c, h, w = input1.shape
        out_h, out_w = h + 2 * pad - 2 * d, w + 2 * pad - 2 * d
        p1 = F.pad(input1, (pad, pad, pad, pad))
        p2 = F.pad(input2, (pad, pad, pad, pad))
        centre = p1[:, :, d:d + out_h, d:d + out_w]
        out = input1.new_zeros(n, (2 * r + 1) ** 2, out_h, out_w)
        for tj in range(-r, r + 1):
            for ti in range(-r, r + 1):
                y2, x2 = d + tj * s, d + ti * s
                moved = p2[:, :, y2:y2 + out_h, x2:x2 + out_w]
                out[:, (tj + r) * (2 * r + 1) + (ti + r)] = (centre * moved).sum(1) / c
        return out
""",
    f"{FLOW_DIR}/resample2d_package/resample2d.py": """
import torch
import torch.nn.functional as F
from torch import nn


class Resample2d(nn.Module):
    def __init__(self, kernel_size=1, bilinear=True):
        super().__init__()
        assert kernel_size == 1 and bilinear

    def forward(self, input1, input2):
        n, _, h, w = input2.shape
        ys, xs = torch.meshgrid(torch.arange(h, dtype=input2.dtype),
                                torch.arange(w, dtype=input2.dtype), indexing="ij")
        gx = (xs + input2[:, 0]) * (2.0 / (w - 1)) - 1
        gy = (ys + input2[:, 1]) * (2.0 / (h - 1)) - 1
        grid = torch.stack([gx, gy], dim=-1)
        return F.grid_sample(input1.contiguous(), grid, mode="bilinear",
                             padding_mode="border", align_corners=True)
""",
    f"{FLOW_DIR}/channelnorm_package/channelnorm.py": """
import torch
from torch import nn


class ChannelNorm(nn.Module):
    def __init__(self, norm_deg=2):
        super().__init__()
        assert norm_deg == 2

    def forward(self, input1):
        return torch.linalg.vector_norm(input1, ord=2, dim=1, keepdim=True)
""",
}

# --------------------------------------------------------------------------- the official code


def extract_function(source: str, name: str, namespace: dict) -> types.FunctionType:
    """One module-level function, compiled on its own in ``namespace``."""
    tree = ast.parse(source)
    node = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name)
    exec(ast.get_source_segment(source, node), namespace)
    return namespace[name]


def build_official():
    """The official ``FlowNet2(args, requires_grad=False)`` as ``PanopticFuseTrack`` builds it
    (``rgb_max`` 255, fp16 off), with the seeded weights, in eval mode."""
    module = importlib.import_module(FLOW_DIR.replace("/", ".") + ".flownet2")
    args = types.SimpleNamespace(rgb_max=255.0, fp16=False)
    model = module.FlowNet2(args, requires_grad=False)
    model.load_state_dict(seeded_state_dict(model, SEED), strict=True)
    return model.eval()


def record_forward(model) -> dict:
    parts = ("flownetc", "flownets_1", "flownets_2", "flownets_d")
    seen: dict[str, Tensor] = {}
    hooks = [
        getattr(model, name).register_forward_hook(
            lambda module, args, out, name=name: seen.__setitem__(name, out[0].clone())
        )
        for name in parts
    ]
    current, reference = flow_frames(FORWARD_SIZE)
    flow = model(torch.stack([current, reference], dim=2))
    for hook in hooks:
        hook.remove()
    return {"flow": flow, **{name: seen[name] for name in parts}}


def record_compute_flow(model, sources: dict[str, str]) -> dict:
    denormalize = extract_function(sources[FLOW_UTILS], "denormalize", {})
    namespace = {"torch": torch, "F": F, "denormalize": denormalize}
    compute_flow = extract_method(sources[DETECTOR], "PanopticFuseTrack", "compute_flow", namespace)
    detector = types.SimpleNamespace(flownet2=model, mean=list(MEAN), std=list(STD))
    current, reference = flow_frames(COMPUTE_FLOW_SIZE, seed=1)
    img, ref_img = normalised(current), normalised(reference)
    flow, _ = compute_flow(detector, img.clone(), ref_img.clone(), scale_factor=1)
    return {"flow": flow}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--official", type=Path, required=True, help="checkout or git dir")
    parser.add_argument("--commit", default="138503e", help="for a git dir (default 138503e)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.set_grad_enabled(False)
    warnings.filterwarnings("ignore", category=UserWarning)
    sources, commit = official_sources(args.official, args.commit, (*COPIED, DETECTOR, FLOW_UTILS))
    with official_import_path(sources, COPIED, STUBS), on_cpu():
        model = build_official()
        layout = [[k, list(v.shape), str(v.dtype)] for k, v in model.state_dict().items()]
        golden = {
            "commit": commit,
            "seed": SEED,
            "forward": record_forward(model),
            "compute_flow": record_compute_flow(model, sources),
        }
    count = sum(math.prod(shape) for _, shape, _ in layout)
    for name, part in (("forward", golden["forward"]), ("compute_flow", golden["compute_flow"])):
        flow = part["flow"]
        print(f"{name}: flow {tuple(flow.shape)}, |flow| max {flow.abs().max():.2f} px, "
              f"median dx {flow[:, 0].median():.2f} dy {flow[:, 1].median():.2f}")  # fmt: skip
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    torch.save(golden, GOLDEN)
    MANIFEST.write_text("[\n" + ",\n".join(json.dumps(entry) for entry in layout) + "\n]\n")
    print(f"official {commit}: {len(layout)} keys, {count:,} parameters -> {MANIFEST.name}; "
          f"wrote {GOLDEN.relative_to(ROOT)} ({GOLDEN.stat().st_size / 1e3:.0f} kB)")  # fmt: skip


if __name__ == "__main__":
    main()

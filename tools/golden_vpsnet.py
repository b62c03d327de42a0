#!/usr/bin/env python3
"""Record VPSNet golden outputs from the OFFICIAL code, for tests/models/test_vpsnet_golden.py.

Needs mcahny/vps: a checkout, or a bare git directory (then ``--commit`` is read from it;
138503e was used). Only the files in :data:`COPIED` are written, at their own paths, into a
temporary directory outside this repository, beside small stand-ins for what they import
(:data:`STUBS`: registries, mmcv init helpers, the CUDA extensions); they are imported from there
and nothing of them is kept, only the numbers they produce. ``simple_test_bboxes``
(``PanopticFuseTrack``) and ``get_unified_pan_result`` (``CityscapesVps``) are cut out of their
files with ``ast`` and run on their own. CPU, float32; ``.cuda()``, ``pin_memory()``,
``get_device()`` and ``torch.cuda.current_device()`` are made no-ops / CPU while they run.

Recorded (tests/data/vpsnet/golden.pt), with weights from :func:`seeded_state_dict`:

1. ``extra_neck`` (BFPTcea, refine_level 0, conv refine, centre 0, 2 frames) on two 256-channel
   pyramids 8x16 .. 1x1 and a non-trivial flow: gather, warp, LiteFlowNetCorr, second warp,
   TCEA fusion, refine, scatter. NOT independently checked: the correlation itself. It is a
   CUDA package, replaced here by a plain-torch stand-in implementing its documented formula
   (kernel 1, displacement 4, mean over channels, 81 channels dy-major, zero outside), so
   golden and port agree on it by construction; everything around it is official.
2. ``panopticFPN`` (UPSNetFPN) on P2..P5. NOT independently checked: the deformable conv. mmdet's
   DeformConv is CUDA and is replaced by ``torchvision.ops.deform_conv2d`` (the port uses the
   same), so this pins the surrounding structure: offset convs, GroupNorm, ReLU, shared subnet,
   upsampling, concat, ``conv_pred`` and the final x4 upsampling.
3. Three video frames of the test-time tail on synthetic box-head outputs (a fake RoI extractor,
   :func:`roi_features`, and synthetic class logits / deltas / mask logits / semantic logits):
   MaskROI (its GPU NMS replaced by the official file's own pure-numpy ``py_nms``, +1 areas,
   suppress IoU > 0.5), the official track matching (``simple_test_bboxes`` with the official
   TrackHead and ``bbox_overlaps``), MaskRemoval, SegTerm, the panoptic argmax and crop, and
   ``get_unified_pan_result`` over the three frames. The scenario makes every branch run: a new
   object, a re-appearing one, two detections claiming one object (the earlier is undone and
   gets a new id), a detection dropped by MaskRemoval, a kept instance that wins no pixel (the
   official per-rank object-id shift), an instance turned into stuff, one whose semantic
   majority is another thing class, small stuff turned void, boxes clipped to the padded size
   and outputs cropped to the unpadded one.

    python tools/golden_vpsnet.py --official /path/to/vps   # checkout or bare git dir
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib
import subprocess
import sys
import tempfile
import textwrap
import types
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

if __package__ in (None, ""):  # run as a script: the repository root, for tests.models
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# The weights and the scenario, the same ones the tests give the port.
from tests.models.seeded_vpsnet import (
    CHANNELS,
    FRAMES,
    IID_BASE,
    IMAGE,
    LEVELS,
    MATCH_COEFF,
    NUM_SEM,
    NUM_STUFF,
    PADDED,
    SEEDS,
    STUFF_AREA,
    box_head_outputs,
    fusion_inputs,
    mask_logits,
    nearest_object,
    roi_features,
    seeded_state_dict,
    semantic_logits,
)

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "data" / "vpsnet"

COPIED = (
    "mmdet/models/extra_necks/bfp_tcea.py",
    "mmdet/models/utils/tcea_modules.py",
    "mmdet/models/flow_modules/flow_modules.py",
    "mmdet/models/utils/conv_module.py",
    "mmdet/models/utils/conv_ws.py",
    "mmdet/models/utils/norm.py",
    "mmdet/models/utils/deform_conv_with_offset.py",
    "mmdet/models/panoptic/upsnetFPN.py",
    "mmdet/models/utils/mask_roi.py",
    "mmdet/models/utils/upsnet/bbox/bbox_transform.py",
    "mmdet/models/utils/upsnet/nms/nms.py",
    "mmdet/models/utils/mask_removal.py",
    "mmdet/models/utils/unary_logits.py",
    "mmdet/models/track_heads/track_head.py",
    "mmdet/core/bbox/geometry.py",
    "mmdet/core/bbox/transforms.py",
)
EXTRACTED = {  # file: (class, method) cut out with ast
    "mmdet/models/detectors/panoptic_fusetrack.py": ("PanopticFuseTrack", "simple_test_bboxes"),
    "tools/dataset/cityscapes_vps.py": ("CityscapesVps", "get_unified_pan_result"),
}

# Stand-ins written by this tool (not official code) for the modules the copied files import.
STUBS = {
    "mmcv/__init__.py": "",
    "mmcv/cnn.py": """
def _noop(*args, **kwargs):
    pass

xavier_init = kaiming_init = constant_init = normal_init = uniform_init = _noop
""",
    "mmdet/models/registry.py": """
class _Registry:
    def register_module(self, cls):
        return cls

EXTRA_NECKS = PANOPTIC = HEADS = DETECTORS = NECKS = _Registry()
""",
    "mmdet/models/builder.py": "def build_loss(cfg):\n    return None\n",
    "mmdet/models/losses/__init__.py": """
def accuracy(*args, **kwargs):
    raise NotImplementedError
""",
    "mmdet/core/__init__.py": """
def _unused(*args, **kwargs):
    raise NotImplementedError

auto_fp16 = bbox_target = delta2bbox = force_fp32 = multiclass_nms = _unused
""",
    "mmdet/ops/__init__.py": """
import torch
from torch import nn
from torch.nn.modules.utils import _pair
from torchvision.ops import deform_conv2d


class DeformConv(nn.Module):
    # DCNv1 weight [out, in, k, k], no bias; offsets (dy, dx) per tap, row-major taps.
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 dilation=1, groups=1, deformable_groups=1, bias=False):
        super().__init__()
        assert groups == 1 and deformable_groups == 1 and not bias
        self.stride, self.padding = _pair(stride), _pair(padding)
        self.dilation = _pair(dilation)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, *_pair(kernel_size)))

    def forward(self, x, offset):
        return deform_conv2d(x, offset, self.weight, stride=self.stride,
                             padding=self.padding, dilation=self.dilation)


class ModulatedDeformConvPack(nn.Module):
    pass
""",
    "mmdet/models/utils/__init__.py": """
from .conv_module import ConvModule
from .deform_conv_with_offset import DeformConvWithOffset
from .tcea_modules import TCEA_Fusion
""",
    "mmdet/models/utils/attention.py": "class CBAM:\n    pass\n",
    "mmdet/models/utils/upsnet/bbox/bbox.py": """
def bbox_overlaps(*args, **kwargs):
    raise NotImplementedError
""",
    "mmdet/models/utils/upsnet/nms/cpu_nms.py": """
def cpu_nms(*args, **kwargs):
    raise NotImplementedError

cpu_soft_nms = cpu_nms
""",
    "mmdet/models/utils/upsnet/nms/gpu_nms.py": """
def gpu_nms(dets, thresh, device_id=0):
    # The CUDA kernel's rule (sort by score, +1 areas, suppress IoU > thresh), via the
    # official file's own numpy version.
    from .nms import py_nms
    return py_nms(dets, thresh)
""",
    "mmdet/models/flow_modules/__init__.py": """
from .flow_modules import LiteFlowNetCorr, WarpingLayer
""",
    "mmdet/models/flow_modules/resample2d_package/resample2d.py": """
from torch import nn


class Resample2d(nn.Module):
    pass
""",
    "mmdet/models/flow_modules/correlation_package/correlation.py": """
import itertools

import torch.nn.functional as F
from torch import nn


class Correlation(nn.Module):
    # The documented formula of the CUDA kernel for kernel_size 1, strides 1:
    # out[:, (dy + d) * (2d + 1) + (dx + d)] = sum_c x1[c, y, x] * x2[c, y + dy, x + dx] / C.
    def __init__(self, pad_size=0, kernel_size=0, max_displacement=0, stride1=1, stride2=2,
                 corr_multiply=1):
        super().__init__()
        assert kernel_size == 1 and stride1 == 1 and stride2 == 1
        assert pad_size == max_displacement
        self.d = max_displacement

    def forward(self, x1, x2):
        d = self.d
        n, c, h, w = x1.shape
        padded = F.pad(x2, (d, d, d, d))
        out = x1.new_zeros(n, (2 * d + 1) ** 2, h, w)
        for k, (dy, dx) in enumerate(itertools.product(range(2 * d + 1), repeat=2)):
            out[:, k] = (x1 * padded[:, :, dy:dy + h, dx:dx + w]).sum(1) / c
        return out
""",
    "mmdet/datasets/pipelines/flow_utils.py": "def vis_flow(*args, **kwargs):\n    pass\n",
}

# --------------------------------------------------------------------------- the official code


def official_sources(
    path: Path, commit: str, names: tuple[str, ...] = (*COPIED, *EXTRACTED)
) -> tuple[dict[str, str], str]:
    """The needed official files' (``names``) text and the commit they are from."""
    if (path / names[0]).is_file():
        text = {name: (path / name).read_text() for name in names}
        sha = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True
        )
        return text, sha.stdout.strip() or "unknown (not a git checkout)"
    git = ["git", f"--git-dir={path}"]
    sha = subprocess.run([*git, "rev-parse", commit], capture_output=True, text=True, check=True)
    text = {
        n: subprocess.run(
            [*git, "show", f"{commit}:{n}"], capture_output=True, text=True, check=True
        ).stdout
        for n in names
    }
    return text, sha.stdout.strip()


def extract_method(source: str, cls: str, method: str, namespace: dict) -> types.FunctionType:
    """One method of one class, compiled on its own in ``namespace``."""
    tree = ast.parse(source)
    node = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == cls)
    func = next(n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == method)
    exec(textwrap.dedent(ast.get_source_segment(source, func)), namespace)
    return namespace[method]


@contextlib.contextmanager
def official_import_path(
    sources: dict[str, str], copied: tuple[str, ...] = COPIED, stubs: dict[str, str] = STUBS
) -> Iterator[Path]:
    """The ``copied`` files and the ``stubs`` in a temporary tree, first on ``sys.path``;
    missing optional packages and ``tools.config.config`` as stand-ins in ``sys.modules``."""
    saved = dict(sys.modules)
    with tempfile.TemporaryDirectory(prefix="vpsnet_official_") as tmp:
        root = Path(tmp)
        for name, text in [*((n, sources[n]) for n in copied), *stubs.items()]:
            target = root / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(textwrap.dedent(text).lstrip())
        for folder in [p for p in root.rglob("*") if p.is_dir()]:
            if not (folder / "__init__.py").exists():
                (folder / "__init__.py").write_text("")
        config = types.SimpleNamespace(
            network=types.SimpleNamespace(bbox_reg_weights=(10.0, 10.0, 5.0, 5.0)),
            test=types.SimpleNamespace(max_det=100),
            dataset=types.SimpleNamespace(num_seg_classes=NUM_SEM, num_classes=9),
        )
        config_module = types.ModuleType("tools.config.config")
        config_module.config = config  # type: ignore[attr-defined]
        sys.modules["tools.config.config"] = config_module
        for optional in ("matplotlib", "matplotlib.pyplot"):
            try:
                importlib.import_module(optional)
            except ImportError:
                sys.modules[optional] = types.ModuleType(optional)
        sys.path.insert(0, tmp)
        try:
            yield root
        finally:
            sys.path.remove(tmp)
            for name in list(sys.modules):
                if name not in saved:
                    del sys.modules[name]


@contextlib.contextmanager
def on_cpu() -> Iterator[None]:
    """The official code's device calls made harmless on CPU."""
    saved = (
        torch.Tensor.cuda,
        torch.Tensor.pin_memory,
        torch.Tensor.get_device,
        torch.cuda.current_device,
        nn.Module.cuda,
    )
    torch.Tensor.cuda = lambda self, *a, **k: self  # type: ignore[method-assign]
    torch.Tensor.pin_memory = lambda self, *a, **k: self  # type: ignore[method-assign]
    torch.Tensor.get_device = lambda self: torch.device("cpu")  # type: ignore[method-assign]
    torch.cuda.current_device = lambda: "cpu"  # type: ignore[assignment]
    nn.Module.cuda = lambda self, *a, **k: self  # type: ignore[method-assign]
    try:
        yield
    finally:
        (
            torch.Tensor.cuda,
            torch.Tensor.pin_memory,
            torch.Tensor.get_device,
            torch.cuda.current_device,
            nn.Module.cuda,
        ) = saved


def layout(model: nn.Module) -> list[list]:
    return [[k, list(v.shape)] for k, v in model.state_dict().items()]


def record_fusion() -> dict:
    bfp = importlib.import_module("mmdet.models.extra_necks.bfp_tcea")
    neck = bfp.BFPTcea(
        CHANNELS, len(LEVELS), refine_level=0, refine_type="conv", nframes=2, center=0
    )
    neck.load_state_dict(seeded_state_dict(neck, SEEDS["extra_neck"]), strict=True)
    neck.eval()
    current, reference, flow = fusion_inputs()
    # the intermediate maps too, through the official submodules
    bsf, ref_bsf = neck.gather(current), neck.gather(reference)
    warped = neck.flow_warping(ref_bsf, flow)
    flow_fine = neck.liteflownet(bsf, warped, flow)
    warped2 = neck.flow_warping(warped, flow_fine)
    fused = neck.tcea_fusion(torch.stack([bsf, warped2], dim=1))
    outputs = neck(current, reference, flow)
    return {
        "layout": layout(neck),
        "flow_fine": flow_fine,
        "warp2": warped2,
        "tcea": fused,
        "outputs": list(outputs),
    }


def record_semantic() -> dict:
    fpn = importlib.import_module("mmdet.models.panoptic.upsnetFPN")
    head = fpn.UPSNetFPN(CHANNELS, 128, 4, 8, NUM_SEM, 255, 1.0)
    head.load_state_dict(seeded_state_dict(head, SEEDS["panopticFPN"]), strict=True)
    head.eval()
    current, _, _ = fusion_inputs()
    fcn_output, fcn_score = head(current[:4])
    return {"layout": layout(head), "fcn_output": fcn_output, "fcn_score": fcn_score}


class _FakeExtractor:
    """``bbox_roi_extractor``: :func:`roi_features` of the RoIs' boxes."""

    featmap_strides = (4, 8, 16, 32)
    num_inputs = 4

    def __call__(self, features: list, rois: Tensor) -> Tensor:
        return roi_features(rois[:, 1:])


class _FakeDetector:
    """The ``self`` that ``simple_test_bboxes`` needs: extractor, box head (returning the
    frame's synthetic outputs), MaskROI, TrackHead and the memory attributes."""

    def __init__(self, track_head: nn.Module, mask_roi: nn.Module) -> None:
        self.track_head, self.mask_roi_panoptic = track_head, mask_roi
        self.bbox_roi_extractor = _FakeExtractor()
        self.outputs: tuple[Tensor, Tensor] | None = None
        self.bbox_head = lambda feats: self.outputs
        self.prev_bboxes = self.prev_roi_feats = self.prev_det_labels = None


def record_video(sources: dict[str, str]) -> dict:
    geometry = importlib.import_module("mmdet.core.bbox.geometry")
    transforms = importlib.import_module("mmdet.core.bbox.transforms")
    namespace = {
        "torch": torch,
        "np": np,
        "F": F,
        "bbox2roi": transforms.bbox2roi,
        "roi2bbox": transforms.roi2bbox,
        "bbox_overlaps": geometry.bbox_overlaps,
    }
    detector_file = "mmdet/models/detectors/panoptic_fusetrack.py"
    simple_test_bboxes = extract_method(
        sources[detector_file], *EXTRACTED[detector_file], namespace
    )
    dataset_file = "tools/dataset/cityscapes_vps.py"
    config = sys.modules["tools.config.config"].config
    unified = extract_method(
        sources[dataset_file], *EXTRACTED[dataset_file], {"np": np, "config": config}
    )

    track_module = importlib.import_module("mmdet.models.track_heads.track_head")
    track_head = track_module.TrackHead(
        num_fcs=2,
        in_channels=CHANNELS,
        roi_feat_size=7,
        fc_out_channels=1024,
        match_coeff=list(MATCH_COEFF),
        bbox_dummy_iou=0,
        dynamic=True,
    )
    track_head.load_state_dict(seeded_state_dict(track_head, SEEDS["track_head"]), strict=True)
    track_head.eval()
    comp_scores: list[Tensor] = []
    compute = track_head.compute_comp_scores

    def recording(*args, **kwargs):
        result = compute(*args, **kwargs)
        comp_scores.append(result.clone())
        return result

    track_head.compute_comp_scores = recording
    mask_roi = importlib.import_module("mmdet.models.utils.mask_roi").MaskROI(
        clip_boxes=True,
        bbox_class_agnostic=False,
        top_n=100,
        num_classes=9,
        nms_thresh=0.5,
        class_agnostic=True,
        score_thresh=0.6,
    )
    removal = importlib.import_module("mmdet.models.utils.mask_removal").MaskRemoval(0.3)
    seg_term = importlib.import_module("mmdet.models.utils.unary_logits").SegTerm(NUM_SEM, 1 / 4.0)
    detector = _FakeDetector(track_head, mask_roi)
    height, width = PADDED
    im_info = np.array([[float(height), float(width), 1.0]])
    frames, segs, pans, cls_inds, obj_ids, names = [], [], [], [], [], []
    for t in range(len(FRAMES)):
        proposals, cls_score, bbox_pred = box_head_outputs(t)
        detector.outputs = (cls_score, bbox_pred)
        img_meta = [
            {
                "img_shape": (*IMAGE, 3),
                "scale_factor": 1.0,
                "filename": f"cityscapes_vps/val/img/frame{t}.png",
                "iid": IID_BASE + t + 1,
            }
        ]
        before = len(comp_scores)
        (_, det_labels, det_obj_ids, _, _, _, cls_prob, det_rois, cls_idx) = simple_test_bboxes(
            detector, [None] * 5, img_meta, [proposals], None, im_info
        )
        # simple_test's tail, as there: mask logits of the own class, removal, re-indexing,
        # SegTerm on boxes x 4 (box_scale 1/4), argmax of the softmax, crop to the image
        masks = mask_logits(t, det_rois[:, 1:])
        fcn_output = semantic_logits(t)[None]
        keep_inds, energy = removal(det_rois[:, 1:], cls_prob, masks[:, None], cls_idx, PADDED)
        kept_rois, kept_cls = det_rois[keep_inds], cls_idx[keep_inds]
        kept_ids = torch.from_numpy(det_obj_ids)[keep_inds]
        stuff, inst = seg_term(kept_cls, fcn_output, kept_rois * 4.0)
        logits = torch.cat([stuff, inst + energy], dim=1)
        panoptic = torch.max(F.softmax(logits, dim=1), dim=1)[1][0, : IMAGE[0], : IMAGE[1]]
        semantic = torch.max(F.softmax(fcn_output, dim=1), dim=1)[1][0, : IMAGE[0], : IMAGE[1]]
        frames.append(
            {
                "proposals": proposals,
                "cls_score": cls_score,
                "bbox_pred": bbox_pred,
                "det_boxes": det_rois[:, 1:].clone(),
                "det_scores": cls_prob.clone(),
                "det_classes": cls_idx.clone(),
                "det_labels": det_labels.clone(),
                "obj_ids": torch.from_numpy(det_obj_ids.astype(np.int64)),
                "comp_scores": comp_scores[before] if len(comp_scores) > before else None,
                "mask_logits": masks,
                "keep": keep_inds.clone(),
                "instance_logits": (inst + energy)[0].clone(),
                "panoptic": panoptic.clone(),
                "semantic": semantic.clone(),
            }
        )
        segs.append(semantic.numpy().astype(np.uint8))
        pans.append(panoptic.numpy().astype(np.uint8))
        cls_inds.append(kept_cls.numpy())
        obj_ids.append(kept_ids.numpy())
        names.append(f"frame{t}")
    pan_2ch = unified(None, segs, pans, cls_inds, obj_ids, STUFF_AREA, names)
    for t, name in enumerate(names):
        frames[t]["pan_2ch"] = torch.from_numpy(pan_2ch[name])
    return {"layout": layout(track_head), "frames": frames}


def describe(video: dict) -> None:
    """What the scenario exercised, for a human check."""
    for t, f in enumerate(video["frames"]):
        pan, panoptic = f["pan_2ch"].numpy(), f["panoptic"].numpy()
        names = [nearest_object(t, box) for box in f["det_boxes"]]
        print(f"frame {t}: detections {names} ids {f['obj_ids'].tolist()}")
        for channel, index in enumerate(f["keep"].tolist()):
            region = panoptic == NUM_STUFF + channel
            outcome = sorted(set(pan[region][:, 0].tolist())) if region.any() else "no pixel"
            print(f"  kept {names[index]}: {int(region.sum())} px -> class {outcome}")
        print(f"  classes {np.unique(pan[..., 0]).tolist()}, ins {np.unique(pan[..., 1]).tolist()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--official", type=Path, required=True, help="checkout or git dir")
    parser.add_argument("--commit", default="138503e", help="for a git dir (default 138503e)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.set_grad_enabled(False)
    warnings.filterwarnings("ignore", message="Default grid_sample", category=UserWarning)
    sources, commit = official_sources(args.official, args.commit)
    with official_import_path(sources), on_cpu():
        golden = {
            "commit": commit,
            "seeds": SEEDS,
            "extra_neck": record_fusion(),
            "panopticFPN": record_semantic(),
            "video": record_video(sources),
        }
    describe(golden["video"])
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "golden.pt"
    torch.save(golden, path)
    print(f"official {commit}: wrote {path.relative_to(ROOT)} ({path.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Record YolactEdge golden outputs from the OFFICIAL code, for tests/models/test_yolact_edge.py.

Needs a checkout of haotian-liu/yolact_edge (commit 873fceb was used); nothing of it is copied
into this repository, only the numbers it produces. It runs the official network on CPU (the
import-time CUDA calls are stubbed), with deterministic weights from :func:`seeded_state_dict`
loaded strictly into both implementations, on a fixed 64x96 input:

- image mode, yolact_edge_mobilenetv2: raw head outputs (loc, class logits, mask coefficient
  logits, proto);
- video mode, yolact_edge_vid_resnet50: a keyframe on frame A, then a non-keyframe on frame B
  warped from A (partial backbone, FlowNetMini, SPA);

Class scores and mask coefficients are recorded before their softmax / tanh (read off the
prediction head's ``conf_layer`` / ``mask_layer`` by :func:`head_logits`, which the tests run on
our port too): seeded weights give logits in the thousands, where a rounding difference of a
few ulps (another CPU, another thread count) would become an absolute error of 1e-3 after the
activation. Comparing the logits relative to their own scale holds on any CPU.
- the official Detect + postprocess on synthetic peaky head outputs (boxes, classes, scores,
  masks), so decoding, Fast NMS and mask assembly are pinned too.

    python tools/golden_yolact_edge.py --official /path/to/yolact_edge
"""

from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path

import numpy as np
import torch

if __package__ in (None, ""):  # run as a script: the repository root, for models and tests
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.yolact_edge.synthetic import peaky_head_outputs
from tests.models.seeded_yolact_edge import head_logits, seeded_state_dict

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "data" / "yolact_edge"
INPUT_SHAPE = (1, 3, 64, 96)


def inputs() -> tuple[torch.Tensor, torch.Tensor]:
    """Two correlated frames (B is A shifted by 2 pixels plus noise)."""
    generator = torch.Generator().manual_seed(7)
    a = torch.randn(INPUT_SHAPE, generator=generator)
    b = torch.roll(a, shifts=2, dims=3) + 0.1 * torch.randn(INPUT_SHAPE, generator=generator)
    return a, b


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--official", type=Path, required=True, help="yolact_edge checkout")
    args = parser.parse_args()
    torch.cuda.current_device = lambda: 0  # the official module calls it at import
    torch.cuda.device_count = lambda: 2  # >1 GPU turns its TorchScript wrapping off
    sys.path.insert(0, str(args.official))
    # The official Detect imports its Cython NMS at import time; the Fast NMS path used here
    # (the official default) does not need it.
    sys.modules["pyximport"] = types.SimpleNamespace(install=lambda **kwargs: None)  # type: ignore[assignment]
    sys.modules["yolact_edge.utils.cython_nms"] = types.SimpleNamespace(nms=None)  # type: ignore[assignment]
    from yolact_edge.data.config import cfg, set_cfg
    from yolact_edge.layers.output_utils import postprocess
    from yolact_edge.yolact import Yolact

    torch.set_grad_enabled(False)
    a, b = inputs()
    golden: dict[str, object] = {"input_a": a, "input_b": b}

    set_cfg("yolact_edge_mobilenetv2_config")
    net = Yolact(training=True)
    net.eval()  # the official train() returns None: no chaining
    net.load_state_dict(seeded_state_dict(net, 0), strict=True)
    net.detect = torch.nn.Identity()
    extras = {"backbone": "full", "interrupt": False, "keep_statistics": False,
              "moving_statistics": None}  # fmt: skip
    runs: dict[str, dict] = {}
    logits = head_logits(net, lambda: runs.setdefault("a", net(a, extras=extras)), cfg.num_classes)
    raw = runs["a"]["pred_outs"]
    golden["mobilenetv2"] = {k: raw[k] for k in ("loc", "priors", "proto")} | logits

    set_cfg("yolact_edge_vid_resnet50_config")
    net = Yolact(training=True)
    net.eval()  # the official train() returns None: no chaining
    net.load_state_dict(seeded_state_dict(net, 1), strict=True)
    net.detect = torch.nn.Identity()
    key_logits = head_logits(
        net,
        lambda: runs.setdefault("key", net(a, extras={**extras, "keep_statistics": True})),
        cfg.num_classes,
    )
    key = runs["key"]
    statistics = {"feats": key["feats"], "lateral": key["lateral"]}
    nonkey_extras = {"backbone": "partial", "interrupt": False, "moving_statistics": statistics}
    nonkey_logits = head_logits(
        net, lambda: runs.setdefault("nonkey", net(b, extras=nonkey_extras)), cfg.num_classes
    )
    nonkey = runs["nonkey"]
    golden["vid_resnet50_key"] = {k: key["pred_outs"][k] for k in ("loc", "proto")} | key_logits
    golden["vid_resnet50_nonkey"] = {
        k: nonkey["pred_outs"][k] for k in ("loc", "proto")
    } | nonkey_logits

    set_cfg("yolact_edge_mobilenetv2_config")
    priors = golden["mobilenetv2"]["priors"]  # type: ignore[index]
    head = peaky_head_outputs(len(priors), cfg.num_classes)
    detect = Yolact(training=True).detect
    detect.use_fast_nms, detect.use_cross_class_nms = True, False  # eval.py's defaults
    dets = detect({**head, "priors": priors})
    cfg.mask_proto_debug = False  # set by the official eval.py
    boxes_rel = dets[0]["box"].clone()  # postprocess scales the boxes in place
    classes, scores, boxes, masks = postprocess(dets, 96, 64, crop_masks=True, score_threshold=0)
    golden["detect"] = {
        "head": head,
        "classes": classes,
        "scores": scores,
        "boxes_long": boxes,
        # bool [K, 64, 96] packed 8 pixels a byte: the file stays small.
        "masks_packed": torch.from_numpy(np.packbits(masks.bool().numpy(), axis=-1)),
        "boxes_rel": boxes_rel,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    torch.save(golden, OUT / "golden.pt")
    print(f"wrote {OUT / 'golden.pt'}: {len(dets[0]['box'])} detections")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""VPSNet on CPU: what caching the previous frame's features saves, measured side by side.

The official test recomputes the reference (previous) frame's ResNet-FPN pyramid on every
frame; FrameGraph keeps it from the frame before. Both give the same outputs (checked here on
every frame). For each variant, on the same synthetic video (random weights: timing only;
``score_thresh`` lowered so the heads and the panoptic fusion see ~20 instances per frame):

- backbone + FPN time per frame: one pyramid (cached) vs two (recomputed);
- whole-frame time (``VPSNet.inference``) both ways, alternated for ``--rounds`` rounds, and
  the ratio of the medians;
- the share of a frame the backbone + FPN takes.

    python bench/vpsnet.py [--frames 6] [--rounds 3] [--variants fusetrack fusetrack_mobilenetv2]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models import vpsnet  # noqa: E402
from synthetic.generator import generate  # noqa: E402

SCALES = {"fusetrack": (1024, 512), "fuse": (1024, 512), "fusetrack_mobilenetv2": (320, 256)}
"""Test scale per variant: half the official Cityscapes 2048 x 1024 for ResNet-50 (a CPU
would take ~10 s a frame at full size), the demo weights' own for the light variant."""


def run(model, inputs, recompute: bool) -> tuple[float, list[np.ndarray]]:
    """Seconds for the whole video and every frame's panoptic class map."""
    state = vpsnet.VideoState()
    maps = []
    start = time.perf_counter()
    previous = None
    for image, size in inputs:
        if recompute and previous is not None:
            state.pyramid = model.pyramid(previous)  # the official path: recompute it
        maps.append(model.inference(image, size, state).maps.classes)
        previous = image
    return time.perf_counter() - start, maps


@torch.inference_mode()
def bench(variant: str, frames: int, rounds: int) -> dict[str, float]:
    torch.manual_seed(0)
    config = dataclasses.replace(vpsnet.VARIANTS[variant], score_thresh=0.3)
    model = vpsnet.VPSNet(config).eval()
    width, height = SCALES[variant]
    video = [f.image for f in generate(9000, frames, width, height)]
    inputs = [vpsnet.to_input(image, (width, height)) for image in video]
    model.pyramid(inputs[0][0])  # warm-up
    pyramid = []
    for image, _ in inputs:
        start = time.perf_counter()
        model.pyramid(image)
        pyramid.append(time.perf_counter() - start)
    cached, recomputed = [], []
    for _ in range(rounds):
        seconds, fast = run(model, inputs, recompute=False)
        cached.append(seconds / frames)
        seconds, slow = run(model, inputs, recompute=True)
        recomputed.append(seconds / frames)
        assert all(np.array_equal(a, b) for a, b in zip(fast, slow, strict=True)), "differ"
    backbone = statistics.median(pyramid)
    frame_cached, frame_recomputed = statistics.median(cached), statistics.median(recomputed)
    return {
        "backbone_fpn_ms_cached": 1e3 * backbone,
        "backbone_fpn_ms_recomputed": 2e3 * backbone,
        "frame_ms_cached": 1e3 * frame_cached,
        "frame_ms_recomputed": 1e3 * frame_recomputed,
        "speedup": frame_recomputed / frame_cached,
        "backbone_share_recomputed": 2 * backbone / frame_recomputed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variants", nargs="+", default=["fusetrack", "fusetrack_mobilenetv2"])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, {args.frames} frames x "
          f"{args.rounds} rounds; outputs identical both ways on every frame")  # fmt: skip
    header = ("variant", "input", "pyramid ms", "frame ms cached", "frame ms recomputed",
              "speed-up", "pyramids' share (recomputed)")  # fmt: skip
    print(" | ".join(header))
    for variant in args.variants:
        r = bench(variant, args.frames, args.rounds)
        width, height = SCALES[variant]
        print(f"{variant} | {width}x{height} | {r['backbone_fpn_ms_cached']:.0f} | "
              f"{r['frame_ms_cached']:.0f} | {r['frame_ms_recomputed']:.0f} | "
              f"{r['speedup']:.2f}x | {100 * r['backbone_share_recomputed']:.0f}%")  # fmt: skip


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""YolactEdge on CPU: what temporal feature reuse saves, measured side by side.

For each backbone at 550x550 in torch eager with the channels_last layout, as the
``yolact_edge`` stage runs it by default (``--contiguous`` for NCHW; random weights are fine for
timing; the post-processing gets
peaky synthetic head outputs so it handles the maximum of 100 detections, with masks at
640x480):

- keyframe cost (full backbone + heads), non-keyframe cost (partial backbone to C3, flow net,
  warp, SPA + heads), post-processing cost (Fast NMS + masks + boxes),
- average throughput over the same ``--frames`` frames (the bundled street clip) with a
  keyframe every frame vs every 5th frame, network + post-processing, one process; the two
  alternate for ``--rounds`` rounds and the medians are compared (this 2-core machine's speed
  drifts by 10-30% between minutes, so back-to-back single runs mislead),
- the ratio of the two, and post-processing (at 100 detections) as a share of a keyframe.

The official figure to compare with: R-101 gains 1.44x from warping on an RTX 2080 Ti
(42.6 -> 61.2 FPS, README of haotian-liu/yolact_edge).

    python bench/yolact_edge.py [--frames 15] [--rounds 3] [--contiguous] [--backbones ...]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import av
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models import yolact_edge  # noqa: E402
from models.yolact_edge.synthetic import peaky_head_outputs  # noqa: E402

VARIANT = {"resnet101": "yolact_edge_vid", "resnet50": "yolact_edge_vid_resnet50",
           "mobilenetv2": "yolact_edge_vid_mobilenetv2"}  # fmt: skip


def clip_frames(count: int) -> list[np.ndarray]:
    with av.open(str(ROOT / "media" / "pedestrians.mp4")) as container:
        frames = []
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="bgr24"))
            if len(frames) == count:
                return frames
    return frames


def median_s(call, repeats: int = 5) -> float:
    call()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return float(np.median(samples))


def postprocess(raw: tuple, height: int, width: int, detections: int = 100) -> None:
    loc, conf, coeffs, proto = raw
    (found,) = yolact_edge.detect(
        loc, conf, coeffs, yolact_edge.priors(), max_detections=detections
    )
    yolact_edge.masks(proto[0], found, height, width)
    yolact_edge.boxes_in_pixels(found.boxes, height, width)


def throughput(
    model, frames: list[np.ndarray], interval: int, layout: torch.memory_format
) -> float:
    """Frames per second, network + post-processing, keyframe every ``interval`` frames."""
    height, width = frames[0].shape[:2]
    start = time.perf_counter()
    state = None
    for index, image in enumerate(frames):
        x = yolact_edge.to_input(image).contiguous(memory_format=layout)
        if index % interval == 0:
            raw, state = model.keyframe(x)
        else:
            raw = model.non_keyframe(x, state)
        postprocess(raw, height, width)
    return len(frames) / (time.perf_counter() - start)


@torch.inference_mode()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--contiguous", action="store_true", help="NCHW instead of NHWC")
    parser.add_argument("--backbones", nargs="+", default=list(VARIANT), choices=list(VARIANT))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    frames = clip_frames(args.frames)
    layout = torch.contiguous_format if args.contiguous else torch.channels_last
    print(f"torch {torch.__version__}, {args.threads} threads, {len(frames)} frames of "
          f"{frames[0].shape[1]}x{frames[0].shape[0]}, input 550x550, "
          f"{'NCHW' if args.contiguous else 'channels_last'}")  # fmt: skip
    head = peaky_head_outputs(len(yolact_edge.priors()), 41)
    raw = (head["loc"], head["conf"], head["mask"], torch.relu(torch.randn(1, 138, 138, 32)))
    post_s = median_s(lambda: postprocess(raw, 480, 640))
    post10_s = median_s(lambda: postprocess(raw, 480, 640, detections=10))
    print(f"post-processing: {post_s * 1e3:.1f} ms with 100 detections, {post10_s * 1e3:.1f} ms "
          "with 10 (Fast NMS + 640x480 masks + boxes)")  # fmt: skip
    header = (f"{'backbone':12s} {'keyframe ms':>11s} {'non-key ms':>10s} {'post/key':>8s} "
              f"{'fps k=1':>8s} {'fps k=5':>8s} {'k=5 / k=1':>9s}")  # fmt: skip
    print(header)
    for backbone in args.backbones:
        torch.manual_seed(0)
        model = yolact_edge.build_model(VARIANT[backbone]).eval().to(memory_format=layout)
        x = yolact_edge.to_input(frames[0]).contiguous(memory_format=layout)
        _, state = model.keyframe(x)
        key_s = median_s(lambda m=model, x=x: m.keyframe(x))
        non_key_s = median_s(lambda m=model, x=x, s=state: m.non_keyframe(x, s))
        runs = [(throughput(model, frames, 1, layout), throughput(model, frames, 5, layout))
                for _ in range(args.rounds)]  # fmt: skip
        every = float(np.median([r[0] for r in runs]))
        fifth = float(np.median([r[1] for r in runs]))
        print(f"{backbone:12s} {key_s * 1e3:11.1f} {non_key_s * 1e3:10.1f} "
              f"{post_s / key_s:8.1%} {every:8.2f} {fifth:8.2f} {fifth / every:8.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()

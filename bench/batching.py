#!/usr/bin/env python3
"""Frames per second of each model family's stage at batch 1, 2, 4 and 8, side by side.

Each case runs one graph as a user would: ``--sources`` in-memory sources (frames decoded
beforehand, so decoding is left out) feed one model stage (``join: false``, so its batches
mix the sources), a sink counts. A batch waits at most ``--timeout-ms`` to fill. The figure
is frames out per second from the first frame to the last; the ratio column divides by
batch 1 of the same family in the same run. Each batched run is also checked against
batch 1: the same detections per frame (boxes within 0.05 px; a score within 1e-3 of the
threshold may flip), or for translation the same frames (within one grey level).

Families without a batched network call (``ONE_FRAME_PER_CALL``: one frame per call,
``batch: 1``) are listed as such; DensePose batches its whole-image part (its heads on the
boxes run per frame) and is checked on its people's boxes as the detectors are.

    python bench/batching.py                  # CPU, onnxruntime (the CPU default)
    python bench/batching.py --device cuda --backend torch
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from itertools import islice
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.frame import Frame  # noqa: E402
from pipeline.graph import Graph, NodeSpec  # noqa: E402
from pipeline.results import DensePoseResult, Detections, PanopticSegmentation  # noqa: E402
from pipeline.stage import Sink, Stage  # noqa: E402
from stages.densepose import DensePoseDetector  # noqa: E402
from stages.faces import FaceDetector  # noqa: E402
from stages.instances import YolactEdgeDetector  # noqa: E402
from stages.panoptic import VPSNetSegmenter  # noqa: E402
from stages.sources.memory import MemorySource  # noqa: E402
from stages.translate import Translate  # noqa: E402

BATCHES = (1, 2, 4, 8)
ONE_FRAME_PER_CALL: tuple[str, ...] = ()


class Collect(Sink):
    """Keeps every frame out, by (source, index), and when the first and last came."""

    def __init__(self) -> None:
        self.found: dict[tuple[str, int], Frame] = {}
        self.first: float | None = None
        self.last = 0.0

    def write(self, frame: Frame) -> None:
        now = time.perf_counter()
        self.first = self.first or now
        self.last = now
        self.found[(frame.source_id, frame.index)] = frame


def face_frames(count: int) -> list[np.ndarray]:
    import av

    with av.open(str(ROOT / "media" / "faces.mp4")) as container:
        return [f.to_ndarray(format="bgr24") for f in islice(container.decode(video=0), count)]


def scene_frames(count: int) -> list[np.ndarray]:
    from synthetic.generator import generate

    return [f.image for f in generate(9000, count, 320, 320)]


def same_detections(threshold: float) -> Callable[[Frame, Frame], bool]:
    """Both found the same objects, boxes within 0.05 px, except near-ties of the score."""

    def same(a: Frame, b: Frame) -> bool:
        found_a, found_b = a.results["model"], b.results["model"]
        assert isinstance(found_a, (Detections, DensePoseResult))
        assert isinstance(found_b, (Detections, DensePoseResult))
        sure_a, sure_b = (d.boxes[np.abs(d.scores - threshold) > 1e-3] for d in (found_a, found_b))
        if len(sure_a) != len(sure_b):
            return False
        order_a, order_b = (np.lexsort(boxes.T[::-1]) for boxes in (sure_a, sure_b))
        return bool(np.allclose(sure_a[order_a], sure_b[order_b], atol=0.05))

    return same


def same_segments(a: Frame, b: Frame) -> bool:
    """The same panoptic segments (classes and track ids), the maps equal on 99.9% of the
    pixels (a tie of the argmax may flip one)."""
    found_a, found_b = a.results["model"], b.results["model"]
    assert isinstance(found_a, PanopticSegmentation) and isinstance(found_b, PanopticSegmentation)
    agree = (found_a.segment_map == found_b.segment_map).mean()
    return found_a.segments.keys() == found_b.segments.keys() and bool(agree > 0.999)


def same_images(a: Frame, b: Frame) -> bool:
    """The same frame, within one grey level (a batch sums in another order)."""
    return bool(np.abs(a.image.astype(int) - b.image).max() <= 1)


FAMILIES: dict[str, tuple[Callable[[int], list[np.ndarray]], Callable[..., Stage], Callable]] = {
    # family: (frames, stage factory, same-as-batch-1 check)
    "retinaface (face_detector)": (face_frames, FaceDetector, same_detections(0.5)),
    "yolact_edge": (
        scene_frames,
        lambda **o: YolactEdgeDetector(
            weights=str(ROOT / "models/yolact_edge/weights/synthetic_mobilenetv2.pth"), **o
        ),
        same_detections(0.3),
    ),
    "vpsnet": (
        scene_frames,  # fitted into the demo weights' 320 x 256: 256 x 256
        lambda **o: VPSNetSegmenter(
            weights=str(ROOT / "models/vpsnet/weights/synthetic_mobilenetv2.pth"), **o
        ),
        same_segments,
    ),
    "densepose": (
        scene_frames,
        lambda **o: DensePoseDetector(
            weights=str(ROOT / "models/densepose/weights/synthetic_mobilenetv2.pth"),
            min_score=0.5,
            **o,
        ),
        same_detections(0.5),
    ),
    "translate (multistyle26)": (
        lambda count: [im[::2, ::2].copy() for im in face_frames(count)],  # 320x240
        lambda **o: Translate(consistency="flow", **o),
        same_images,
    ),
}


def run_case(
    images: list[np.ndarray], make: Callable[..., Stage], sources: int, **options: object
) -> tuple[float, dict[tuple[str, int], Frame]]:
    sink = Collect()
    specs = [NodeSpec(f"s{i}", MemorySource(images, source_id=f"s{i}")) for i in range(sources)]
    specs.append(NodeSpec("model", make(**options), [s.name for s in specs], join=False))
    specs.append(NodeSpec("sink", sink, ["model"]))
    report = Graph(specs).run()
    if report.error:
        raise report.error
    assert sink.first is not None
    return len(sink.found) / max(sink.last - sink.first, 1e-9), sink.found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=40, help="frames per source")
    parser.add_argument("--sources", type=int, default=4)
    parser.add_argument("--timeout-ms", type=float, default=50.0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--threads", type=int, default=2, help="torch / onnxruntime threads")
    parser.add_argument("--families", nargs="+", help="only these: vpsnet, yolact_edge, ...")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    options = {"device": args.device, "backend": args.backend, "threads": args.threads}
    print(f"{args.sources} sources x {args.frames} frames, {args.device}, backend {args.backend},"
          f" {args.threads} threads, batch timeout {args.timeout_ms:g} ms")  # fmt: skip
    print(f"{'family':28}{'batch':>6}{'frames/s':>10}{'vs batch 1':>12}  same as batch 1")
    for family, (frames, make, same_as) in FAMILIES.items():
        if args.families and family.split()[0] not in args.families:
            continue
        images = frames(args.frames)
        run_case(images[:4], make, 1, **options)  # warm-up: exports, caches, allocations
        base, reference = 0.0, {}
        for batch in BATCHES:
            fps, found = run_case(images, make, args.sources, batch=batch,
                                  batch_timeout_ms=args.timeout_ms, **options)  # fmt: skip
            if batch == 1:
                base, reference = fps, found
            same = found.keys() == reference.keys() and all(
                same_as(found[k], reference[k]) for k in reference
            )
            print(
                f"{family:28}{batch:>6}{fps:>10.1f}{fps / base:>11.2f}x  {'yes' if same else 'NO'}"
            )
    for family in ONE_FRAME_PER_CALL:
        print(f"{family:28}{'1':>6}{'':>10}{'':>12}  (one frame per network call)")


if __name__ == "__main__":
    main()

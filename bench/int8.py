#!/usr/bin/env python3
"""int8 against fp32 on the CPU, per model family: speed and accuracy side by side.

Both run the family's stage with ``backend: onnxruntime`` (fp32: our export; int8: that
export quantized statically, calibrated on bundled frames; see models/backends/quantize.py)
over the same frames. Speed is the stage's median time per frame (preprocessing, network,
postprocessing), in one process, after a warm-up. Accuracy:

- faces (RetinaFace MobileNet0.25) on the bundled clip, whose faces are known exactly: recall
  (a true face found with IoU >= 0.5) and precision of each, the faces left under 95% hidden
  after the ``anonymize`` stage, and how far int8's boxes are from fp32's (mean IoU of
  matched faces);
- instances (YolactEdge, demo weights) on the held-out synthetic scenes (seeds 9000-9002, never
  trained or calibrated on; a keyframe every 5th frame): mask AP (COCOeval) of each;
- people (DensePose, demo weights) on the first 5 frames of each held-out sequence the trainer
  evaluates (seeds 9000-9002): body part IoU of each (``evaluation.densepose_scores``),
  people kept at score >= 0.5;
- translation (multistyle26, style 7, at 288 px, consistency off so the network alone is
  compared) on the street clip's frames between the calibration ones: PSNR of int8's frames
  against fp32's.

- panoptic (VPSNet, the light variant's demo weights, DIS flow) on the first
  ``--vpsnet-frames`` frames of each held-out synthetic sequence (seeds 9000-9002, 320 x 256,
  run as videos; fp32 and int8 take turns frame by frame, so that both are timed under the
  same load): PQ of each against the ground truth, and of int8 against fp32 (fp32's
  segments as the truth) with the share of pixels whose category agrees with fp32's. The
  official variants cannot run int8 (deformable convolutions: no ONNX export; a config error
  says so).

    python bench/int8.py [--families faces instances people translation vpsnet]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.frame import Frame  # noqa: E402
from pipeline.results import Detections, box_iou  # noqa: E402
from stages.faces import FaceDetector  # noqa: E402
from stages.instances import YolactEdgeDetector  # noqa: E402
from stages.model_stage import ModelStage, bundled_frames  # noqa: E402
from stages.render.anonymize import Anonymize, face_coverage  # noqa: E402
from stages.translate import Translate  # noqa: E402

YOLACT = ROOT / "models" / "yolact_edge" / "weights" / "synthetic_mobilenetv2.pth"
VPSNET = ROOT / "models" / "vpsnet" / "weights" / "synthetic_mobilenetv2.pth"


def timed_run(stage: ModelStage, frames: list[Frame]) -> tuple[list[Detections], float]:
    """The stage's results on ``frames`` and its median ms per frame."""
    stage.name = "model"
    stage.open()
    stage.process(Frame(frames[0].image.copy(), 0, Fraction(1, 25), 0, "warm-up"))
    results, times = [], []
    for frame in frames:
        copy = Frame(frame.image, frame.index, frame.time_base, frame.index, frame.source_id)
        start = time.perf_counter()
        out = stage.process(copy)
        times.append(time.perf_counter() - start)
        results.append(out.results["model"])  # type: ignore[union-attr]
    return results, statistics.median(times) * 1e3


def leaks(frames: list[Frame], results: list[Detections], truth: list) -> int:
    """True faces under 95% hidden after the ``anonymize`` stage (with its memory) ran on
    these detections."""
    hide = Anonymize(detections="model")
    hide.name = "hide"
    leaked = 0
    for frame, result, boxes in zip(frames, results, truth, strict=False):
        copy = Frame(frame.image.copy(), frame.index, frame.time_base, frame.index, "leaks")
        copy.results["model"] = result
        hidden = hide.process(copy).results["hide"]
        covered = face_coverage(frame.image.shape[:2], hidden.boxes, np.array(boxes))
        leaked += int((covered < 0.95).sum())
    return leaked


def faces(threads: int) -> None:
    truth = json.loads((ROOT / "media" / "faces_truth.json").read_text())["faces"]
    frames = bundled_frames("faces.mp4")
    runs = {}
    for precision in ("fp32", "int8"):
        stage = FaceDetector(backend="onnxruntime", precision=precision, threads=threads)
        runs[precision] = timed_run(stage, frames)
    found = {p: r[0] for p, r in runs.items()}
    for precision, (results, ms) in runs.items():
        hits = total = kept = 0
        for boxes, result in zip(truth, results, strict=False):
            iou = box_iou(np.array(boxes, np.float32).reshape(-1, 4), result.boxes)
            hits += int((iou.max(axis=1, initial=0) >= 0.5).sum())
            total += len(boxes)
            kept += int((iou.max(axis=0, initial=0) >= 0.5).sum())
        detections = sum(len(r) for r in results)
        speed = runs["fp32"][1] / ms
        line = f"faces      {precision}  {ms:6.1f} ms/frame  {speed:5.2f}x  "
        line += f"recall {hits / total:.3f}  precision {kept / max(detections, 1):.3f}"
        line += f"  leaked {leaks(frames, results, truth)}/{total}"
        if precision == "int8":
            ious = [
                box_iou(a.boxes, b.boxes).max(axis=1).mean()
                for a, b in zip(found["fp32"], found["int8"], strict=True)
                if len(a) and len(b)
            ]
            line += f"  box IoU vs fp32 {float(np.mean(ious)):.3f}"
        print(line)


def instances(threads: int) -> None:
    from evaluation import mask_ap
    from synthetic.generator import generate

    sequences = [list(generate(seed, 15, 320, 320)) for seed in (9000, 9001, 9002)]
    truth = [[(f.mask(s.id), s.category_id) for s in f.things()] for q in sequences for f in q]
    fp32_ms = 0.0
    for precision in ("fp32", "int8"):
        stage = YolactEdgeDetector(weights=str(YOLACT), backend="onnxruntime",
                                   precision=precision, threads=threads,
                                   keyframe_interval=5, score_threshold=0.05)  # fmt: skip
        predictions, times = [], []
        for number, sequence in enumerate(sequences):
            frames = [Frame(f.image, i, Fraction(1, 30), i, f"seq{number}")
                      for i, f in enumerate(sequence)]  # fmt: skip
            results, ms = timed_run(stage, frames)
            times.append(ms)
            for r in results:
                found = zip(r.masks, r.class_ids, r.scores, strict=True)
                predictions.append([(m, int(c) + 1, float(score)) for m, c, score in found])
        ms = statistics.median(times)
        fp32_ms = fp32_ms or ms
        ap = mask_ap(truth, predictions)
        print(f"instances  {precision}  {ms:6.1f} ms/frame  {fp32_ms / ms:5.2f}x  "
              f"mask AP {ap.ap:.3f}  AP50 {ap.ap50:.3f}")  # fmt: skip


def people(threads: int) -> None:
    from evaluation import densepose_scores
    from stages.densepose import DensePoseDetector
    from synthetic.generator import generate

    weights = ROOT / "models" / "densepose" / "weights" / "synthetic_mobilenetv2.pth"
    length = json.loads(weights.with_suffix(".json").read_text())["eval_frames"]
    scenes = [f for seed in (9000, 9001, 9002)
              for f in list(generate(seed, length, 320, 320))[:5]]  # fmt: skip
    frames = [Frame(f.image, i, Fraction(1, 30), i, "people") for i, f in enumerate(scenes)]
    fp32_ms = 0.0
    for precision in ("fp32", "int8"):
        stage = DensePoseDetector(weights=str(weights), backend="onnxruntime",
                                  precision=precision, threads=threads, min_score=0.5)  # fmt: skip
        results, ms = timed_run(stage, frames)
        fp32_ms = fp32_ms or ms
        pasted = [r.to_iuv_image(320, 320) for r in results]
        scores = densepose_scores([f.iuv for f in scenes], pasted)
        print(f"people     {precision}  {ms:6.1f} ms/frame  {fp32_ms / ms:5.2f}x  "
              f"part IoU {scores.part_iou:.3f} over {len(frames)} frames")  # fmt: skip


def translation(threads: int) -> None:
    frames = [f for f in bundled_frames("pedestrians.mp4", every=25) if f.index % 50]
    runs = {}
    for precision in ("fp32", "int8"):
        stage = Translate(backend="onnxruntime", precision=precision, threads=threads,
                          size=288, consistency="off")  # fmt: skip
        stage.name = "model"
        stage.open()
        outputs, times = [], []
        for frame in frames:
            copy = Frame(frame.image.copy(), frame.index, frame.time_base, frame.index, "s")
            start = time.perf_counter()
            outputs.append(stage.process(copy).image)  # type: ignore[union-attr]
            times.append(time.perf_counter() - start)
        runs[precision] = (outputs, statistics.median(times) * 1e3)
    (fp32, fp32_ms), (int8, int8_ms) = runs["fp32"], runs["int8"]
    mse = np.mean([np.mean((a.astype(float) - b) ** 2) for a, b in zip(fp32, int8, strict=True)])
    psnr = 10 * np.log10(255**2 / max(mse, 1e-12))
    print(f"translate  fp32  {fp32_ms:6.1f} ms/frame   1.00x")
    print(f"translate  int8  {int8_ms:6.1f} ms/frame  {fp32_ms / int8_ms:5.2f}x  "
          f"PSNR vs fp32 {psnr:.1f} dB over {len(frames)} frames")  # fmt: skip


def panoptic(threads: int, length: int = 10) -> None:
    """VPSNet fp32 and int8 frame by frame, alternately (which runs first swaps each frame),
    so that a changing load on the machine weighs on both alike."""
    from evaluation.panoptic import pq
    from stages.panoptic import VPSNetSegmenter
    from synthetic.annotations import panoptic_ground_truth
    from synthetic.categories import THING_IDS
    from synthetic.generator import generate

    sequences = [list(generate(seed, length, 320, 256)) for seed in (9000, 9001, 9002)]
    truth = [panoptic_ground_truth(f) for q in sequences for f in q]
    precisions = ("fp32", "int8")
    stages = {p: VPSNetSegmenter(weights=str(VPSNET), backend="onnxruntime", precision=p,
                                 threads=threads) for p in precisions}  # fmt: skip
    for stage in stages.values():
        stage.name = "model"
        stage.open()
        warm_up = sequences[0][0].image.copy()
        stage.process(Frame(warm_up, 0, Fraction(1, 30), 0, "warm-up"))  # exports, quantizes
    found: dict[str, list] = {p: [] for p in precisions}
    times: dict[str, list[float]] = {p: [] for p in precisions}
    for number, sequence in enumerate(sequences):
        for i, scene in enumerate(sequence):
            order = precisions if (number * length + i) % 2 == 0 else precisions[::-1]
            for precision in order:
                frame = Frame(scene.image, i, Fraction(1, 30), i, f"seq{number}")
                start = time.perf_counter()
                result = stages[precision].process(frame).results["model"]  # type: ignore[union-attr]
                times[precision].append(time.perf_counter() - start)
                found[precision].append(
                    (result.segment_map, {k: v["class"] for k, v in result.segments.items()})
                )
    fp32_ms = statistics.median(times["fp32"]) * 1e3
    for precision in precisions:
        ms = statistics.median(times[precision]) * 1e3
        line = f"panoptic   {precision}  {ms:6.1f} ms/frame  {fp32_ms / ms:5.2f}x  "
        line += f"PQ {pq(found[precision], truth, thing_categories=THING_IDS).all.pq:.3f}"
        if precision == "int8":
            pairs = zip(found["fp32"], found["int8"], strict=True)
            agree = np.mean([np.mean(a // 1000 == b // 1000) for (a, _), (b, _) in pairs])
            vs_fp32 = pq(found["int8"], found["fp32"], thing_categories=THING_IDS).all.pq
            line += f"  PQ vs fp32 {vs_fp32:.3f}  category agreement {agree:.4f}"
        print(line + f" over {len(truth)} frames")


FAMILIES = ("faces", "instances", "people", "translation", "vpsnet")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch / onnxruntime threads")
    parser.add_argument("--families", nargs="+", choices=FAMILIES, default=list(FAMILIES))
    parser.add_argument("--vpsnet-frames", type=int, default=10, help="per held-out sequence")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"onnxruntime on the CPU, {args.threads} threads; speed-up over fp32 in one process")
    runs = {"faces": faces, "instances": instances, "people": people, "translation": translation,
            "vpsnet": lambda threads: panoptic(threads, args.vpsnet_frames)}  # fmt: skip
    for family in FAMILIES:
        if family in args.families:
            runs[family](args.threads)


if __name__ == "__main__":
    main()

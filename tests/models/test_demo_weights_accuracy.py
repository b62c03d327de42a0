"""The shipped demo weights' accuracy, measured instead of read back from their sidecars.

Each test loads ``models/<family>/weights/synthetic_mobilenetv2.pth``, renders the first frames
of the held-out sequences its trainer scores it on (the sidecar's ``eval_seeds``, never trained
on, rendered at the trainer's sequence length and size: a sequence's scene depends on its
length, so these are the very frames the trainer scored), runs the trainer's own evaluation on
them (``tools/train_*.py``, the metrics of ``evaluation/``) and asserts a floor a little below
what those frames measure. The sidecar's figure, over every held-out frame, is printed beside
the measurement (``pytest -rP``) and must agree with it roughly.
"""

from __future__ import annotations

from itertools import islice
from pathlib import Path

from models.checkpoints import weights_meta
from synthetic.generator import SyntheticFrame, generate

WEIGHTS = Path(__file__).resolve().parents[2] / "models"
FRAMES = 3
"""Frames from the start of each of the 3 held-out sequences (9 in all)."""
AGREE = 0.12
"""How far these frames' figure may lie from the sidecar's over every held-out frame (the
sequences' first frames score higher than the whole). Measured on the weights as shipped, over
all held-out frames (as the sidecars) and then the first 3 of each sequence: YolactEdge mask AP
0.420, 0.493; VPSNet PQ 0.777, 0.867; DensePose part IoU 0.621, 0.641."""


def demo(family: str) -> tuple[Path, dict]:
    """The demo weights of ``family`` and their sidecar."""
    path = WEIGHTS / family / "weights" / "synthetic_mobilenetv2.pth"
    return path, weights_meta(path)


def held_out(
    seeds: list[int], length: int, width: int, height: int, first: int
) -> list[list[SyntheticFrame]]:
    """The first ``first`` frames of each held-out sequence, rendered ``length`` frames long as
    the trainer renders it."""
    return [list(islice(generate(seed, length, width, height), first)) for seed in seeds]


def report(name: str, measured: float, sidecar: float, frames: int) -> None:
    print(f"{name}: {measured:.4f} on {frames} held-out frames; sidecar {sidecar:.4f}")


def test_yolact_edge_demo_weights_mask_ap_on_held_out_frames() -> None:
    from models import yolact_edge
    from tools.train_yolact_edge import evaluate

    path, meta = demo("yolact_edge")
    size = meta["input_size"]
    assert size == 320 and "--frames" not in meta["command"]  # 60-frame sequences (default)
    model = yolact_edge.build_model(meta["variant"], tuple(meta["class_names"]))
    model = yolact_edge.load_weights(model, path)
    sequences = held_out(meta["eval_seeds"], 60, size, size, FRAMES)
    measured = evaluate(model, sequences, size, interval=1)  # a keyframe every frame
    sidecar = meta["mask_ap_keyframe_every_frame"]
    report("YolactEdge mask AP", measured.ap, sidecar, sum(map(len, sequences)))
    assert measured.ap > 0.45  # measured 0.493
    assert abs(measured.ap - sidecar) < AGREE


def test_vpsnet_demo_weights_pq_on_held_out_video() -> None:
    from evaluation.panoptic import pq
    from models import vpsnet
    from synthetic.categories import THING_IDS
    from tools.train_vpsnet import CATEGORY_IDS, run_video

    path, meta = demo("vpsnet")
    assert meta["input_scale"] == [320, 256] and meta["category_ids"] == CATEGORY_IDS
    model = vpsnet.load_weights(vpsnet.build_model(meta["variant"]), path).eval()
    sequences = held_out(meta["eval_seeds"], meta["eval_frames"], 320, 256, FRAMES)
    # as tools/train_vpsnet.evaluate: each sequence run as a video, fusion fed DIS flow
    predicted, truth = [], []
    for sequence in sequences:
        predicted += run_video(model, sequence, "dis")
        truth += [(f.panoptic, {k: s.category_id for k, s in f.segments.items()})
                  for f in sequence]  # fmt: skip
    measured = pq(predicted, truth, thing_categories=THING_IDS).all.pq
    sidecar = meta["scores"]["dis"]["pq"]
    report("VPSNet PQ (DIS flow)", measured, sidecar, len(truth))
    assert measured > 0.8  # measured 0.867
    assert abs(measured - sidecar) < AGREE


def test_densepose_demo_weights_part_iou_on_held_out_frames() -> None:
    from models import densepose
    from tools.train_densepose import evaluate

    path, meta = demo("densepose")
    size = meta["input_size"]
    assert size == 320
    model = densepose.load_weights(densepose.build_model(meta["variant"]), path)
    sequences = held_out(meta["eval_seeds"], meta["eval_frames"], size, size, FRAMES)
    measured = evaluate(model, sequences, size)
    report("DensePose part IoU", measured["part_iou"], meta["part_iou"], sum(map(len, sequences)))
    assert measured["part_iou"] > 0.6  # measured 0.641
    assert abs(measured["part_iou"] - meta["part_iou"]) < AGREE

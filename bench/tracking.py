#!/usr/bin/env python3
"""The ``track`` stage against the greedy IoU tracker it replaced, on YolactEdge's detections.

Ground truth: the held-out synthetic scenes (seeds 9000-9002, never trained on; 320 x 320,
``--frames`` frames each), whose every thing has an exact track id and visible box. The
detections: the ``yolact_edge`` stage as configs/instances.yaml runs it (the demo weights, a
keyframe every 5th frame, score >= 0.3; onnxruntime), computed once per sequence and given to
every tracker alike:

- ``greedy IoU (old)``: the tracker YolactEdge had until the ``track`` stage (it was
  stages/tracking.py): each box, best score first, continues the free track of its class it
  overlaps most (IoU >= 0.3, against the track's last box); a track ends after 10 frames
  unseen. Kept below as it ran, only as this table's baseline.
- ``track: bytetrack`` (the stage's default, the library's default parameters) and ``track:
  ocsort``: the ``track`` stage itself (stages/track.py, the ``trackers`` package).

Scores: CLEAR MOTA and ID switches, and IDF1, from the ``trackers`` package's evaluation code
(trackers.eval, TrackEval's), a match being box IoU >= 0.5 whatever the classes; detections
without a track id (-1) are not in a tracker's output. ID switches are also given per 100
frames. With ``--every 2`` (the default runs 1 and 2) the trackers see every 2nd frame only,
the others dropped before the detector, as on a live source slower than its camera: the
detector forces a keyframe after each gap as in the graph, the old tracker takes every call
as the next frame (as it ran), the ``track`` stage predicts over the gap (the frame index).

    python bench/tracking.py [--frames 150] [--every 1 2] [--threads 2]

(Not bench/trackers.py: run as a script, that name would hide the trackers package.)
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from dataclasses import dataclass
from fractions import Fraction
from importlib.metadata import version
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.frame import Frame  # noqa: E402
from pipeline.results import Detections, box_iou  # noqa: E402
from stages.instances import YolactEdgeDetector  # noqa: E402
from stages.track import Track  # noqa: E402
from synthetic.generator import generate  # noqa: E402

SEEDS = (9000, 9001, 9002)
WEIGHTS = ROOT / "models" / "yolact_edge" / "weights" / "synthetic_mobilenetv2.pth"


@dataclass
class _GreedyTrack:
    id: int
    box: np.ndarray
    class_id: int
    last_seen: int


class GreedyIoU:
    """The greedy IoU tracker YolactEdge used before the ``track`` stage, as it ran there
    (``IoUTracker()`` updated with boxes, classes and scores, no index: every call the next
    frame). Its velocity only served the anonymiser's predictions, never the matching, so it
    is left out."""

    def __init__(self, match_iou: float = 0.3, memory: int = 10) -> None:
        self.match_iou, self.memory = match_iou, memory
        self.tracks: list[_GreedyTrack] = []
        self.next_id, self.index = 1, 0

    def update(self, boxes: np.ndarray, classes: np.ndarray, scores: np.ndarray) -> np.ndarray:
        index, self.index = self.index, self.index + 1
        iou = box_iou(boxes, np.array([t.box for t in self.tracks]).reshape(-1, 4))
        same = classes[:, None] == np.array([t.class_id for t in self.tracks], np.int64)
        iou = np.where(same, iou, -np.inf)
        free = np.ones(len(self.tracks), bool)
        ids = np.zeros(len(boxes), np.int64)
        for n in np.argsort(-scores, kind="stable"):
            candidates = np.where(free, iou[n], -np.inf)
            m = int(candidates.argmax()) if len(candidates) else -1
            if m >= 0 and free[m] and candidates[m] >= self.match_iou:
                free[m] = False
                track = self.tracks[m]
                track.box, track.last_seen = boxes[n], index
            else:
                track = _GreedyTrack(self.next_id, boxes[n], int(classes[n]), index)
                self.next_id += 1
                self.tracks.append(track)
            ids[n] = track.id
        self.tracks = [t for t in self.tracks if index - t.last_seen <= self.memory]
        return ids


@dataclass
class Sequence:
    """One scene as the trackers see it: per kept frame, its index, detections and truth."""

    indices: list[int]
    detections: list[Detections]
    truth_ids: list[np.ndarray]  # int [G] per frame
    truth_boxes: list[np.ndarray]  # float [G, 4] xyxy per frame


def detect(seed: int, frames: int, every: int, threads: int) -> Sequence:
    """YolactEdge (as configs/instances.yaml) on every ``every``-th frame of the scene."""
    stage = YolactEdgeDetector(weights=str(WEIGHTS), backend="onnxruntime", threads=threads,
                               keyframe_interval=5, score_threshold=0.3)  # fmt: skip
    stage.name = "instances"
    stage.open()
    out = Sequence([], [], [], [])
    for rendered in generate(seed, frames, 320, 320):
        if rendered.index % every:
            continue
        if rendered.index and every > 1:
            stage.on_gap(f"seed{seed}", every - 1)  # as the graph tells it
        frame = Frame(rendered.image, rendered.index, Fraction(1, 30), rendered.index,
                      f"seed{seed}")  # fmt: skip
        out.indices.append(rendered.index)
        out.detections.append(stage.process(frame).results["instances"])  # type: ignore[union-attr]
        things = rendered.things()
        boxes = [(x, y, x + w, y + h) for x, y, w, h in (s.bbox for s in things)]
        out.truth_ids.append(np.array([s.track_id for s in things], np.int64))
        out.truth_boxes.append(np.array(boxes, np.float32).reshape(-1, 4))
    return out


def old_ids(sequence: Sequence) -> list[np.ndarray]:
    tracker = GreedyIoU()
    return [tracker.update(d.boxes, d.class_ids, d.scores) for d in sequence.detections]


def stage_ids(sequence: Sequence, **options: object) -> list[np.ndarray]:
    """Track ids from the ``track`` stage, run as the graph runs it on one source."""
    stage = Track(detections="instances", **options)  # type: ignore[arg-type]
    stage.name = "tracks"
    ids, previous = [], None
    for index, detections in zip(sequence.indices, sequence.detections, strict=True):
        if previous is not None and index > previous + 1:
            stage.on_gap("scene", index - previous - 1)
        previous = index
        frame = Frame(np.zeros((1, 1, 3), np.uint8), index, Fraction(1, 30), index, "scene")
        frame.results["instances"] = detections
        ids.append(stage.process(frame).results["instances"].track_ids)
    return ids


def scores(sequences: list[Sequence], ids: list[list[np.ndarray]]) -> dict[str, float]:
    """MOTA, IDF1, ID switches (in all and per 100 frames), FP and FN over the sequences."""
    from trackers.eval import (
        aggregate_clear_metrics,
        aggregate_identity_metrics,
        compute_clear_metrics,
        compute_identity_metrics,
    )
    from trackers.eval import box_iou as eval_iou

    clear, identity, frames = [], [], 0
    for sequence, per_frame in zip(sequences, ids, strict=True):
        truth, found, similarity = [], [], []
        for gt_ids, gt_boxes, detections, track_ids in zip(
            sequence.truth_ids, sequence.truth_boxes, sequence.detections, per_frame,
            strict=True,
        ):  # fmt: skip
            kept = track_ids >= 0
            truth.append(gt_ids)
            found.append(track_ids[kept])
            boxes = detections.boxes[kept].astype(float)
            similarity.append(eval_iou(gt_boxes.astype(float), boxes))
        clear.append(compute_clear_metrics(truth, found, similarity, threshold=0.5))
        identity.append(compute_identity_metrics(truth, found, similarity, threshold=0.5))
        frames += len(sequence.indices)
    c, i = aggregate_clear_metrics(clear), aggregate_identity_metrics(identity)
    return {"MOTA": c["MOTA"], "IDF1": i["IDF1"], "IDSW": c["IDSW"],
            "per100": c["IDSW"] * 100 / frames, "FP": c["CLR_FP"], "FN": c["CLR_FN"],
            "frames": frames}  # fmt: skip


def machine(threads: int) -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    packages = ", ".join(f"{p} {version(p)}" for p in ("trackers", "supervision", "onnxruntime"))
    today = datetime.date.today().isoformat()
    return (f"{model}, {os.cpu_count()} cores ({threads} threads for the detector), Python "
            f"{platform.python_version()}, {packages}, {today}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=150, help="frames per scene")
    parser.add_argument("--every", type=int, nargs="+", default=[1, 2],
                        help="runs in which the trackers see every N-th frame")  # fmt: skip
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    print(machine(args.threads))
    trackers = {
        "greedy IoU (old)": old_ids,
        "track: bytetrack (new, default)": lambda s: stage_ids(s),
        "track: ocsort": lambda s: stage_ids(s, tracker="ocsort"),
    }
    for every in args.every:
        start = time.perf_counter()
        sequences = [detect(seed, args.frames, every, args.threads) for seed in SEEDS]
        seconds = time.perf_counter() - start
        frames = sum(len(s.indices) for s in sequences)
        kept = "every frame" if every == 1 else f"1 frame in {every} (the others dropped)"
        print(f"\nseeds {SEEDS[0]}-{SEEDS[-1]}, {args.frames} frames each, the trackers given "
              f"{kept}: {frames} frames (detections in {seconds:.0f} s)\n")  # fmt: skip
        print("| tracker | MOTA | IDF1 | ID switches | per 100 frames | FP | FN |")
        print("|---|---|---|---|---|---|---|")
        for name, run in trackers.items():
            r = scores(sequences, [run(s) for s in sequences])
            print(f"| {name} | {100 * r['MOTA']:.1f} | {100 * r['IDF1']:.1f} | {r['IDSW']} | "
                  f"{r['per100']:.2f} | {r['FP']} | {r['FN']} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

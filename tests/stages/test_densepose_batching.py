"""The densepose stage in parts and in batches: batch 4 over three sources gives batch 1's
people, with every-N carrying per source."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.frame import Frame
from pipeline.results import DensePoseResult
from stages.densepose import DenseCarry, DensePoseDetector, DenseRaw
from stages.sources.memory import MemorySource
from synthetic.generator import generate
from tests.golden import assert_close, assert_same_detections
from tests.stages.batching import run_sources

WEIGHTS = Path(__file__).resolve().parents[2] / "models/densepose/weights/synthetic_mobilenetv2.pth"
MIN_SCORE = 0.5


def run(backend: str, **options) -> tuple[dict, list[int], dict[str, int]]:
    """Three sources of 4 synthetic scenes each, ``every: 2``: per frame whether the network
    ran on it and the result, how many network frames each ``infer_batch`` call took, the
    stage's counts."""
    stage = DensePoseDetector(weights=str(WEIGHTS), backend=backend, threads=2, every=2,
                              min_score=MIN_SCORE, **options)  # fmt: skip
    network: dict[tuple[str, int], bool] = {}
    per_call: list[int] = []
    batch = stage.infer_batch  # infer runs through it too, a batch of one

    def spy(frames: list[Frame]) -> list[Frame]:
        carried = [isinstance(f.results["dp"], DenseCarry) for f in frames]
        out = batch(frames)
        for f, was_carried in zip(out, carried, strict=True):
            assert isinstance(f.results["dp"], DenseCarry if was_carried else DenseRaw)
            network[(f.source_id, f.index)] = not was_carried
        per_call.append(carried.count(False))
        return out

    stage.infer_batch = spy  # type: ignore[method-assign]
    sources = [MemorySource([f.image for f in generate(9000 + i, 4, 320, 320)], source_id=n)
               for i, n in enumerate("abc")]  # fmt: skip
    frames, _ = run_sources(stage, "dp", sources)
    return ({k: (network[k], f.results["dp"]) for k, f in frames.items()}, per_call,
            stage.status())  # fmt: skip


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_batches_across_sources_give_the_batch_1_people(backend, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("FRAMEGRAPH_CACHE", str(tmp_path))
    single, _, counts = run(backend)
    batched, per_call, batched_counts = run(backend, batch=4, batch_timeout_ms=300)
    assert set(batched) == set(single) and len(single) == 12
    assert counts == batched_counts == {"network": 6, "carried": 6}
    assert max(per_call) > 1 and sum(per_call) == 6  # network frames of several sources per call
    people = 0
    for key, (ran, expected) in single.items():
        was_run, ours = batched[key]
        assert was_run == ran == (key[1] % 2 == 0)  # each source its own network frames
        assert isinstance(ours, DensePoseResult)
        people += len(expected.boxes)
        # one call over a batch sums in another order (torch: 2e-6 on the maps): the same
        # people but for a near-tie of the score; boxes, parts and UV as batch 1's
        pairs = assert_same_detections(
            (ours.boxes, ours.scores), (expected.boxes, expected.scores), f"people {key}",
            threshold=MIN_SCORE, score_margin=1e-3, nms=0.5, box_tolerance=0.05,
        )  # fmt: skip
        for i, j in pairs:
            assert_close(ours.boxes[i], expected.boxes[j], 1e-4, f"box {key}")
            part, reference = ours.parts[i], expected.parts[j]
            assert part.shape == reference.shape and (part != reference).mean() < 1e-3
            same = part == reference
            np.testing.assert_allclose(ours.uv[i][:, same], expected.uv[j][:, same], atol=1e-4)
    assert people >= 12  # scenes with people in them

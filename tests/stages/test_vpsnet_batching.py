"""The vpsnet stage batched across sources (the same segments as one frame per call) and in
int8 (close to fp32), on the demo weights."""

from __future__ import annotations

import time
from collections.abc import Iterator
from fractions import Fraction

import numpy as np
import pytest

from pipeline.errors import ConfigError
from pipeline.frame import Frame
from pipeline.results import PanopticSegmentation
from stages.panoptic import VPSNetSegmenter
from stages.sources.memory import MemorySource
from synthetic.generator import generate
from tests.stages.batching import run_sources

DEMO = "models/vpsnet/weights/synthetic_mobilenetv2.pth"


@pytest.fixture(scope="module")
def videos() -> dict[str, list[np.ndarray]]:
    """Three held-out synthetic videos of 4 frames, 256 x 256."""
    return {
        name: [f.image for f in generate(9000 + i, 4, 256, 256)] for i, name in enumerate("abc")
    }


class Paced(MemorySource):
    """A memory source that yields a frame every 30 ms, so that sources interleave."""

    def frames(self) -> Iterator[Frame]:
        for frame in super().frames():
            time.sleep(0.03)
            yield frame


def spied(stage: VPSNetSegmenter, calls: list[tuple[str, int]]) -> VPSNetSegmenter:
    """``stage``, its network calls recorded as (graph, frames) in ``calls``."""
    make = stage.backends

    def backends(prepared):
        first, following = make(prepared)
        return (
            lambda *xs: calls.append(("first", len(xs[0]))) or first(*xs),
            lambda *xs: calls.append(("next", len(xs[0]))) or following(*xs),
        )

    stage.backends = backends  # type: ignore[method-assign]
    return stage


@pytest.mark.parametrize("backend", ["torch", pytest.param("onnxruntime", marks=pytest.mark.slow)])
def test_batches_across_sources_give_the_batch_1_segments(videos, backend: str) -> None:
    def run(**options) -> tuple[dict, list[int], list[tuple[str, int]]]:
        calls: list[tuple[str, int]] = []
        stage = spied(VPSNetSegmenter(weights=DEMO, scale=(256, 256), backend=backend,
                                      threads=2, **options), calls)  # fmt: skip
        sources = [Paced(images, source_id=name) for name, images in videos.items()]
        frames, sizes = run_sources(stage, "vps", sources)
        return {k: f.results["vps"] for k, f in frames.items()}, sizes, calls

    single, _, single_calls = run()
    batched, sizes, calls = run(batch=4, batch_timeout_ms=200)
    assert {n for _, n in single_calls} == {1}
    assert max(sizes) > 1  # infer_batch took frames of several sources at once ...
    assert ("next", 3) in calls or ("next", 2) in calls  # ... and the next-frame graph too
    assert sum(n for _, n in calls) == len(single) == 12  # each frame once through a graph
    assert set(batched) == set(single)
    for key, expected in single.items():
        ours = batched[key]
        assert isinstance(ours, PanopticSegmentation) and len(expected.segments) >= 3
        # the same segments and track ids; a pixel's argmax could tie (measured: none differ)
        assert set(ours.segments) == set(expected.segments), key
        assert (ours.segment_map == expected.segment_map).mean() > 0.999, key


@pytest.mark.slow
def test_int8_agrees_with_fp32(videos, tmp_path, monkeypatch) -> None:
    """fp32 against int8 (quantized once per cache, ~20 s; later runs ~5 s) on one video.
    Measured on a 2-core x86 CPU: the frames' category maps agree on 99.58-99.70 % of the
    pixels (98.5-99.7 % on the other two videos; bench/int8.py: PQ 0.811 fp32, 0.813 int8,
    PQ of int8 against fp32 0.970 over 30 held-out frames). The bound leaves room for other
    CPUs' int8 kernels."""
    monkeypatch.setenv("FRAMEGRAPH_CACHE", str(tmp_path))
    stages = [VPSNetSegmenter(weights=DEMO, scale=(256, 256), backend="onnxruntime",
                              precision=p, threads=2) for p in ("fp32", "int8")]  # fmt: skip
    for stage in stages:
        stage.name = "vps"
        stage.open()
    for index, image in enumerate(videos["a"]):
        fp32, int8 = (
            s.process(Frame(image.copy(), index, Fraction(1, 25), index, "a")).results["vps"]
            for s in stages
        )
        agree = (fp32.segment_map // 1000 == int8.segment_map // 1000).mean()
        assert agree > 0.98, (index, agree)
    assert len(list(tmp_path.rglob("int8-*.onnx"))) == 2  # both graphs quantized


def test_int8_with_an_official_variant_is_a_config_error() -> None:
    for variant in ("fusetrack", "fuse"):
        stage = VPSNetSegmenter(variant=variant, weights="random", backend="onnxruntime",
                                precision="int8")  # fmt: skip
        with pytest.raises(ConfigError, match=f"int8 is not available for variant {variant} "):
            stage.open()

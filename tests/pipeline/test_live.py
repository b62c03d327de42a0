"""Live input faster than the models: with policy ``latest`` the end-to-end
latency stays flat and the drops are counted; with ``block`` it would grow."""

from __future__ import annotations

import time

import numpy as np
import pytest

from pipeline.edges import Policy
from pipeline.frame import Frame
from pipeline.graph import Graph, NodeSpec
from pipeline.stage import Sink, Stage
from stages.sources.synthetic import SyntheticSource


class SlowModel(Stage):
    """Stands in for a model that needs ``seconds`` per frame."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def process(self, frame: Frame) -> Frame:
        time.sleep(self.seconds)
        return frame


class LatencyRecorder(Sink):
    """Records (arrival time, end-to-end latency) per frame."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []

    def write(self, frame: Frame) -> None:
        now = time.monotonic()
        self.samples.append((now, now - frame.capture_time))


def run_live(seconds: float, policy: Policy | None) -> tuple[LatencyRecorder, Graph, int]:
    fps = 30
    source = SyntheticSource(width=320, height=240, fps=fps, frames=int(seconds * fps), live=True)
    sink = LatencyRecorder()
    graph = Graph(
        [
            NodeSpec("camera", source),
            NodeSpec("model", SlowModel(0.05), ["camera"], policy=policy),  # 20 fps < 30 fps
            NodeSpec("sink", sink, ["model"]),
        ]
    )
    report = graph.run()
    assert report.error is None
    return sink, graph, int(seconds * fps)


def window_median(samples: list[tuple[float, float]], start: float, end: float) -> float:
    t0 = samples[0][0]
    values = [lat for t, lat in samples if start <= t - t0 < end]
    return float(np.median(values))


@pytest.mark.slow
def test_latest_policy_keeps_latency_flat_over_60_seconds_and_counts_drops() -> None:
    sink, graph, produced = run_live(60.0, None)  # auto: latest after a live source
    edge = graph.nodes["model"].inbound
    assert edge.policy is Policy.LATEST
    received = len(sink.samples)
    assert edge.drops > 0.25 * produced  # 30 fps in, ~20 fps processed
    assert received + edge.drops == produced
    assert graph.metrics.total_drops() == edge.drops
    early = window_median(sink.samples, 2, 12)
    late = window_median(sink.samples, 48, 58)
    assert late < early + 0.02
    latencies = [lat for _, lat in sink.samples]
    # wait <= one frame + one model run; a few frames may stall on a busy machine, but a
    # queue would have grown to seconds over the minute (see the block-policy test)
    assert float(np.percentile(latencies, 95)) < 0.2
    assert max(latencies) < 1.0


def test_block_policy_on_live_input_would_let_latency_grow() -> None:
    """The control experiment: the same graph with ``block`` queues up frames."""
    sink, graph, _ = run_live(4.0, Policy.BLOCK)
    assert graph.nodes["model"].inbound.drops == 0
    early = window_median(sink.samples, 0, 1)
    late = window_median(sink.samples, 3, 4)
    assert late > early + 0.1

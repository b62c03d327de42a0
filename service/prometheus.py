"""The graph's metrics in Prometheus' text format (prometheus-client), read at each scrape."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from pipeline.graph import Graph
from pipeline.metrics import LATENCY_BUCKETS, Histogram

STATES = ("connecting", "live", "reconnecting", "ended", "failed")


def _buckets(histogram: Histogram) -> list[tuple[str, float]]:
    """Cumulative (upper bound, count) pairs, ``+Inf`` last."""
    out, running = [], 0
    for bound, count in zip(LATENCY_BUCKETS, histogram.counts, strict=False):
        running += count
        out.append((repr(bound), running))
    out.append(("+Inf", running + histogram.counts[-1]))
    return out


class GraphCollector:
    """Per stage: frames, drops and errors (counters), latency (histogram), queue depth
    (gauge); per source: frames out and drops (counters), end-to-end latency (histogram),
    its state (one gauge per state, 1 for the current one)."""

    def __init__(self, graph: Graph, states: Callable[[], dict[str, str]]) -> None:
        self.graph, self.states = graph, states

    def collect(self) -> Iterator[Metric]:
        frames = CounterMetricFamily("framegraph_stage_frames", "Frames a stage handled",
                                     labels=["stage", "kind"])  # fmt: skip
        drops = CounterMetricFamily("framegraph_stage_drops", "Frames dropped on a stage's "
                                    "inbound queue", labels=["stage"])  # fmt: skip
        errors = CounterMetricFamily("framegraph_stage_errors", "Frames a stage failed on",
                                     labels=["stage"])  # fmt: skip
        latency = HistogramMetricFamily(
            "framegraph_stage_latency_seconds", "Time a stage took per frame", labels=["stage"]
        )
        depth = GaugeMetricFamily("framegraph_stage_queue_depth", "Frames waiting for a stage",
                                  labels=["stage"])  # fmt: skip
        for s in self.graph.metrics.stages.values():
            frames.add_metric([s.name, s.kind], s.processed)
            errors.add_metric([s.name], s.errors)
            drops.add_metric([s.name], s.inbound.drops if s.inbound is not None else 0)
            depth.add_metric([s.name], s.inbound.depth if s.inbound is not None else 0)
            latency.add_metric([s.name], _buckets(s.histogram), s.histogram.total)
        yield from (frames, drops, errors, latency, depth)

        out = CounterMetricFamily("framegraph_source_frames", "Frames of a source out of the "
                                  "graph", labels=["source"])  # fmt: skip
        lost = CounterMetricFamily("framegraph_source_drops", "Frames of a source dropped "
                                   "while waiting for their turn", labels=["source"])  # fmt: skip
        e2e = HistogramMetricFamily("framegraph_source_latency_seconds", "End-to-end latency, "
                                    "capture to output", labels=["source"])  # fmt: skip
        state = GaugeMetricFamily("framegraph_source_state", "1 for a source's current state",
                                  labels=["source", "state"])  # fmt: skip
        rows = self.graph.metrics.source_rows()
        states = self.states()
        for name, row in rows.items():
            out.add_metric([name], row["frames"])
            lost.add_metric([name], row["drops"])
            found = self.graph.metrics.sources.get(name)
            if found is not None:
                e2e.add_metric([name], _buckets(found.histogram), found.histogram.total)
        for name, current in states.items():
            for one in STATES:
                state.add_metric([name, one], 1.0 if current == one else 0.0)
        yield from (out, lost, e2e, state)


def metrics_text(graph: Graph, states: Callable[[], dict[str, str]]) -> bytes:
    """The Prometheus exposition of ``graph``'s metrics now."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GraphCollector(graph, states))  # type: ignore[arg-type]  # a duck Collector
    return generate_latest(registry)

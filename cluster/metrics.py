"""The cluster's metrics in one Prometheus exposition: every worker's series, labelled with
the node and worker they come from, and the controller's own."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families


class _ClusterCollector:
    """Yields the merged families (a duck-typed prometheus-client collector)."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        yield from self.families


def merge_texts(texts: list[tuple[str, str, bytes]]) -> list[Metric]:
    """Workers' expositions -> one family per metric name, each sample labelled with
    ``node`` and ``worker`` (two workers' ``stage="video"`` series stay apart).

    Args:
        texts: (node id, worker name, that worker's exposition) per worker.
    """
    merged: dict[str, Metric] = {}
    for node, worker, text in texts:
        for family in text_string_to_metric_families(text.decode()):
            into = merged.get(family.name)
            if into is None:
                into = merged[family.name] = Metric(family.name, family.documentation,
                                                    family.type)  # fmt: skip
            for sample in family.samples:
                labels = {**sample.labels, "node": node, "worker": worker}
                into.add_sample(sample.name, labels, sample.value)
    return list(merged.values())


def cluster_metrics_text(
    texts: list[tuple[str, str, bytes]], workers: int, wanted: int, pending: int, moves: int
) -> bytes:
    """The exposition of the whole cluster.

    Args:
        texts: (node id, worker name, exposition) of each worker that answered.
        workers: workers running.
        wanted: cameras wanted.
        pending: wanted cameras not running now (their worker was lost, not placed yet).
        moves: times a camera was placed again after losing its worker, since the start.
    """
    own: list[Metric] = []
    running = GaugeMetricFamily("framegraph_cluster_workers", "Worker actors running")
    running.add_metric([], workers)
    streams = GaugeMetricFamily("framegraph_cluster_streams", "Cameras wanted, by whether "
                                "they run now", labels=["state"])  # fmt: skip
    streams.add_metric(["placed"], wanted - pending)
    streams.add_metric(["pending"], pending)
    moved = CounterMetricFamily("framegraph_cluster_moves", "Times a camera was placed again "
                                "after its worker was lost")  # fmt: skip
    moved.add_metric([], moves)
    own.extend((running, streams, moved))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_ClusterCollector([*merge_texts(texts), *own]))  # type: ignore[arg-type]
    return generate_latest(registry)

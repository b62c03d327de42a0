"""The cluster's metrics: one Prometheus exposition of every worker's series, labelled with
the node and worker they come from, and the controller's own; the workers' events merged;
and the end-of-run table."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families

from pipeline.metrics import snapshot_table


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


def newest_events(answers: list[list[dict[str, Any]]], limit: int) -> list[dict[str, Any]]:
    """The workers' events (each worker's list as ``GraphWorker.events`` gives it) as one:
    the newest ``limit`` by capture time, oldest first."""
    found = sorted((e for answer in answers for e in answer), key=lambda e: e["wall_time"])
    return found[-limit:] if limit > 0 else []


def cluster_table(
    reports: list[dict[str, Any]], lost: list[dict[str, str]], moves: dict[str, int]
) -> str:
    """The end-of-run summary of a cluster: each worker's stage table (as one process
    prints it), then a row per camera naming where it ran last.

    Args:
        reports: per worker stopped at the end: ``worker``, ``node``, ``address``,
            ``error`` (one line or None) and ``metrics`` (its ``Metrics.snapshot()``, as
            ``json_safe`` makes it; None when it sent none).
        lost: workers lost during the run: ``worker``, ``node``, ``address``, ``why``.
        moves: per camera, times it was placed again.

    Returns:
        The text to print; frames of a camera count since its last placement (a lost
        worker's metrics are lost with it).
    """
    lines: list[str] = []
    cameras: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    for report in reports:
        where = f"{report['worker']} on node {str(report['node'])[:8]} ({report['address']})"
        lines.append(where + (f": {report['error']}" if report["error"] else ""))
        if report["metrics"] is not None:
            lines += [snapshot_table(report["metrics"]), ""]
            cameras += [(name, report, row) for name, row in report["metrics"]["sources"].items()]
    for worker in lost:
        lines.append(f"{worker['worker']} on node {worker['node'][:8]} ({worker['address']}) "
                     f"lost: {worker['why']}")  # fmt: skip
    header = (f"{'camera':<14}{'node':<10}{'worker':<11}{'frames':>8}{'fps':>7}{'p50 ms':>9}"
              f"{'p95 ms':>9}{'drops':>7}{'moves':>7}")  # fmt: skip
    lines += ["", header, "-" * len(header)]
    for name, report, row in sorted(cameras, key=lambda c: c[0]):
        fps = "-" if row["fps"] is None else f"{row['fps']:.1f}"
        p50, p95 = (("-" if v is None else f"{v:.1f}") for v in
                    (row["e2e_p50_ms"], row["e2e_p95_ms"]))  # fmt: skip
        lines.append(f"{name[:13]:<14}{str(report['node'])[:8]:<10}{report['worker'][:10]:<11}"
                     f"{row['frames']:>8}{fps:>7}{p50:>9}{p95:>9}{row['drops']:>7}"
                     f"{moves.get(name, 0):>7}")  # fmt: skip
    lines.append("-" * len(header))
    lines.append(f"{len(cameras)} cameras on {len(reports)} workers at the end; "
                 f"{len(lost)} workers lost, {sum(moves.values())} moves")  # fmt: skip
    return "\n".join(lines)

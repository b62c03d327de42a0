"""Always-on, cheap run metrics: per-stage latency, throughput, queue depth,
drops and end-to-end latency; rendered as a table, a status line or JSON.

Latency percentiles are over a sliding window of the most recent samples
(``WINDOW`` per stage), so a long live run costs constant memory.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.edges import Edge

WINDOW = 10_000
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Upper bounds (seconds) of the cumulative latency histograms (Prometheus-style)."""


@dataclass
class Histogram:
    """Counts of every observation since the start, per bucket of :data:`LATENCY_BUCKETS`
    (the last count: above them all), and their sum: what a Prometheus histogram exports."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    total: float = 0.0

    def observe(self, seconds: float, times: int = 1) -> None:
        index = next((i for i, b in enumerate(LATENCY_BUCKETS) if seconds <= b),
                     len(LATENCY_BUCKETS))  # fmt: skip
        self.counts[index] += times
        self.total += seconds * times


def _ms(value: float | None) -> str:
    # NaN: no samples; None: the same after json_safe (a snapshot sent as JSON)
    return "-" if value is None or value != value else f"{value:.1f}"


_fps = _ms  # a rate is shown as a latency is: one decimal, "-" when unknown


def _percentiles_ms(samples: list[float]) -> tuple[float, float]:
    if not samples:
        return (float("nan"), float("nan"))
    p50, p95 = np.percentile(np.asarray(samples) * 1e3, [50, 95])
    return (float(p50), float(p95))


@dataclass
class StageMetrics:
    """Counters of one stage; written only by that stage's worker thread."""

    name: str
    kind: str
    processed: int = 0
    errors: int = 0
    filtered: int = 0
    partial_joins: int = 0
    busy_s: float = 0.0
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW))
    inbound: Edge | None = None
    status: Callable[[], dict[str, Any]] = dict
    """Live state the stage reports (e.g. a stream's connection state)."""
    part_of: str | None = None
    """For one part of a stage that runs as parts: that stage's name."""
    histogram: Histogram = field(default_factory=Histogram)
    """Every frame's latency since the start (``latencies`` keeps a recent window)."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, seconds: float, frames: int = 1) -> None:
        """``frames`` handled together in ``seconds`` (a batch: each frame's latency is the
        whole call's); safe from a stage's parallel workers."""
        with self._lock:
            self.processed += frames
            self.busy_s += seconds
            self.latencies.extend([seconds] * frames)
            self.histogram.observe(seconds, frames)


@dataclass
class SourceMetrics:
    """What left the graph of one source: frames per terminal stage, recent end-to-end
    latencies as (when, seconds), and when its first and last frame left."""

    outputs: dict[str, int] = field(default_factory=dict)
    e2e: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=WINDOW))
    first: float | None = None
    last: float | None = None
    histogram: Histogram = field(default_factory=Histogram)
    """Every frame's end-to-end latency since the start (at ``terminal``)."""
    terminal: str = ""
    """The terminal stage the histogram counts at (the first one the source reached)."""

    @property
    def frames(self) -> int:
        """Frames of the source out of the graph (through its busiest terminal)."""
        return max(self.outputs.values(), default=0)


class Metrics:
    """All metrics of one graph run.

    Args:
        clock: monotonic clock, injectable for tests.
    """

    def __init__(self, clock: Any = time.monotonic) -> None:
        self.clock = clock
        self.stages: dict[str, StageMetrics] = {}
        self.started = clock()
        self.finished: float | None = None
        self._outputs: dict[str, int] = {}
        self.e2e: deque[tuple[float, float]] = deque(maxlen=WINDOW)
        self.sources: dict[str, SourceMetrics] = {}
        """What left the graph per source id (each source's frames, fps and latency)."""
        self._lock = threading.Lock()

    def add_stage(
        self,
        name: str,
        kind: str,
        inbound: Edge | None,
        status: Callable[[], dict[str, Any]] = dict,
        part_of: str | None = None,
    ) -> StageMetrics:
        stage = StageMetrics(name=name, kind=kind, inbound=inbound, status=status,
                             part_of=part_of)  # fmt: skip
        self.stages[name] = stage
        return stage

    def record_output(self, terminal: str, capture_time: float, source_id: str = "") -> None:
        """A frame of ``source_id`` left the graph through the terminal stage ``terminal``."""
        now = self.clock()
        with self._lock:
            self._outputs[terminal] = self._outputs.get(terminal, 0) + 1
            self.e2e.append((now, now - capture_time))
            source = self.sources.setdefault(source_id, SourceMetrics())
            source.outputs[terminal] = source.outputs.get(terminal, 0) + 1
            source.e2e.append((now, now - capture_time))
            source.terminal = source.terminal or terminal
            if terminal == source.terminal:  # a frame fanned out to several sinks counts once
                source.histogram.observe(now - capture_time)
            source.first = now if source.first is None else source.first
            source.last = now

    @property
    def frames_out(self) -> int:
        """Frames that left the graph (through the busiest terminal stage, so a
        frame fanned out to two sinks counts once)."""
        return max(self._outputs.values(), default=0)

    @property
    def elapsed(self) -> float:
        end = self.finished if self.finished is not None else self.clock()
        return max(end - self.started, 1e-9)

    def recent_e2e_ms(self, seconds: float = 5.0) -> tuple[float, float]:
        """p50/p95 end-to-end latency over the last ``seconds``."""
        cutoff = self.clock() - seconds
        with self._lock:
            recent = [lat for t, lat in self.e2e if t >= cutoff]
        return _percentiles_ms(recent)

    def total_drops(self) -> int:
        return sum(s.inbound.drops for s in self.stages.values() if s.inbound is not None)

    def snapshot(self) -> dict[str, Any]:
        """Everything as plain JSON-able values."""
        elapsed = self.elapsed
        with self._lock:
            e2e = [lat for _, lat in self.e2e]
        stages: dict[str, dict[str, Any]] = {}
        for s in self.stages.values():
            p50, p95 = _percentiles_ms(list(s.latencies))
            state = s.status()
            entry = {
                "kind": s.kind,
                "frames": s.processed,
                "fps": s.processed / elapsed,
                "p50_ms": p50,
                "p95_ms": p95,
                "busy": s.busy_s / elapsed,
                "errors": s.errors,
                "filtered": s.filtered,
                "partial_joins": s.partial_joins,
                "queue": s.inbound.snapshot() if s.inbound is not None else None,
                **({"state": state} if state else {}),
            }
            if s.part_of is None:
                stages[s.name] = entry
            else:
                parts = stages.setdefault(s.part_of, {"parts": {}})["parts"]
                parts[s.name.rsplit("/", 1)[-1]] = entry
        for name, entry in stages.items():
            if "parts" in entry:
                stages[name] = {**_whole(entry["parts"]), "parts": entry["parts"]}
        p50, p95 = _percentiles_ms(e2e)
        return {
            "elapsed_s": elapsed,
            "frames_out": self.frames_out,
            "fps": self.frames_out / elapsed,
            "e2e_p50_ms": p50,
            "e2e_p95_ms": p95,
            "drops": self.total_drops(),
            "stages": stages,
            "sources": self.source_rows(stages),
        }

    def source_rows(self, stages: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
        """Per source id: frames out, their rate over the source's own time in the graph,
        end-to-end latency, and, for the inputs of a source group (a source stage whose
        status has ``inputs``), the frames it dropped while waiting and its state."""
        inputs: dict[str, dict[str, Any]] = {}
        for s in self.stages.values() if stages is None else ():
            inputs.update(s.status().get("inputs", {}))
        for entry in (stages or {}).values():
            inputs.update(entry.get("state", {}).get("inputs", {}))
        with self._lock:
            sources = {k: (v.frames, v.first, v.last, [lat for _, lat in v.e2e])
                       for k, v in self.sources.items()}  # fmt: skip
        rows = {}
        for name in [*sources, *(n for n in inputs if n not in sources)]:
            frames, first, last, e2e = sources.get(name, (0, None, None, []))
            p50, p95 = _percentiles_ms(e2e)
            span = (last - first) if first is not None and last is not None else 0.0
            given = inputs.get(name, {})
            rows[name] = {
                "frames": frames,
                "fps": (frames - 1) / span if frames > 1 and span > 0 else float("nan"),
                "e2e_p50_ms": p50,
                "e2e_p95_ms": p95,
                "drops": given.get("drops", 0),
                "state": given.get("state", ""),
            }
        return rows

    def to_json(self) -> str:
        """The snapshot as JSON; percentiles without samples are null."""
        return json.dumps(json_safe(self.snapshot()), indent=2, allow_nan=False)

    def table(self) -> str:
        """The end-of-run summary: one row per stage, then the totals."""
        return snapshot_table(self.snapshot())


def snapshot_table(snap: dict[str, Any]) -> str:
    """The end-of-run summary of a :meth:`Metrics.snapshot` (as it is, or passed through
    :func:`json_safe`, as a cluster's workers send it): one row per stage, a row per
    source when there are several, then the totals."""
    header = f"{'stage':<14}{'kind':<12}{'frames':>8}{'fps':>9}{'p50 ms':>9}{'p95 ms':>9}"
    header += f"{'busy':>7}{'queue max':>11}{'drops':>7}{'errors':>8}"
    lines = [header, "-" * len(header)]
    rows = []
    for name, s in snap["stages"].items():
        rows.append((name, s))
        rows += [(f"  {label}", part) for label, part in s.get("parts", {}).items()]
    for name, s in rows:
        q = s["queue"]
        qmax = f"{q['max_depth']}/{q['capacity']}" if q else "-"
        kind = "" if name.startswith(" ") else s["kind"]  # a part: its stage's kind above
        lines.append(
            f"{name[:13]:<14}{kind[:11]:<12}{s['frames']:>8}{s['fps']:>9.1f}"
            f"{_ms(s['p50_ms']):>9}{_ms(s['p95_ms']):>9}{s['busy']:>7.0%}{qmax:>11}"
            f"{q['drops'] if q else 0:>7}{s['errors']:>8}"
        )
    sources = snap["sources"]
    if len(sources) > 1 or any(row["state"] for row in sources.values()):
        lines.append("-" * len(header))
        lines.append(f"{'source':<14}{'state':<12}{'frames':>8}{'fps':>9}{'p50 ms':>9}"
                     f"{'p95 ms':>9}{'drops':>25}")  # fmt: skip
        for name, row in sources.items():
            lines.append(
                f"{name[:13]:<14}{row['state'][:11]:<12}{row['frames']:>8}"
                f"{_fps(row['fps']):>9}{_ms(row['e2e_p50_ms']):>9}{_ms(row['e2e_p95_ms']):>9}"
                f"{row['drops']:>25}"
            )
    lines.append("-" * len(header))
    lines.append(
        f"{snap['frames_out']} frames out in {snap['elapsed_s']:.1f} s = "
        f"{snap['fps']:.1f} fps; end-to-end latency p50 {_ms(snap['e2e_p50_ms'])} ms, "
        f"p95 {_ms(snap['e2e_p95_ms'])} ms; {snap['drops']} frames dropped"
    )
    return "\n".join(lines)


def _whole(parts: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A stage that runs as parts, as one row: its frames are those its last part finished,
    its latency the sum of its parts' (queues between them not counted), its queue its
    first part's, its busy time, errors and drops the sums."""
    entries = list(parts.values())
    first, last = entries[0], entries[-1]
    states = {k: v for e in entries for k, v in e.get("state", {}).items()}
    return {
        "kind": first["kind"],
        "frames": last["frames"],
        "fps": last["fps"],
        "p50_ms": sum(e["p50_ms"] for e in entries),
        "p95_ms": sum(e["p95_ms"] for e in entries),
        "busy": sum(e["busy"] for e in entries),
        "errors": sum(e["errors"] for e in entries),
        "filtered": sum(e["filtered"] for e in entries),
        "partial_joins": first["partial_joins"],
        "queue": first["queue"],
        **({"state": states} if states else {}),
    }


def json_safe(value: Any) -> Any:
    """``value`` with every NaN or infinite float (in nested dicts, lists and tuples) as None,
    so ``json.dumps(..., allow_nan=False)`` writes strict JSON (null)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def write_json(metrics: Metrics, path: str) -> None:
    """Write the metrics snapshot as JSON (NaN written as null)."""
    with open(path, "w", encoding="utf-8") as f:
        f.write(metrics.to_json())

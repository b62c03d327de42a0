"""A graph's streams as the service lists them: one row per input of its source group.

Shared by the one-process API (``service.app``) and the cluster's workers
(``cluster.worker``), so a stream reads the same wherever its graph runs.
"""

from __future__ import annotations

import time
from typing import Any

from pipeline.graph import Graph
from pipeline.metrics import json_safe
from pipeline.per_source import PerSource
from service.views import rtsp_urls, views_of
from stages.sinks.web import LiveHub, WebSink
from stages.sources.urls import redact

STATE_NAMES = {"streaming": "live", "running": "live", "removed": "ended"}
"""A source's own state words -> the API's (connecting, live, reconnecting, ended, failed)."""
FINALISE_WAIT_S = 10.0
"""How long removing a stream waits for its per-source outputs to be finalised."""


def stream_states(graph: Graph) -> dict[str, str]:
    """Per input of ``graph``'s source group: its state in the API's words."""
    inputs = graph.source_group().status()["inputs"]
    return {n: _api_state(i["state"]) for n, i in inputs.items()}


def _api_state(word: str) -> str:
    return STATE_NAMES.get(word, word)


def web_hub(graph: Graph) -> LiveHub | None:
    """The live frames, events and counts of ``graph``'s first ``web`` sink; None without
    one."""
    return next((n.stage.hub for n in graph.nodes.values() if isinstance(n.stage, WebSink)),
                None)  # fmt: skip


def stream_outputs(graph: Graph, name: str) -> list[str]:
    """Where the stream ``name``'s per-source outputs go (paths / URLs with ``{source}``
    filled in), in the graph's stage order."""
    return [out for node in graph.nodes.values() if isinstance(node.stage, PerSource)
            for out in node.stage.outputs_of(name)]  # fmt: skip


def stream_rows(graph: Graph) -> list[dict[str, Any]]:
    """Every input of ``graph``'s source group, as JSON-safe rows: name, url (redacted),
    state, fps, e2e_p50_ms, e2e_p95_ms (None without samples), drops, frames, outputs."""
    inputs = graph.source_group().status()["inputs"]  # one snapshot: names and states agree
    rows = graph.metrics.source_rows()
    return json_safe([
        {"name": name, "url": redact(given["url"]), "state": _api_state(given["state"]),
         "fps": rows.get(name, {}).get("fps"),
         "e2e_p50_ms": rows.get(name, {}).get("e2e_p50_ms"),
         "e2e_p95_ms": rows.get(name, {}).get("e2e_p95_ms"),
         "drops": given["drops"], "frames": rows.get(name, {}).get("frames", 0),
         "outputs": stream_outputs(graph, name)}
        for name, given in inputs.items()
    ])  # fmt: skip


def listed_rows(graph: Graph, host: str | None = None) -> list[dict[str, Any]]:
    """``stream_rows`` as the API lists them: each with its ``views``
    (``service.views.views_of``: its RTSP output with ``host`` for a wildcard bind address,
    when given) and ``counts``, the newest occupancy and line counts of its zones and lines
    as the graph's ``web`` sink saw them (empty without one)."""
    rtsp = rtsp_urls(graph, host)
    hub = web_hub(graph)
    counts = dict(hub.counts) if hub is not None else {}
    return [{**row, "views": views_of(row["name"], rtsp.get(row["name"])),
             "counts": counts.get(row["name"], {})}
            for row in stream_rows(graph)]  # fmt: skip


def wait_finalised(graph: Graph, name: str, timeout: float = FINALISE_WAIT_S) -> bool:
    """Waits until no per-source sink of ``graph`` holds an open output of ``name`` (a
    removed stream's files are complete then); False if ``timeout`` seconds passed first."""
    per_source = [n.stage for n in graph.nodes.values() if isinstance(n.stage, PerSource)]
    deadline = time.monotonic() + timeout
    while any(name in sink.outputs for sink in per_source):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True

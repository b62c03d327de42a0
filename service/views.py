"""Where a stream is watched: the ``views`` of each row of ``GET /api/streams``.

``webrtc`` and ``mjpeg`` are the API's own paths (on a cluster too: the API forwards the
WebRTC offer to the camera's worker, and the media then flows from that worker's node);
``rtsp`` is the stream's per-source RTSP output (an ``rtsp_server`` sink with ``{source}``
in its url), with the port it really serves on and a host a player can reach, once that
output has opened (at the stream's first frame there).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from pipeline.graph import Graph
from pipeline.per_source import PerSource
from stages.sinks.rtsp_server import RtspServerSink

WILDCARDS = ("0.0.0.0", "::", "")
"""Bind addresses that mean every interface: no host a player could open."""


def views_of(name: str, rtsp: str | None = None) -> dict[str, str]:
    """A stream's views: the API's WebRTC and MJPEG paths, and its RTSP URL when it has one."""
    quoted = quote(name, safe="")
    return {"webrtc": f"/webrtc/{quoted}", "mjpeg": f"/live/{quoted}.mjpg",
            **({"rtsp": rtsp} if rtsp else {})}  # fmt: skip


def rtsp_urls(graph: Graph, host: str | None = None) -> dict[str, str]:
    """Per source with an open per-source RTSP output in ``graph``: the URL it is served at
    (the first such sink's, in stage order), with the real port.

    Args:
        graph: the graph.
        host: replaces a wildcard bind address (0.0.0.0, ::) in the URLs, e.g. this node's
            address; None keeps it (the API puts the host its client reached in).
    """
    found: dict[str, str] = {}
    for node in graph.nodes.values():
        if not isinstance(node.stage, PerSource):
            continue
        for source_id, sink in dict(node.stage.outputs).items():  # a copy: sources come and go
            if isinstance(sink, RtspServerSink) and sink.server is not None:
                found.setdefault(source_id, with_host(sink.served_url, host))
    return found


def with_host(url: str, host: str | None) -> str:
    """``url`` with its wildcard host (0.0.0.0, ::) replaced by ``host`` (when given)."""
    parts = urlsplit(url)
    if not host or parts.hostname not in WILDCARDS:
        return url
    shown = f"[{host}]" if ":" in host else host
    netloc = f"{shown}:{parts.port}" if parts.port is not None else shown
    return urlunsplit(parts._replace(netloc=netloc))


def rows_with_host(rows: list[dict[str, Any]], host: str | None) -> list[dict[str, Any]]:
    """``rows`` whose ``views.rtsp`` URLs name ``host`` instead of a wildcard address."""
    out = []
    for row in rows:
        views = row.get("views")
        if isinstance(views, dict) and "rtsp" in views:
            row = {**row, "views": {**views, "rtsp": with_host(views["rtsp"], host)}}
        out.append(row)
    return out

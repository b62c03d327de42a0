"""The service over a running graph in this process, for the service tests: one live camera
``cam1`` and the sinks a test asks for."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from pipeline.config import build_graph, parse_config
from service.app import create_app
from service.server import ApiServer
from tests.conftest import free_port

CAM1 = "synthetic:320x240@25"
"""The camera's input unless a test gives another (a ``--source`` value or an entry)."""


@contextlib.contextmanager
def serving(
    *sinks: dict[str, Any], camera: str | dict[str, Any] = CAM1, token: str | None = None
) -> Iterator[tuple[str, Any]]:
    """Serves the API and page over a graph of ``cam1`` (``camera``) and ``sinks``, the
    graph running; yields (the server's URL, the app). Everything ends on leaving."""
    graph = build_graph(parse_config({"stages": [
        {"name": "cams", "kind": "sources", "keep_open": True, "sources": {"cam1": camera}},
        *sinks,
    ]}))  # fmt: skip
    app = create_app(graph, token=token)
    server = ApiServer(app, "127.0.0.1", free_port())
    server.start()
    runner = threading.Thread(target=graph.run)
    runner.start()
    try:
        yield server.url, app
    finally:
        graph.stop()
        runner.join(20)
        server.stop()

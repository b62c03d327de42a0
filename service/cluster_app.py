"""The service on a Ray cluster: the API backed by a ``cluster.controller.ClusterController``
(``python run.py CONFIG --api HOST:PORT --ray auto|ADDRESS``).

The endpoints are ``service.app``'s; here are the backend that answers them from the
controller, and :func:`serve_cluster`, which joins the cluster, starts the controller and
serves until SIGINT / SIGTERM.

Live views on a cluster: a viewer's WebRTC offer comes to this API, which hands it to the
worker running the camera; the worker answers it (aiortc, on a thread of its own) and the
media flows from the worker's node to the browser. MJPEG is proxied through this API. Each
stream's RTSP output is served by its worker, at the worker node's address; workers sharing
a node take the next free port (``cluster.config.split_cameras`` sets ``port_tries``) and
the rows name the real URL.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from typing import Any

from pipeline.errors import EXIT_INTERRUPTED
from service.views import views_of

log = logging.getLogger("framegraph")
SHORT_ID = 8
"""Hex characters of a Ray node id shown as ``node`` (the full id is ``node_id``)."""


def _short(node_id: str | None) -> str | None:
    return node_id[:SHORT_ID] if node_id else None


class ClusterBackend:
    """The API's backend on a cluster: every call goes to the controller.

    Rows name where a camera runs: ``node`` (the node id's first 8 hex characters, as the
    page shows it), ``node_id`` (the full id, as in the metrics' ``node`` label) and
    ``address`` (the node's IP address); their ``views`` come from the camera's worker
    (its RTSP output at its node's address), or name only this API's paths while the camera
    does not run.

    Args:
        controller: a ``cluster.controller.ClusterController`` (started or starting).
    """

    def __init__(self, controller: Any) -> None:
        self.controller = controller

    def streams(self) -> list[dict[str, Any]]:
        return [{**row, "node": _short(row.get("node")), "node_id": row.get("node"),
                 "views": row.get("views") or views_of(row["name"])}
                for row in self.controller.list_streams()]  # fmt: skip

    def add(self, name: str, url: str) -> None:
        self.controller.add(name, url)

    def remove(self, name: str) -> None:
        self.controller.remove(name)

    def stages(self) -> dict[str, Any]:
        return self.controller.stages()

    def metrics_text(self) -> bytes:
        return self.controller.metrics_text()

    def ready(self) -> bool:
        return self.controller.ready.is_set()

    def live(self, name: str) -> bool:
        return name in self.controller.wanted()

    def live_jpeg(self, name: str, after: int, timeout: float) -> tuple[int, bytes] | None:
        return self.controller.live_jpeg(name, after, timeout)

    def nodes(self) -> list[dict[str, Any]]:
        return [{**node, "node": _short(node["node"]), "node_id": node["node"]}
                for node in self.controller.nodes()]  # fmt: skip

    def webrtc_answer(self, name: str, offer_sdp: str) -> str:
        return self.controller.webrtc_answer(name, offer_sdp)

    def events(self, since: float | None, limit: int, source: str | None) -> list[dict[str, Any]]:
        return self.controller.events(since, limit, source)

    def close_views(self) -> None:
        """Nothing here: the viewers' connections are the workers', closed as they stop."""


def serve_cluster(
    raw: dict[str, Any], address: str, bind: tuple[str, int], token: str | None = None
) -> int:
    """Joins the Ray cluster at ``address``, places the config's cameras on its workers and
    serves the API on ``bind`` until SIGINT / SIGTERM; then the workers finalise their
    outputs, end, and this process leaves the cluster (stopping it if it started it).

    Args:
        raw: the service's raw config (overrides applied; its first source a source group).
        address: ``auto`` or the head's ``HOST:PORT`` (see ``cluster.controller.connect``).
        bind: where to serve the API.
        token: the API's bearer token for changing calls, if any.

    Returns:
        The exit code: 130 once interrupted (as the one-process service).

    Raises:
        ConfigError: no Ray, the cluster cannot be reached, the config or address is wrong.
        FrameGraphError: the starting cameras cannot be placed.
    """
    from cluster.actors import connect, require_ray
    from cluster.controller import ClusterController
    from service.app import create_app
    from service.server import ApiServer

    connect(address)
    ray = require_ray()
    stop = threading.Event()
    server = None
    controller = None

    def on_signal(signum: int, _frame: Any) -> None:
        log.warning("%s: stopping the cameras and their workers", signal.Signals(signum).name)
        stop.set()

    try:
        controller = ClusterController(raw)
        # served before the cameras are placed, so /healthz answers while workers start
        server = ApiServer(create_app(ClusterBackend(controller), token), *bind)
        server.start()
        log.warning("serving the API and the page on %s (cameras on Ray)", server.url)
        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        controller.start()
        while not stop.wait(0.5):  # a short wait: signals are handled between waits
            pass
        return EXIT_INTERRUPTED
    finally:
        if server is not None:
            server.stop()
        if controller is not None:
            print(controller.stop(), file=sys.stderr)  # the end-of-run table, as one process
        ray.shutdown()

"""A worker of the cluster: one FrameGraph graph serving a group of cameras, run as a Ray
actor on some node (the controller wraps :class:`GraphWorker` with ``ray.remote``).

The graph is the config's, built by ``pipeline.config.build_graph``; its first source is a
source group (``kind: sources``) kept open, so cameras come and go while it runs and their
per-source outputs (``{source}`` paths) are written on this worker's node. The class needs
no Ray to run (only :meth:`GraphWorker.node` asks Ray where it is), so it is also usable
and testable in one process.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Any

import stages  # noqa: F401  (registers the stage kinds)
from cluster.config import for_worker
from pipeline.config import build_graph, parse_config
from pipeline.errors import ConfigError, FrameGraphError, StageError
from pipeline.graph import Graph, RunReport
from pipeline.metrics import json_safe
from service.backend import GraphViews
from service.prometheus import metrics_text
from service.streams import listed_rows, stream_states, wait_finalised, web_hub

log = logging.getLogger("framegraph")
STOP_WAIT_S = 30.0
"""How long :meth:`GraphWorker.stop` waits for the graph to drain and finalise its outputs."""
_VIEWS_LOCK = threading.Lock()
"""Makes a worker's WebRTC views once, however many offers come at once (a threaded actor)."""


class GraphWorker:
    """A graph serving cameras, added and removed by name while it runs.

    Construction never raises (a Ray actor whose constructor raises is only seen as dead):
    a config that cannot be built is reported by :meth:`ready`.

    Args:
        config: a raw config (as loaded from YAML) whose first source is ``kind: sources``
            with ``keep_open: true`` (``cluster.config.split_cameras`` makes it).
        name: the worker's name, for logs and metrics, and ``{worker}`` in its sinks' paths.
        workdir: a folder to work in when it exists on this node (relative output paths then
            land where they would in the process that started the worker).
    """

    def __init__(
        self, config: dict[str, Any], name: str = "worker", workdir: str | None = None
    ) -> None:
        self.name = name
        self.graph: Graph | None = None
        self._error: FrameGraphError | None = None
        self._report: RunReport | None = None
        self._done = threading.Event()
        if workdir and os.path.isdir(workdir):
            os.chdir(workdir)  # an actor is a process of its own: nobody else's directory
        try:
            self.graph = build_graph(parse_config(for_worker(config, name), name))
            group = self.graph.source_group()
            if not group.keep_open:
                raise ConfigError(f"{name}: the source group must keep_open (cameras come later)")
        except FrameGraphError as error:
            self._error = error
            self._done.set()
            return
        self._thread = threading.Thread(target=self._run, name=f"{name}-graph", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        assert self.graph is not None
        try:
            self._report = self.graph.run()
            if self._report.error is not None:
                log.error("%s: the graph ended: %s", self.name, self._report.error)
        except Exception as error:  # a bug in a stage must still end the worker visibly
            log.exception("%s: the graph failed", self.name)
            self._error = StageError(f"{self.name}: the graph failed: {error}")
        finally:
            self._done.set()

    def _graph(self) -> Graph:
        """The running graph.

        Raises:
            FrameGraphError: it could not be built, or it has ended (its error, if any).
        """
        if self._error is not None:
            raise self._error
        if self._done.is_set():
            assert self._report is not None
            raise self._report.error or StageError(f"{self.name}: the graph has stopped")
        assert self.graph is not None
        return self.graph

    # ---- life cycle ---------------------------------------------------
    def ready(self, timeout: float = 60.0) -> dict[str, Any]:
        """Waits until every stage has opened; where the worker runs (as :meth:`node`).

        Raises:
            FrameGraphError: the graph could not be built or opened, or ended.
            TimeoutError: the stages took longer than ``timeout`` seconds to open.
        """
        graph = self._graph()
        deadline = time.monotonic() + timeout
        while not graph.ready.wait(0.2):  # also watch the run: opening may fail and end it
            if self._done.is_set():
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: stages did not open in {timeout:.0f} s")
        self._graph()  # raises the run's error if it has ended
        return self.node()

    def ping(self) -> dict[str, Any]:
        """Health: whether the graph still runs, and this node's 1-minute load average."""
        running = self._error is None and not self._done.is_set()
        return {"running": running, "load": os.getloadavg()[0]}

    def stop(self, timeout: float = STOP_WAIT_S) -> dict[str, Any]:
        """Stops the graph: cameras end, queued frames drain, outputs are finalised.

        Returns:
            ``error``: the run's error in one line, or None; ``metrics``: the run's
            ``Metrics.snapshot()`` as JSON-able values (None if the graph was never built),
            for the end-of-run table.
        """
        if self.graph is not None:
            self.graph.stop()
        self._done.wait(timeout)
        metrics = json_safe(self.graph.metrics.snapshot()) if self.graph is not None else None
        if not self._done.is_set():
            late = f"{self.name}: the graph did not stop in {timeout:.0f} s"
            return {"error": late, "metrics": metrics}
        error = self._error or (self._report.error if self._report is not None else None)
        return {"error": None if error is None else str(error), "metrics": metrics}

    # ---- cameras ------------------------------------------------------
    def add_stream(self, name: str, entry: str | dict[str, Any]) -> None:
        """Starts a camera: ``entry`` is any ``--source`` value or a source entry.

        Raises:
            ConfigError: the name is taken or the entry is wrong.
            FrameGraphError: the input cannot be opened (the reason in one line).
        """
        self._graph().add_source(name, entry)

    def remove_stream(self, name: str) -> bool:
        """Ends a camera and waits for its per-source outputs to be finalised.

        Returns:
            True once they are, False if that took too long.

        Raises:
            ConfigError: no camera of that name.
        """
        graph = self._graph()
        graph.remove_source(name)
        return wait_finalised(graph, name)

    def streams(self) -> list[dict[str, Any]]:
        """Every camera as ``service.streams.listed_rows`` lists it: with its ``counts`` and
        ``views`` (``service.views.views_of``): its RTSP output at this node's address (for a sink
        bound to every interface) and the port it really serves on (a second worker on the
        node takes the next free one: ``port_tries``)."""
        return listed_rows(self._graph(), self.node()["address"])

    def events(
        self, since: float | None = None, limit: int = 100, source: str | None = None
    ) -> list[dict[str, Any]]:
        """The newest events of this worker's cameras (``LiveHub.recent_events``), as JSON;
        none without a ``web`` sink."""
        hub = web_hub(self._graph())
        found = hub.recent_events(since, limit, source) if hub is not None else []
        return [event.to_json() for event in found]

    def stages(self) -> dict[str, Any]:
        """Per-stage metrics, as the end-of-run table has them."""
        return json_safe(self._graph().metrics.snapshot()["stages"])

    def metrics_text(self) -> bytes:
        """The graph's metrics in Prometheus' text format."""
        graph = self._graph()
        return metrics_text(graph, lambda: stream_states(graph))

    def live_jpeg(
        self, name: str, after: int = 0, timeout: float = 1.0
    ) -> tuple[int, bytes] | None:
        """Camera ``name``'s newest frame as the graph's ``web`` sink has it, as JPEG, once
        it is newer than frame number ``after`` (or ``timeout`` seconds passed): (its number,
        the bytes). None without a ``web`` sink or before the camera's first frame there.
        Numbers count per worker: they start again when a camera moves."""
        hub = web_hub(self._graph())
        feed = hub.feeds.get(name) if hub is not None else None
        if feed is None:
            return None
        feed.wait_newer(after, timeout)
        number, data = feed.jpeg()
        return (number, data) if data else None

    def node(self) -> dict[str, Any]:
        """Where this worker runs: Ray's node id (None outside Ray), the node's address and
        host name, and the worker's process id."""
        node_id, address = None, None
        try:
            import ray

            if ray.is_initialized():
                node_id = ray.get_runtime_context().get_node_id()
                address = ray.util.get_node_ip_address()
        except ImportError:
            pass
        return {"node": node_id, "address": address, "host": socket.gethostname(),
                "pid": os.getpid()}  # fmt: skip

    # ---- live views ---------------------------------------------------
    _views: GraphViews | None = None
    """The WebRTC viewers of this worker's cameras, made at the first offer."""

    def webrtc_answer(self, name: str, offer_sdp: str) -> str:
        """The SDP answer to a browser's WebRTC offer (forwarded by the API) to watch camera
        ``name`` from this worker's node: its ``web`` sink's frames are encoded here once
        for all viewers (``service.webrtc``, aiortc on an event loop of its own thread) and
        sent straight to the browser (the answer's ICE candidates are this node's
        addresses). The connection closes when the browser goes away, when the camera ends
        here (removed, or moved away with this worker's end) and when the graph stops (its
        ``web`` sink ends every feed).

        Raises:
            NoLiveView: the graph has no ``web`` sink.
            NoSuchStream: no camera of that name runs here (or it has ended).
            ConfigError: the offer cannot be answered (not SDP, no H.264 video).
            NotRunningNow: no answer in time.
        """
        graph = self._graph()
        with _VIEWS_LOCK:
            if self._views is None:
                self._views = GraphViews(graph)
            views = self._views
        return views.answer(name, offer_sdp)

    def close_views(self) -> None:
        """Closes every WebRTC viewer's connection here (a later offer opens new ones)."""
        if self._views is not None:
            self._views.close()

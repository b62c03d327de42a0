"""What the HTTP app serves: a backend holding the cameras, in this process or on a cluster.

``service.app.create_app`` takes a :class:`Backend`; :class:`GraphBackend` is a graph running
in this process, ``service.cluster_app.ClusterBackend`` a ``cluster.controller``'s cameras
spread over Ray workers. The errors below are how a backend tells the app which answer to
give (409, 404, 503, 501); any other ``FrameGraphError`` is a 400 with its one line.
"""

from __future__ import annotations

from typing import Any, Protocol

from pipeline.errors import ConfigError, FrameGraphError
from pipeline.graph import Graph
from pipeline.metrics import json_safe
from service.prometheus import metrics_text
from service.streams import listed_rows, stream_states, wait_finalised, web_hub
from service.webrtc import ThreadedViews, TooManyViewers
from stages.sinks.web import LiveHub


class StreamExists(ConfigError):
    """A camera of that name is already wanted (the API answers 409)."""


class NoSuchStream(ConfigError):
    """No camera of that name is wanted (the API answers 404)."""


class NoCapacity(FrameGraphError):
    """No worker runs and none fits on the cluster (the API answers 503)."""


class NotRunningNow(FrameGraphError):
    """The camera is wanted but cannot be served now: being placed again after losing its
    worker, or its worker did not answer in time (the API answers 503: try again)."""


class NoLiveView(FrameGraphError):
    """The config has no ``web`` sink: no frames to watch live (the API answers 501)."""


class Backend(Protocol):
    """The cameras behind the API. Every method may block (the app calls them off its
    event loop)."""

    def streams(self) -> list[dict[str, Any]]:
        """Every camera as ``service.streams.stream_rows`` lists it (plus where it runs), with
        its ``views`` (``service.views``)."""
        ...

    def add(self, name: str, url: str) -> None:
        """Starts a camera.

        Raises:
            StreamExists: the name is taken.
            NoCapacity: nowhere to run it.
            FrameGraphError: the input cannot be opened (one line).
        """
        ...

    def remove(self, name: str) -> None:
        """Ends a camera; returns once its outputs are finalised.

        Raises:
            NoSuchStream: no camera of that name.
        """
        ...

    def stages(self) -> dict[str, Any]:
        """Per-stage metrics (per worker on a cluster)."""
        ...

    def metrics_text(self) -> bytes:
        """The Prometheus exposition now."""
        ...

    def ready(self) -> bool:
        """Every stage opened (every starting camera placed, on a cluster)."""
        ...

    def live(self, name: str) -> bool:
        """Camera ``name`` is wanted and not ended (its live view may still show frames)."""
        ...

    def live_jpeg(self, name: str, after: int, timeout: float) -> tuple[int, bytes] | None:
        """Camera ``name``'s newest frame once newer than number ``after`` (or ``timeout``
        seconds passed): (its number, JPEG bytes); None when there is none (yet)."""
        ...

    def nodes(self) -> list[dict[str, Any]] | None:
        """The cluster's nodes; None outside a cluster."""
        ...

    def events(self, since: float | None, limit: int, source: str | None) -> list[dict[str, Any]]:
        """The newest ``limit`` events of the zones and lines (of ``source`` only when
        given, captured after ``since``, UNIX seconds, when given), oldest first, as JSON
        (``pipeline.results.Event.to_json``)."""
        ...

    def webrtc_answer(self, name: str, offer_sdp: str) -> str:
        """The SDP answer to a viewer's WebRTC offer for camera ``name``: the media then
        flows from where the camera runs (this process, or its worker's node).

        Raises:
            NoSuchStream: no such camera, or it has ended.
            NotRunningNow: it is being placed again, or no answer came in time.
            NoLiveView: the config has no ``web`` sink.
            FrameGraphError: the offer cannot be answered (one line).
        """
        ...

    def close_views(self) -> None:
        """Closes the WebRTC viewers' connections this process holds (the app's end)."""
        ...


class GraphViews:
    """A running graph's WebRTC viewers, in this process: answered from its ``web`` sink's
    frames on an event loop of their own thread (``service.webrtc.ThreadedViews``). Shared by
    the one-process backend and a cluster worker.

    Args:
        graph: the graph.
    """

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        hub = web_hub(graph)
        self.webrtc = ThreadedViews(hub) if hub is not None else None

    def answer(self, name: str, offer_sdp: str) -> str:
        """The SDP answer for a viewer's offer to watch ``name``; its connection closes when
        the browser goes away or the stream ends (removed, or the graph stopped).

        Raises:
            NoLiveView: the graph has no ``web`` sink.
            NoSuchStream: no input of that name, or it has ended.
            ConfigError: the offer cannot be answered (not SDP, no H.264 video).
            NotRunningNow: no answer in time.
        """
        if self.webrtc is None:
            raise NoLiveView("no live view: the config has no web sink (kind: web)")
        given = self.graph.source_group().inputs.get(name)
        if given is None or given.ended:
            raise NoSuchStream(f"no live stream named {name!r}")
        try:
            return self.webrtc.answer(name, offer_sdp)
        except ValueError as error:
            raise ConfigError(str(error)) from None
        except (TimeoutError, TooManyViewers) as error:
            raise NotRunningNow(str(error)) from None

    def close(self) -> None:
        """Closes every viewer's connection (a later answer opens new ones)."""
        if self.webrtc is not None:
            self.webrtc.close()


class GraphBackend:
    """A graph running in this process (its first source a source group kept open).

    Args:
        graph: the graph, running or about to run.
    """

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.group = graph.source_group()
        self.hub = web_hub(graph) or LiveHub()  # without a web sink: no frame ever comes
        self.views = GraphViews(graph)

    def streams(self) -> list[dict[str, Any]]:
        return listed_rows(self.graph)  # wildcard hosts kept: the app names the one it serves

    def add(self, name: str, url: str) -> None:
        try:
            self.graph.add_source(name, url)
        except StreamExists:
            raise
        except ConfigError as error:
            # the graph says a taken name in its words; the app knows only the classes
            if "is running" in str(error):
                raise StreamExists(str(error)) from None
            raise

    def remove(self, name: str) -> None:
        try:
            self.graph.remove_source(name)
        except ConfigError as error:
            raise NoSuchStream(str(error)) from None
        wait_finalised(self.graph, name)  # answer once its files are complete

    def stages(self) -> dict[str, Any]:
        return json_safe(self.graph.metrics.snapshot()["stages"])

    def metrics_text(self) -> bytes:
        return metrics_text(self.graph, lambda: stream_states(self.graph))

    def ready(self) -> bool:
        return self.graph.ready.is_set()

    def live(self, name: str) -> bool:
        given = self.group.inputs.get(name)
        feed = self.hub.feeds.get(name) if self.hub is not None else None
        return (feed is not None and not feed.ended) or (given is not None and not given.ended)

    def live_jpeg(self, name: str, after: int, timeout: float) -> tuple[int, bytes] | None:
        feed = self.hub.feeds.get(name) if self.hub is not None else None
        if feed is None or feed.ended:
            return None
        if feed.wait_newer(after, timeout) == after or feed.ended:
            return None
        number, data = feed.jpeg()
        return (number, data) if data else None

    def nodes(self) -> None:
        return None

    def events(self, since: float | None, limit: int, source: str | None) -> list[dict[str, Any]]:
        return [e.to_json() for e in self.hub.recent_events(since, limit, source)]

    def webrtc_answer(self, name: str, offer_sdp: str) -> str:
        return self.views.answer(name, offer_sdp)

    def close_views(self) -> None:
        self.views.close()

"""The HTTP app beside a running graph (FastAPI): streams, stages, metrics, health, the page.

- ``GET /api/streams``: every input with its url (``redact``: no user info, token values
  masked), state (connecting, live, reconnecting, ended, failed), fps, end-to-end latency
  p50 / p95, drops, frames, outputs, and ``views`` (``service.views``): ``webrtc`` and
  ``mjpeg``, this API's paths for its live view, and ``rtsp``, the URL of its per-source
  RTSP output once that serves (a wildcard bind address replaced by the host this API was
  reached at; on a cluster by the worker node's address; the port the one really bound),
  and ``counts``: the newest occupancy of its zones and crossings of its lines.
- ``GET /api/events?since=&limit=&source=``: the newest events of zones and lines (enter,
  leave, cross; ``pipeline.results.Event``), oldest first, as the ``web`` sink saw them
  (from every worker on a cluster): after ``since`` (UNIX seconds), at most ``limit``.
- ``POST /api/streams`` ``{"name", "url"}`` (any ``--source`` value): 201, the input starts
  through the running graph; 409 on a name in use, 422 on a bad body, 400 with the one-line
  reason when it cannot be opened.
- ``DELETE /api/streams/{name}``: its outputs finalised, 204; 404 for no such input.
- ``GET /api/stages``: per-stage metrics as in the end table (per worker on a cluster).
  ``GET /metrics``: Prometheus. ``GET /api/nodes``: a cluster's nodes (404 outside one).
- ``GET /healthz``: the process serves; ``GET /readyz``: every stage opened (503 before).
- ``GET /``: the web page; ``POST /webrtc/{name}`` (an SDP offer): a stream's annotated
  video over WebRTC (``service.webrtc``), 404 for no such stream, 400 for an offer it cannot
  answer, 501 without a ``web`` sink; on a cluster the offer goes to the camera's worker,
  which answers it and sends the media from its node (503 while the camera is being placed
  again). ``GET /live/{name}.mjpg``: the same as MJPEG (proxied from the worker on a
  cluster), the page's fallback.

The cameras are a backend's (``service.backend``): a graph in this process, or a
``cluster.controller`` placing them on Ray workers (``service.cluster_app``).

With a token, the mutating calls need ``Authorization: Bearer <token>`` (401 otherwise).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import re
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request, Response
from fastapi.responses import FileResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from pipeline.errors import ConfigError, FrameGraphError
from pipeline.graph import Graph
from service.backend import (
    Backend,
    GraphBackend,
    NoCapacity,
    NoLiveView,
    NoSuchStream,
    NotRunningNow,
    StreamExists,
)
from service.views import rows_with_host
from stages.sinks.web import RECENT_EVENTS

STATIC = Path(__file__).resolve().parent / "static"
LIVE_VIEWERS = 32
"""Threads waiting for live frames at once (one per MJPEG viewer): a cluster backend's
wait is a blocking Ray call, kept off the event loop and out of the default pool."""
T = TypeVar("T")


class NewStream(BaseModel):
    """A stream to add: its name (its source id) and any ``--source`` value."""

    name: str = Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,63}$")
    url: str = Field(min_length=1)


def _http_error(error: FrameGraphError) -> HTTPException:
    """A backend's error -> the answer: 409 taken, 404 unknown, 503 no room or not running
    now, 501 no live view, else 400."""
    for kind, status in ((StreamExists, 409), (NoSuchStream, 404), (NoCapacity, 503),
                         (NotRunningNow, 503), (NoLiveView, 501)):  # fmt: skip
        if isinstance(error, kind):
            return HTTPException(status, str(error))
    return HTTPException(400, str(error))


def create_app(backend: Backend | Graph, token: str | None = None) -> FastAPI:
    """The app serving ``backend``'s cameras.

    Args:
        backend: the cameras: a :class:`~service.backend.Backend`, or a graph in this
            process (which must have a source group, ``kind: sources``).
        token: when set, ``POST`` and ``DELETE`` need ``Authorization: Bearer <token>``.
    """
    cameras: Backend = GraphBackend(backend) if isinstance(backend, Graph) else backend
    pool = ThreadPoolExecutor(LIVE_VIEWERS, thread_name_prefix="live")

    async def off_loop(call: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(pool, call, *args)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await off_loop(cameras.close_views)  # every viewer's connection: no socket outlives it
        pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="FrameGraph", summary="Cameras, stages and metrics of a running graph",
                  lifespan=lifespan)  # fmt: skip
    app.state.backend = cameras

    def authorised(authorization: str | None = Header(default=None)) -> None:
        if token is None:
            return
        if not hmac.compare_digest(authorization or "", f"Bearer {token}"):
            raise HTTPException(401, "this call needs Authorization: Bearer <token>")

    def require_live(name: str) -> None:
        if not cameras.live(name):
            raise HTTPException(404, f"no live stream named {name!r}")

    # plain ``def`` endpoints: FastAPI runs them in its thread pool (backends block)
    @app.get("/api/streams")
    def list_streams(request: Request) -> list[dict[str, Any]]:
        # an RTSP output bound to every interface is opened at the host the client reached
        return rows_with_host(cameras.streams(), request.url.hostname)

    @app.post("/api/streams", status_code=201, dependencies=[Depends(authorised)])
    def add_stream(stream: NewStream) -> dict[str, str]:
        try:
            cameras.add(stream.name, stream.url)
        except FrameGraphError as error:
            raise _http_error(error) from None
        return {"name": stream.name}

    @app.delete("/api/streams/{name}", status_code=204, dependencies=[Depends(authorised)])
    def remove_stream(name: str) -> Response:
        try:
            cameras.remove(name)
        except FrameGraphError as error:
            raise _http_error(error) from None
        return Response(status_code=204)

    @app.get("/api/stages")
    def stages() -> dict[str, Any]:
        return cameras.stages()

    @app.get("/api/events")
    def events(
        since: float | None = None,
        limit: int = Query(default=100, ge=0, le=RECENT_EVENTS),
        source: str | None = None,
    ) -> list[dict[str, Any]]:
        return cameras.events(since, limit, source)

    @app.get("/api/nodes")
    def nodes() -> list[dict[str, Any]]:
        found = cameras.nodes()
        if found is None:
            raise HTTPException(404, "not a cluster: this service runs its graph itself")
        return found

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(cameras.metrics_text(), media_type="text/plain; version=0.0.4")

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "serving"}

    @app.get("/readyz")
    def readyz() -> Response:
        ready = cameras.ready()
        body = '{"status": "ready"}' if ready else '{"status": "opening stages"}'
        return Response(body, 200 if ready else 503, media_type="application/json")

    @app.get("/live/{name}.mjpg")
    async def mjpeg(name: str) -> StreamingResponse:
        await off_loop(require_live, name)

        async def parts() -> AsyncIterator[bytes]:  # one JPEG per new frame; slow: skips
            number = 0
            while True:
                got = await off_loop(cameras.live_jpeg, name, number, 1.0)
                if got is None:  # no new frame (not started yet, or ended: then it is over)
                    if not await off_loop(cameras.live, name):
                        return
                    await asyncio.sleep(0.1)
                    continue
                number, data = got  # a moved camera's numbers start again: taken as new
                yield (b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                       + str(len(data)).encode() + b"\r\n\r\n" + data + b"\r\n")  # fmt: skip

        return StreamingResponse(parts(), media_type="multipart/x-mixed-replace; boundary=frame")

    @app.post("/webrtc/{name}", status_code=201)
    async def webrtc(name: str, request: Request) -> Response:
        """WHEP-style: the body is the viewer's SDP offer, the answer comes back (from the
        camera's worker, on a cluster)."""
        await off_loop(require_live, name)
        offer = (await request.body()).decode(errors="replace")
        if "v=0" not in offer:
            raise HTTPException(400, "the body must be an SDP offer (application/sdp)")
        try:
            answer = await off_loop(cameras.webrtc_answer, name, offer)
        except FrameGraphError as error:
            raise _http_error(error) from None
        return Response(answer, 201, media_type="application/sdp")

    @app.get("/")
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def parse_bind(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) -> (host, port).

    Raises:
        ConfigError: not HOST:PORT.
    """
    match = re.fullmatch(r"\[?([^\]]*?)\]?:(\d{1,5})", value)
    if not match or not match.group(1) or int(match.group(2)) > 65535:
        raise ConfigError(f"--api {value}: expected HOST:PORT, e.g. 127.0.0.1:8080")
    return match.group(1), int(match.group(2))


def check_exposure(host: str, token: str | None, insecure: bool) -> None:
    """Serving beyond this machine needs a token (or ``--api-insecure``).

    Raises:
        ConfigError: a non-loopback address without a token or ``--api-insecure``.
    """
    if host in ("127.0.0.1", "localhost", "::1") or token or insecure:
        return
    raise ConfigError(
        f"--api {host}: serving beyond this machine needs --api-token (or FRAMEGRAPH_API_TOKEN);"
        " --api-insecure serves without one"
    )

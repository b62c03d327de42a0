"""The HTTP app beside a running graph (FastAPI): streams, stages, metrics, health, the page.

- ``GET /api/streams``: every input with its url (``redact``: no user info, token values
  masked), state (connecting, live, reconnecting, ended, failed), fps, end-to-end latency
  p50 / p95, drops, frames, outputs.
- ``POST /api/streams`` ``{"name", "url"}`` (any ``--source`` value): 201, the input starts
  through the running graph; 409 on a name in use, 422 on a bad body, 400 with the one-line
  reason when it cannot be opened.
- ``DELETE /api/streams/{name}``: its outputs finalised, 204; 404 for no such input.
- ``GET /api/stages``: per-stage metrics as in the end table. ``GET /metrics``: Prometheus.
- ``GET /healthz``: the process serves; ``GET /readyz``: every stage opened (503 before).
- ``GET /``: the web page; ``POST /webrtc/{name}`` (an SDP offer): a stream's annotated
  video over WebRTC (``service.webrtc``); ``GET /live/{name}.mjpg``: the same as MJPEG, the
  page's fallback.

With a token, the mutating calls need ``Authorization: Bearer <token>`` (401 otherwise).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Header, HTTPException, Request, Response
from fastapi.responses import FileResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from pipeline.errors import ConfigError, FrameGraphError
from pipeline.graph import Graph
from pipeline.metrics import json_safe
from service.prometheus import metrics_text
from service.streams import stream_rows, stream_states, wait_finalised
from service.webrtc import WebRTCViews
from stages.sinks.web import LiveHub, WebSink

STATIC = Path(__file__).resolve().parent / "static"


class NewStream(BaseModel):
    """A stream to add: its name (its source id) and any ``--source`` value."""

    name: str = Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,63}$")
    url: str = Field(min_length=1)


def create_app(graph: Graph, token: str | None = None) -> FastAPI:
    """The app serving ``graph`` (which must have a source group, ``kind: sources``).

    Args:
        graph: the graph, running or about to run in this process.
        token: when set, ``POST`` and ``DELETE`` need ``Authorization: Bearer <token>``.
    """
    group = graph.source_group()
    hub = next((n.stage.hub for n in graph.nodes.values() if isinstance(n.stage, WebSink)),
               LiveHub())  # fmt: skip
    views = WebRTCViews(hub)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await views.close_all()  # every viewer's connection, so no socket outlives the app

    app = FastAPI(title="FrameGraph", summary="Cameras, stages and metrics of a running graph",
                  lifespan=lifespan)  # fmt: skip
    app.state.views = views

    def authorised(authorization: str | None = Header(default=None)) -> None:
        if token is None:
            return
        if not hmac.compare_digest(authorization or "", f"Bearer {token}"):
            raise HTTPException(401, "this call needs Authorization: Bearer <token>")

    def states() -> dict[str, str]:
        return stream_states(graph)

    def require_live(name: str) -> None:
        given = group.inputs.get(name)
        if name not in hub.feeds and (given is None or given.ended):
            raise HTTPException(404, f"no live stream named {name!r}")

    @app.get("/api/streams")
    def list_streams() -> list[dict[str, Any]]:
        return stream_rows(graph)

    @app.post("/api/streams", status_code=201, dependencies=[Depends(authorised)])
    def add_stream(stream: NewStream) -> dict[str, str]:
        try:
            graph.add_source(stream.name, stream.url)
        except ConfigError as error:
            taken = "is running" in str(error)
            raise HTTPException(409 if taken else 400, str(error)) from None
        except FrameGraphError as error:
            raise HTTPException(400, str(error)) from None
        return {"name": stream.name}

    @app.delete("/api/streams/{name}", status_code=204, dependencies=[Depends(authorised)])
    def remove_stream(name: str) -> Response:
        try:
            graph.remove_source(name)
        except ConfigError as error:
            raise HTTPException(404, str(error)) from None
        wait_finalised(graph, name)  # answer once its files are complete
        return Response(status_code=204)

    @app.get("/api/stages")
    def stages() -> dict[str, Any]:
        return json_safe(graph.metrics.snapshot()["stages"])

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(metrics_text(graph, states), media_type="text/plain; version=0.0.4")

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "serving"}

    @app.get("/readyz")
    def readyz() -> Response:
        ready = graph.ready.is_set()
        body = '{"status": "ready"}' if ready else '{"status": "opening stages"}'
        return Response(body, 200 if ready else 503, media_type="application/json")

    @app.get("/live/{name}.mjpg")
    async def mjpeg(name: str) -> StreamingResponse:
        require_live(name)

        async def parts():  # one JPEG per new frame; a slow viewer skips frames
            number = 0
            while True:
                feed = hub.feeds.get(name)
                if feed is None:  # not started yet (or ended: then the stream is over)
                    if name not in group.inputs or group.inputs[name].ended:
                        return
                    await asyncio.sleep(0.1)
                    continue
                newest = await asyncio.to_thread(feed.wait_newer, number, 1.0)
                if feed.ended:
                    return
                if newest == number:
                    continue
                number, data = await asyncio.to_thread(feed.jpeg)
                yield (b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                       + str(len(data)).encode() + b"\r\n\r\n" + data + b"\r\n")  # fmt: skip

        return StreamingResponse(parts(), media_type="multipart/x-mixed-replace; boundary=frame")

    @app.post("/webrtc/{name}", status_code=201)
    async def webrtc(name: str, request: Request) -> Response:
        """WHEP-style: the body is the viewer's SDP offer, the answer comes back."""
        require_live(name)
        offer = (await request.body()).decode()
        if "v=0" not in offer:
            raise HTTPException(400, "the body must be an SDP offer (application/sdp)")
        answer = await views.answer(name, offer)
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

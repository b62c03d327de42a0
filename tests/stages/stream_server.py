"""A real local live stream for the stream source's tests: MPEG-TS over HTTP on 127.0.0.1.

``encode_clip`` writes a short H.264 MPEG-TS clip once (synthetic scene with the
frame counter burned in, see ``stages.sources.synthetic.read_counter``);
``LiveServer`` serves it on ``http://127.0.0.1:PORT/live.ts`` as an endless
HTTP response (no Content-Length), paced to real time frame by frame, from the
clip's first frame for every new connection (each connection's PTS start again,
as a restarted camera's would).

``stop()`` is a real outage: the listening socket is closed and every open client
connection is shut down, so a client sees the loss at once; ``LiveServer(...,
port=old.port)`` brings the server back on the same port. ``stall()`` keeps the
current connections open but sends nothing more on them (a hung camera).
Everything binds to loopback only and every thread is joined on ``stop()``.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import av

from stages.sources.synthetic import SyntheticSource
from tests.conftest import free_port  # noqa: F401  (re-exported for the tests)

HOST = "127.0.0.1"
FPS = 25
PATH = "/live.ts"


@dataclass(frozen=True)
class Clip:
    """An encoded clip and, per frame, where its bytes start and when it is due."""

    data: bytes
    offsets: list[int]  # byte offset of each video packet, in decode order
    times: list[float]  # seconds after the first frame
    duration: float

    def chunks(self) -> list[tuple[float, bytes]]:
        """(due time in s, bytes) per frame; the first chunk carries the PAT/PMT too."""
        starts = [0, *self.offsets[1:]]
        ends = [*self.offsets[1:], len(self.data)]
        return [(t, self.data[a:b]) for t, a, b in zip(self.times, starts, ends, strict=True)]


def encode_clip(
    path: Path, seconds: float = 10.0, size: tuple[int, int] = (160, 120), fps: int = FPS
) -> Clip:
    """Encode ``seconds`` of the synthetic scene as H.264 (zerolatency, no B-frames,
    a keyframe every second) in MPEG-TS, and index it by frame."""
    width, height = size
    count = round(seconds * fps)
    scene = SyntheticSource(width=width, height=height, fps=fps, frames=count, objects=3)
    with av.open(str(path), "w", format="mpegts") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "tune": "zerolatency", "bf": "0", "g": str(fps)}
        for i in range(count):
            frame = av.VideoFrame.from_ndarray(scene.render(i), format="bgr24")
            frame.pts = i
            container.mux(stream.encode(frame.reformat(format="yuv420p")))
        container.mux(stream.encode(None))
    offsets, times = [], []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for packet in container.demux(stream):
            if packet.size == 0 or packet.pos is None or packet.pos < 0:
                continue
            offsets.append(packet.pos)
            times.append(float(packet.dts * stream.time_base))
    times = [t - times[0] for t in times]
    if len(offsets) != count or offsets != sorted(offsets):
        raise RuntimeError(f"unexpected clip layout: {len(offsets)} packets for {count} frames")
    return Clip(path.read_bytes(), offsets, times, count / fps)


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    timeout = 5.0  # socket timeout: a client that stops reading cannot hold a thread forever

    def do_GET(self) -> None:
        owner = self.server.owner
        if self.path != PATH:
            self.send_error(404)
            return
        stalled = threading.Event()
        with owner.lock:
            owner.connections[self.connection] = stalled
            owner.requests += 1
        try:
            self.send_response(200)
            self.send_header("Content-Type", "video/mp2t")
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            self._stream(owner, stalled)
        except OSError:
            pass  # client went away, or the server shut the connection down
        finally:
            with owner.lock:
                owner.connections.pop(self.connection, None)

    def _stream(self, owner: LiveServer, stalled: threading.Event) -> None:
        clip = owner.clip
        chunks = clip.chunks()
        limit = owner.bytes_per_connection
        start = time.monotonic()
        loop = 0
        sent = 0
        while not owner.closing.is_set():
            for due, data in chunks:
                delay = start + (loop * clip.duration + due) / owner.speed - time.monotonic()
                if owner.closing.wait(max(delay, 0.0)):
                    return
                if stalled.is_set():  # keep the connection open, send nothing more
                    owner.closing.wait()
                    return
                if limit is not None and sent + len(data) >= limit:
                    self.wfile.write(data[: limit - sent])
                    return
                self.wfile.write(data)
                sent += len(data)
            loop += 1

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep test output quiet


class _HTTPServer(ThreadingHTTPServer):
    allow_reuse_address = True  # SO_REUSEADDR: a restart rebinds the same port at once
    daemon_threads = False
    block_on_close = True  # server_close() joins the handler threads

    def __init__(self, owner: LiveServer, port: int) -> None:
        self.owner = owner
        super().__init__((HOST, port), _Handler)

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client vanishing mid-response is expected here


class LiveServer:
    """Serve ``clip`` live on ``http://127.0.0.1:port/live.ts`` until ``stop()``.

    Args:
        clip: from ``encode_clip``.
        port: 0 picks a free port; pass a stopped server's port to restart it there.
        bytes_per_connection: close each connection after this many bytes (a
            flapping server that never gets a whole frame out).
        speed: pace at this multiple of real time (> 1: media time runs ahead of
            the clock, as with a server that bursts its buffer).
    """

    def __init__(
        self,
        clip: Clip,
        port: int = 0,
        bytes_per_connection: int | None = None,
        speed: float = 1.0,
    ) -> None:
        self.clip = clip
        self.bytes_per_connection = bytes_per_connection
        self.speed = speed
        self.lock = threading.Lock()
        self.connections: dict[socket.socket, threading.Event] = {}
        self.requests = 0
        self.closing = threading.Event()
        self._httpd = _HTTPServer(self, port)
        self.port: int = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"live-server-{self.port}",
            daemon=True,
        )
        self._thread.start()
        self.running = True

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}{PATH}"

    def open_connections(self) -> int:
        with self.lock:
            return len(self.connections)

    def stall(self) -> None:
        """Current connections stay open but get no more data; new ones stream normally."""
        with self.lock:
            for stalled in self.connections.values():
                stalled.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop listening, cut every client connection, join every thread."""
        if not self.running:
            return
        self.running = False
        self.closing.set()
        self._httpd.shutdown()  # serve_forever returns; no new connections accepted
        with self.lock:
            connections = list(self.connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._httpd.server_close()  # closes the listening socket, joins handler threads
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise RuntimeError(f"live server on port {self.port} did not stop")


class Station:
    """A ``LiveServer`` that can go down and come back on the same port and URL."""

    def __init__(self, clip: Clip, **options: object) -> None:
        self.clip = clip
        self.options = options
        self.server = LiveServer(clip, **options)  # type: ignore[arg-type]
        self.port = self.server.port
        self.url = self.server.url
        self._earlier_requests = 0

    @property
    def requests(self) -> int:
        """GET requests for the stream, over every server run."""
        return self._earlier_requests + self.server.requests

    def stall(self) -> None:
        self.server.stall()

    def stop(self) -> None:
        self.server.stop()

    def restart(self) -> None:
        """A new server on the same port (after stopping the current one if needed)."""
        self.server.stop()
        self._earlier_requests += self.server.requests
        self.server = LiveServer(self.clip, port=self.port, **self.options)  # type: ignore[arg-type]


class SilentServer:
    """Accepts TCP connections (the kernel's backlog does) but never answers."""

    def __init__(self) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind((HOST, 0))
        self._socket.listen(8)
        self.port: int = self._socket.getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}{PATH}"

    def close(self) -> None:
        self._socket.close()

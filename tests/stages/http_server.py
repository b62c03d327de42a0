"""Real HTTP servers on 127.0.0.1 for the finite-input tests: a folder served with byte
ranges (``FolderServer``, able to cut a response part-way as a flaky link does) and a live
HLS playlist that grows one segment per segment duration (``GrowingPlaylist``).

Both bind loopback only, serve each request on its own thread, and join them on ``stop()``.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HOST = "127.0.0.1"
CHUNK = 16_384
RANGE = re.compile(r"bytes=(\d+)-(\d*)$")


class _Server(ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = False
    block_on_close = True

    def __init__(self, owner: FolderServer | GrowingPlaylist, port: int) -> None:
        self.owner = owner
        super().__init__((HOST, port), _Handler)

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client leaving mid-response (or a cut) is expected here


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = 5.0

    def do_GET(self) -> None:
        with contextlib.suppress(OSError):  # the client went away
            self.server.owner.answer(self)

    def do_HEAD(self) -> None:
        self.server.owner.answer(self, body=False)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Serving:
    """Start / stop and the URL, shared by both servers."""

    def __init__(self, port: int = 0) -> None:
        self._httpd = _Server(self, port)  # type: ignore[arg-type]
        self.port: int = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def url(self, path: str) -> str:
        return f"http://{HOST}:{self.port}/{path}"

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)


class FolderServer(_Serving):
    """Serves the files of ``root`` with ``Accept-Ranges: bytes`` (``Range: bytes=A-[B]``
    answered 206), as web servers and object stores do.

    Args:
        root: the folder.
        cut_at: byte offset where a response is cut short (its connection closed although
            its Content-Length promised more), for ``cuts`` responses that get that far;
            None: never. Responses from byte 0 are never cut: FFmpeg reads only an MP4's
            first atoms from that one and moves on, but the socket buffers may take its
            bytes up to the cut before it has gone.
        cuts: how many responses are cut (-1: every one that reaches ``cut_at``).
    """

    def __init__(self, root: Path, cut_at: int | None = None, cuts: int = 1) -> None:
        self.root, self.cut_at, self.cuts_left = root, cut_at, cuts
        self.lock = threading.Lock()
        self.requests: list[tuple[str, int, int]] = []  # (path, first byte asked, cuts before)
        self.cut_count = 0
        super().__init__()

    def answer(self, handler: _Handler, body: bool = True) -> None:
        path = self.root / handler.path.lstrip("/").split("?")[0]
        if not path.is_file():
            handler.send_error(404)
            return
        data = path.read_bytes()
        asked = RANGE.match(handler.headers.get("Range", ""))
        start = int(asked.group(1)) if asked else 0
        end = int(asked.group(2)) + 1 if asked and asked.group(2) else len(data)
        with self.lock:
            self.requests.append((handler.path, start, self.cut_count))
        handler.send_response(206 if asked else 200)
        handler.send_header("Accept-Ranges", "bytes")
        handler.send_header("Content-Length", str(end - start))
        if asked:
            handler.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
        handler.end_headers()
        position = start
        while body and position < end:
            stop = min(position + CHUNK, end)
            with self.lock:
                cut = self.cut_at is not None and self.cuts_left != 0 and start > 0
                if cut and position < self.cut_at <= stop:
                    stop = self.cut_at
                    self.cuts_left -= 1
                    self.cut_count += 1
                else:
                    cut = False
            handler.wfile.write(data[position:stop])
            position = stop
            if cut:
                handler.wfile.flush()
                handler.close_connection = True
                return  # the promised rest never comes


class GrowingPlaylist(_Serving):
    """A live HLS playlist at ``/live.m3u8`` over the segments FFmpeg wrote to ``folder``
    (``index0.ts``, ``index1.ts``, ... of ``seconds`` each): one more is listed every
    ``seconds``, none at first but one, and no ``#EXT-X-ENDLIST`` ever.
    """

    def __init__(self, folder: Path, seconds: float, port: int = 0) -> None:
        self.folder, self.seconds = folder, seconds
        self.count = len(list(folder.glob("index*.ts")))
        self.started = time.monotonic()
        super().__init__(port)

    def listed(self) -> int:
        """Segments in the playlist now."""
        return min(1 + int((time.monotonic() - self.started) / self.seconds), self.count)

    def answer(self, handler: _Handler, body: bool = True) -> None:
        name = handler.path.lstrip("/")
        if name == "live.m3u8":
            lines = ["#EXTM3U", "#EXT-X-VERSION:3", f"#EXT-X-TARGETDURATION:{self.seconds:g}",
                     "#EXT-X-MEDIA-SEQUENCE:0"]  # fmt: skip
            for i in range(self.listed()):
                lines += [f"#EXTINF:{self.seconds:.6f},", f"index{i}.ts"]
            data, kind = ("\n".join(lines) + "\n").encode(), "application/vnd.apple.mpegurl"
        elif (self.folder / name).is_file():
            data, kind = (self.folder / name).read_bytes(), "video/mp2t"
        else:
            handler.send_error(404)
            return
        handler.send_response(200)
        handler.send_header("Content-Type", kind)
        handler.send_header("Content-Length", str(len(data)))
        handler.send_header("Cache-Control", "no-cache")
        handler.end_headers()
        if body:
            handler.wfile.write(data)

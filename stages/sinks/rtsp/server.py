"""An RTSP/1.0 server (RFC 2326) that serves live H.264 to many clients.

Shape: one listening thread; per connection, one thread reading requests; per
playing client, one sender thread draining that client's bounded packet queue.
The encoder side (``Mount.publish``) only appends to the queues and never
blocks, so a slow or stalled client cannot slow the pipeline or other clients:
when its queue is full it is emptied and the client resumes at the next
keyframe (the drop is counted). A client joining mid-stream also starts at the
next keyframe, which carries SPS/PPS, so it shows a picture within one keyframe
interval.

Transports: RTP over the RTSP TCP connection (interleaved, ``$`` framing) and
RTP over UDP unicast to the client's ports. No RTCP is sent; FFmpeg and
GStreamer clients play without sender reports.

Robustness: requests are size-limited, unknown or malformed input gets a 4xx/5xx
answer or closes that one connection, and nothing a client sends can stop the
server or reach another client.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import socket
import threading
from collections import deque
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from stages.sinks.rtsp.auth import Credentials

log = logging.getLogger("framegraph")

MAX_HEADER = 8192
MAX_BODY = 65536
MAX_CONNECTIONS = 64
TCP_SEND_BUFFER = 256 * 1024
SESSION_TIMEOUT = 60
METHODS = "OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN, GET_PARAMETER, SET_PARAMETER"
STATUS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    454: "Session Not Found",
    455: "Method Not Valid in This State",
    459: "Aggregate Operation Not Allowed",
    461: "Unsupported Transport",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    505: "RTSP Version Not Supported",
}


class BadRequest(Exception):
    """The bytes on a connection are not an RTSP request we can answer."""


def _is_number(text: str) -> bool:
    """ASCII digits only: ``str.isdigit`` also accepts "²", which ``int`` rejects."""
    return text.isascii() and text.isdigit()


@dataclass
class Request:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes = b""

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)


class ClientQueue:
    """Packets waiting for one playing client, bounded; starts at a keyframe."""

    def __init__(self, send, capacity: int) -> None:
        self._send = send  # callable(bytes) that may block or raise OSError
        self.capacity = capacity
        self.drops = 0
        self.sent = 0
        self._packets: deque[bytes] = deque()
        self._waiting_keyframe = True
        self._closed = False
        self._cond = threading.Condition()
        self.thread = threading.Thread(target=self._run, name="rtsp-client", daemon=True)
        self.thread.start()

    def offer(self, packets: list[bytes], keyframe: bool) -> None:
        """Queue one access unit's packets (called by the encoder side; never blocks)."""
        with self._cond:
            if self._closed:
                return
            if self._waiting_keyframe and not keyframe:
                return
            if len(self._packets) + len(packets) > self.capacity:
                self.drops += len(self._packets)
                self._packets.clear()  # the client fell behind: resync at a keyframe
                if not keyframe:
                    self._waiting_keyframe = True
                    return
            self._waiting_keyframe = False
            self._packets.extend(packets)
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._packets and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                batch = list(self._packets)
                self._packets.clear()
            try:
                for packet in batch:
                    self._send(packet)
                    self.sent += 1
            except OSError:
                self.close()
                return

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()

    @property
    def closed(self) -> bool:
        return self._closed


class Mount:
    """One path of the server: its stream description and its playing clients."""

    def __init__(self, path: str, client_buffer: int) -> None:
        self.path = path
        self.client_buffer = client_buffer
        self.sdp: str | None = None
        self.ready = threading.Event()
        self._clients: set[ClientQueue] = set()
        self._lock = threading.Lock()
        self._departed_drops = 0  # drops of clients that have left

    def describe(self, sdp: str) -> None:
        """Set the session description (once SPS/PPS are known)."""
        self.sdp = sdp
        self.ready.set()

    def publish(self, packets: list[bytes], keyframe: bool) -> None:
        """Hand one access unit to every playing client."""
        with self._lock:
            clients = list(self._clients)
        for client in clients:
            if client.closed:
                self.remove(client)
            else:
                client.offer(packets, keyframe)

    def add(self, send) -> ClientQueue:
        client = ClientQueue(send, self.client_buffer)
        with self._lock:
            self._clients.add(client)
        return client

    def remove(self, client: ClientQueue) -> None:
        client.close()
        with self._lock:
            if client in self._clients:
                self._clients.discard(client)
                self._departed_drops += client.drops

    def stats(self) -> dict[str, int]:
        with self._lock:
            clients = list(self._clients)
            departed = self._departed_drops
        return {"clients": len(clients), "client_drops": departed + sum(c.drops for c in clients)}


def mount_path(url: str) -> str:
    """The mount a request URL names: its path without a trailing track control."""
    path = urlsplit(url).path or "/"
    if path.rstrip("/").rsplit("/", 1)[-1].startswith("trackID="):
        path = path.rstrip("/").rsplit("/", 1)[0]
    return "/" + path.strip("/")


@dataclass
class _Session:
    id: str
    mount: Mount
    transport: str  # "tcp" or "udp"
    channel: int = 0
    udp: socket.socket | None = None
    udp_rtcp: socket.socket | None = None
    client_addr: tuple[str, int] | None = None
    client: ClientQueue | None = None
    extra: dict[str, str] = field(default_factory=dict)


class RtspServer:
    """Serves mounts on ``host:port`` until ``stop()``.

    Args:
        host: bind address (127.0.0.1 unless told otherwise).
        port: TCP port (0 picks a free one; see ``port`` after ``start()``).
        credentials: required to DESCRIBE / SETUP / PLAY when given.
    """

    def __init__(
        self, host: str = "127.0.0.1", port: int = 8554, credentials: Credentials | None = None
    ) -> None:
        self.host = host
        self.port = port
        self.credentials = credentials
        self.mounts: dict[str, Mount] = {}
        self._listener: socket.socket | None = None
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Bind and listen. Raises OSError if the address cannot be bound."""
        listener = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((self.host, self.port))
            listener.listen(16)
        except OSError:
            listener.close()
            raise
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._thread = threading.Thread(target=self._accept, name=f"rtsp-{self.port}", daemon=True)
        self._thread.start()

    def add_mount(self, path: str, client_buffer: int = 2048) -> Mount:
        path = "/" + path.strip("/")
        with self._lock:
            if path in self.mounts:
                raise ValueError(f"mount {path} is already served on port {self.port}")
            mount = Mount(path, client_buffer)
            self.mounts[path] = mount
        return mount

    def remove_mount(self, path: str) -> None:
        with self._lock:
            self.mounts.pop(path, None)

    def stop(self) -> None:
        """Close the listener and every connection; clients see the stream end."""
        self._stopping.set()
        if self._listener is not None:
            with contextlib.suppress(OSError):  # not connected: closing is enough
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):  # already gone
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(2)

    def _accept(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                conn, addr = self._listener.accept()
            except OSError as error:
                if self._stopping.is_set() or self._listener.fileno() == -1:
                    return  # listener closed
                log.warning("rtsp server on port %d: accept failed: %s", self.port, error)
                self._stopping.wait(0.1)  # e.g. out of file descriptors: retry soon
                continue
            with self._lock:
                full = len(self._connections) >= MAX_CONNECTIONS
                if not full:
                    self._connections.add(conn)
            if full:
                conn.close()
                continue
            threading.Thread(
                target=self._serve_connection, args=(conn, addr), name="rtsp-conn", daemon=True
            ).start()

    def _serve_connection(self, conn: socket.socket, addr: tuple) -> None:
        handler = _Connection(self, conn, addr)
        try:
            handler.run()
        except Exception:  # one connection's failure must never reach the server
            log.debug("rtsp connection from %s failed", addr, exc_info=True)
        finally:
            handler.close()
            with self._lock:
                self._connections.discard(conn)


class _Connection:
    """One client's RTSP control connection (and its TCP-interleaved media)."""

    def __init__(self, server: RtspServer, conn: socket.socket, addr: tuple) -> None:
        self.server = server
        self.conn = conn
        self.addr = addr
        self.session: _Session | None = None
        self._send_lock = threading.Lock()
        self._buffer = b""
        conn.settimeout(SESSION_TIMEOUT)

    # ---- wire ------------------------------------------------------------
    def send(self, data: bytes) -> None:
        with self._send_lock:
            self.conn.sendall(data)

    def _recv(self) -> bool:
        try:
            chunk = self.conn.recv(65536)
        except TimeoutError:  # a playing client need not talk; others must
            return self.session is not None and self.session.client is not None
        except OSError:
            return False
        if not chunk:
            return False
        self._buffer += chunk
        return True

    def _next_request(self) -> Request | None:
        """Read one request (skipping interleaved RTCP); None when the peer is gone."""
        while True:
            if self._buffer.startswith(b"$"):
                if len(self._buffer) >= 4:
                    size = int.from_bytes(self._buffer[2:4], "big")
                    if len(self._buffer) >= 4 + size:
                        self._buffer = self._buffer[4 + size :]
                        continue
            else:
                end = self._buffer.find(b"\r\n\r\n")
                if end > MAX_HEADER:
                    raise BadRequest("request header too large")
                if end != -1:
                    head, self._buffer = self._buffer[:end], self._buffer[end + 4 :]
                    request = self._parse(head)
                    length = request.header("content-length", "0")
                    if not _is_number(length) or int(length) > MAX_BODY:
                        raise BadRequest("bad Content-Length")
                    while len(self._buffer) < int(length):
                        if not self._recv():
                            return None
                    request.body = self._buffer[: int(length)]
                    self._buffer = self._buffer[int(length) :]
                    return request
                if len(self._buffer) > MAX_HEADER:
                    raise BadRequest("request header too large")
            if not self._recv():
                return None

    @staticmethod
    def _parse(head: bytes) -> Request:
        try:
            text = head.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest("not text") from None
        lines = text.split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("RTSP/"):
            raise BadRequest(f"bad request line {lines[0][:60]!r}")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name.strip():
                raise BadRequest("bad header line")
            headers[name.strip().lower()] = value.strip()
        return Request(parts[0], parts[1], headers)

    def respond(self, request: Request | None, code: int, headers: dict[str, str] | None = None,
                body: bytes = b"", extra: list[tuple[str, str]] | None = None) -> None:  # fmt: skip
        lines = [f"RTSP/1.0 {code} {STATUS.get(code, 'Error')}"]
        cseq = request.header("cseq") if request is not None else None
        if cseq is not None:
            lines.append(f"CSeq: {cseq}")
        lines.append("Server: FrameGraph")
        for name, value in (headers or {}).items():
            lines.append(f"{name}: {value}")
        for name, value in extra or []:
            lines.append(f"{name}: {value}")
        if body:
            lines.append(f"Content-Length: {len(body)}")
        self.send(("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + body)

    # ---- protocol --------------------------------------------------------
    def run(self) -> None:
        while not self.server._stopping.is_set():
            try:
                request = self._next_request()
            except BadRequest:
                self.respond(None, 400)
                return  # the byte stream is out of step: drop this connection only
            if request is None:
                return
            if not _is_number(request.header("cseq", "").strip()):
                self.respond(request, 400)
                continue
            if request.url == "*" and request.method != "OPTIONS":
                self.respond(request, 400)
                continue
            if request.method != "OPTIONS" and not request.method.isupper():
                self.respond(request, 400)
                continue
            if not self._handle(request):
                return

    def _authorised(self, request: Request) -> bool:
        credentials = self.server.credentials
        if credentials is None or request.method == "OPTIONS":
            return True
        if credentials.check(request.header("authorization"), request.method):
            return True
        self.respond(request, 401, extra=[("WWW-Authenticate", v) for v in credentials.challenge()])
        return False

    def _handle(self, request: Request) -> bool:
        """Answer one request; False to close the connection."""
        if request.url != "*" and not request.url.lower().startswith("rtsp://"):
            self.respond(request, 400)
            return True
        if not self._authorised(request):
            return True
        method = request.method
        if method == "OPTIONS":
            self.respond(request, 200, {"Public": METHODS})
        elif method == "DESCRIBE":
            self._describe(request)
        elif method == "SETUP":
            self._setup(request)
        elif method == "PLAY":
            self._play(request)
        elif method in ("GET_PARAMETER", "SET_PARAMETER"):
            if self._session_ok(request):
                self.respond(request, 200, self._session_header())
        elif method == "TEARDOWN":
            if self._session_ok(request):
                self.respond(request, 200, self._session_header())
                return False
        elif method in ("PAUSE", "RECORD", "ANNOUNCE", "REDIRECT"):
            self.respond(request, 405, {"Allow": METHODS})
        else:
            self.respond(request, 501)
        return True

    def _mount(self, request: Request) -> Mount | None:
        try:
            path = mount_path(request.url)
        except ValueError:  # e.g. rtsp://[::1/x
            self.respond(request, 400)
            return None
        mount = self.server.mounts.get(path)
        if mount is None:
            self.respond(request, 404)
        return mount

    def _describe(self, request: Request) -> None:
        mount = self._mount(request)
        if mount is None:
            return
        if not mount.ready.wait(5.0) or mount.sdp is None:
            self.respond(request, 503, {"Retry-After": "1"})
            return
        base = request.url if request.url.endswith("/") else request.url + "/"
        self.respond(
            request,
            200,
            {"Content-Type": "application/sdp", "Content-Base": base},
            mount.sdp.encode("ascii"),
        )

    def _session_header(self) -> dict[str, str]:
        if self.session is None:
            return {}
        return {"Session": f"{self.session.id};timeout={SESSION_TIMEOUT}"}

    def _session_ok(self, request: Request) -> bool:
        given = (request.header("session") or "").split(";")[0].strip()
        matches = self.session is not None and given == self.session.id
        if not matches and (given or request.method in ("PLAY", "TEARDOWN")):
            self.respond(request, 454)
            return False
        return True

    def _setup(self, request: Request) -> None:
        mount = self._mount(request)
        if mount is None:
            return
        if self.session is not None:
            if (request.header("session") or "").split(";")[0].strip() != self.session.id:
                self.respond(request, 459)  # one stream per connection
                return
            self.respond(request, 455)
            return
        transport = request.header("transport", "") or ""
        spec = next((t for t in transport.split(",") if "RTP/AVP" in t), "")
        options = _transport_options(spec)
        session_id = secrets.token_hex(8)
        if "RTP/AVP/TCP" in spec and "interleaved" in options:
            channels = options["interleaved"].split("-")
            if not _is_number(channels[0]) or int(channels[0]) > 254:
                self.respond(request, 461)
                return
            channel = int(channels[0])
            self.session = _Session(session_id, mount, "tcp", channel=channel)
            reply = f"RTP/AVP/TCP;unicast;interleaved={channel}-{channel + 1}"
        elif spec.startswith("RTP/AVP") and "multicast" not in spec and "client_port" in options:
            ports = options["client_port"].split("-")
            if not _is_number(ports[0]) or not 0 < int(ports[0]) < 65535:
                self.respond(request, 461)
                return
            rtp, rtcp = _udp_pair(self.conn.getsockname()[0])
            self.session = _Session(session_id, mount, "udp", udp=rtp, udp_rtcp=rtcp,
                                    client_addr=(self.addr[0], int(ports[0])))  # fmt: skip
            server_ports = f"{rtp.getsockname()[1]}-{rtcp.getsockname()[1]}"
            reply = (
                f"RTP/AVP;unicast;client_port={options['client_port']};server_port={server_ports}"
            )
        else:
            self.respond(request, 461)
            return
        self.respond(request, 200, {"Transport": reply, **self._session_header()})

    def _play(self, request: Request) -> None:
        if not self._session_ok(request):
            return
        session = self.session
        assert session is not None
        # answer first: media sent before the response would reach a client still
        # waiting for it (FFmpeg skips such packets, losing the keyframe)
        self.respond(
            request,
            200,
            {**self._session_header(), "Range": "npt=0.000-",
             "RTP-Info": f"url={request.url.rstrip('/')}/trackID=0"},
        )  # fmt: skip
        if session.client is None:
            if session.transport == "tcp":
                prefix = bytes((0x24, session.channel))
                # A small kernel buffer, so a stalled viewer shows up in our own
                # bounded queue (counted drops) instead of hiding megabytes in the kernel.
                self.conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, TCP_SEND_BUFFER)

                def send(packet: bytes) -> None:
                    self.send(prefix + len(packet).to_bytes(2, "big") + packet)
            else:
                udp, addr = session.udp, session.client_addr
                assert udp is not None and addr is not None

                def send(packet: bytes) -> None:
                    udp.sendto(packet, addr)

            session.client = session.mount.add(send)

    def close(self) -> None:
        session = self.session
        if session is not None:
            if session.client is not None:
                session.mount.remove(session.client)
            for sock in (session.udp, session.udp_rtcp):
                if sock is not None:
                    sock.close()
        with contextlib.suppress(OSError):  # already closed
            self.conn.close()


def _transport_options(spec: str) -> dict[str, str]:
    """``RTP/AVP;unicast;client_port=5000-5001`` -> {"RTP/AVP": "", "unicast": "",
    "client_port": "5000-5001"}."""
    options = {}
    for part in spec.split(";"):
        name, _, value = part.strip().partition("=")
        if name:
            options[name] = value
    return options


def _udp_pair(host: str) -> tuple[socket.socket, socket.socket]:
    """Two UDP sockets on consecutive ports (RTP even, RTCP odd), bound to ``host``."""
    for _ in range(50):
        rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rtp.bind((host, 0))
        port = rtp.getsockname()[1]
        if port % 2 == 0 and port < 65535:
            rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                rtcp.bind((host, port + 1))
                return rtp, rtcp
            except OSError:
                rtcp.close()
        rtp.close()
    raise OSError("no free UDP port pair")


def _who(credentials: Credentials | None) -> tuple[str, str, str] | None:
    """What two mounts must agree on to share a server: user, password, scheme."""
    if credentials is None:
        return None
    return (credentials.username, credentials.password, credentials.scheme)


_servers: dict[tuple[str, int], tuple[RtspServer, int]] = {}
_servers_lock = threading.Lock()


def acquire_server(host: str, port: int, credentials: Credentials | None) -> RtspServer:
    """The process's server on ``host:port``, started on first use (shared by mounts)."""
    with _servers_lock:
        if (host, port) in _servers:
            server, users = _servers[(host, port)]
            if _who(server.credentials) != _who(credentials):
                raise ValueError(f"rtsp://{host}:{port} is already served with other credentials")
            _servers[(host, port)] = (server, users + 1)
            return server
        server = RtspServer(host, port, credentials)
        server.start()
        _servers[(host, port)] = (server, 1)
        return server


def release_server(server: RtspServer, host: str, port: int) -> None:
    """One mount user is done; the last one stops the server."""
    with _servers_lock:
        entry = _servers.get((host, port))
        if entry is None:
            return
        if entry[1] <= 1:
            del _servers[(host, port)]
            server.stop()
        else:
            _servers[(host, port)] = (server, entry[1] - 1)

"""One RTSP control connection, driven by the server's event loop (no thread of
its own): the protocol (OPTIONS ... TEARDOWN) and the bookkeeping of what the
connection is waiting for and until when. Its bytes are split into requests by
``request.RequestReader``.

Everything here runs on the server's loop thread except the sender started at
PLAY (see ``mount.ClientQueue``), which owns its own socket: a ``dup`` of the
connection for TCP-interleaved media, the RTP socket for UDP.
"""

from __future__ import annotations

import contextlib
import logging
import math
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from stages.sinks.rtsp.mount import ClientQueue, Mount
from stages.sinks.rtsp.request import BadRequest, Request, RequestReader, is_number

if TYPE_CHECKING:
    from stages.sinks.rtsp.server import RtspServer

log = logging.getLogger("framegraph")

RECV_SIZE = 65536
TCP_SEND_BUFFER = 256 * 1024
DESCRIBE_WAIT = 5.0
"""Seconds a DESCRIBE waits for a mount's first keyframe (SPS/PPS) before a 503."""
RTCP_READS = 16
"""Datagrams read from one RTCP socket per wake-up, so a flood cannot hog the loop."""
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
    seen: float  # monotonic time of the last sign of life (keep-alive, RTCP)
    channel: int = 0
    udp: socket.socket | None = None
    udp_rtcp: socket.socket | None = None
    client_addr: tuple[str, int] | None = None
    client: ClientQueue | None = None


class Connection:
    """One client's RTSP control connection (and its TCP-interleaved media).

    The server's loop calls ``on_readable`` / ``on_writable`` / ``on_rtcp`` /
    ``on_deadline``, then asks ``wanted_events()`` and ``deadline()``. Answers
    go to an output buffer flushed without blocking; while it is not empty the
    connection reads nothing more (a client that does not read its answers
    cannot make us buffer more). Once a TCP-interleaved client plays, its sender
    thread is the only writer of the socket and answers queue behind it.
    """

    def __init__(self, server: RtspServer, sock: socket.socket, addr: tuple, now: float) -> None:
        self.server = server
        self.sock = sock
        self.addr = addr
        self.peer: str = addr[0]
        self.session: _Session | None = None
        self.reader = RequestReader()
        self.out = bytearray()
        self.closed = False
        self.fds = 1  # file descriptors held for this client (counted by the server)
        self.registered = 0  # selector events the server registered for us
        self.scheduled = math.inf  # the deadline the server's timer heap holds for us
        self._eof = False
        self._answered = 0
        self._idle_since = now
        self._partial_since: float | None = None
        self._out_since: float | None = None
        self._closing_since: float | None = None
        self._hold_until: float | None = None
        self._resume: Callable[[], None] | None = None
        self.waiting_for: Mount | None = None  # a DESCRIBE waiting for this mount's SDP

    # ---- events from the server's loop -----------------------------------
    def on_readable(self, now: float) -> None:
        try:
            data = self.sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # reset
            self.close()
            return
        if not data:
            self._eof = True
        else:
            if not self.reader.pending:
                self._partial_since = now  # the first byte of a new message
            self.reader.feed(data)
        self._drain(now)

    def on_writable(self, now: float) -> None:
        self._flush()
        if not self.closed and not self.out:
            self._drain(now)

    def on_rtcp(self, sock: socket.socket, now: float) -> None:
        """RTCP from the client on the server's RTCP port: the session is alive."""
        for _ in range(RTCP_READS):
            try:
                _data, addr = sock.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # e.g. an ICMP error queued on the socket
                return
            if self.session is not None and addr[0] == self.peer:
                self.session.seen = now

    def on_deadline(self, now: float) -> None:
        expired = [reason for due, reason in self._deadlines() if due <= now]
        if not expired:
            return  # the deadline moved on; the server schedules the new one
        if expired == ["hold"]:
            self.release()
            return
        if "session timeout" in expired:
            log.info("rtsp: session of %s timed out (no keep-alive or RTCP)", self.peer)
        else:
            log.debug("rtsp: closing %s: %s", self.peer, ", ".join(expired))
        self.server.expired += 1
        self.close()

    def wanted_events(self) -> tuple[bool, bool]:
        """(read, write): what the loop should wait for on our socket."""
        if self.closed:
            return False, False
        return not (self._eof or self._paused()), bool(self.out)

    def deadline(self) -> float:
        """When ``on_deadline`` must run next (monotonic seconds)."""
        return min((due for due, _ in self._deadlines()), default=math.inf)

    def _deadlines(self) -> Iterator[tuple[float, str]]:
        limits = self.server.limits
        if self._closing_since is not None:
            yield self._closing_since + limits.request_timeout, "closing"
        if self._out_since is not None:
            yield self._out_since + limits.request_timeout, "answers not read"
        if self._hold_until is not None:
            yield self._hold_until, "hold"
        if self._partial_since is not None:
            yield self._partial_since + limits.request_timeout, "request deadline"
        if self.session is not None:
            yield self.session.seen + limits.session_timeout, "session timeout"
        elif self._partial_since is None and not self._paused():
            # Silent before its first request: an idle slot a real client never
            # holds. Between requests, as long as a session would live.
            wait = limits.first_byte_timeout if not self._answered else limits.session_timeout
            yield self._idle_since + wait, "idle"

    # ---- holding a request (a DESCRIBE before the stream has started) ------
    def hold(self, seconds: float, resume: Callable[[], None]) -> None:
        """Answer nothing more until ``release()``, which runs ``resume`` (at the
        latest after ``seconds``); the connection reads nothing meanwhile."""
        self._hold_until = time.monotonic() + seconds
        self._resume = resume
        self.server.held.add(self)

    def release(self) -> None:
        resume, self._resume = self._resume, None
        self._hold_until = None
        self.waiting_for = None
        self.server.held.discard(self)
        if resume is not None:
            resume()
        if not self.closed:
            self._drain(time.monotonic())

    # ---- the byte stream -------------------------------------------------
    def _paused(self) -> bool:
        return bool(self.out) or self._hold_until is not None or self._closing_since is not None

    def _drain(self, now: float) -> None:
        """Answer complete requests until input runs out or we must wait."""
        reader = self.reader
        consumed = reader.consumed
        while not self.closed and not self._paused():
            try:
                request = reader.next()
            except BadRequest as error:
                log.debug("rtsp: bad request from %s: %s", self.peer, error)
                self.respond(None, 400)
                self._close_when_flushed()  # the byte stream is out of step
                return
            if reader.channels:
                session = self.session
                if session is not None and session.channel + 1 in reader.channels:
                    session.seen = now  # RTCP on the odd channel: the client is alive
                reader.channels.clear()
            if request is None:
                break
            # only requests count as activity: frames without a session are no use
            self._idle_since = now
            self._answered += 1
            self._dispatch(request, now)
        if self.closed:
            return
        if not reader.pending:
            self._partial_since = None
        elif reader.consumed != consumed:
            self._partial_since = now  # what is left began in the last read
        if self._eof and not self._paused():
            self._close_when_flushed()  # nothing more will come

    def _flush(self) -> None:
        while self.out:
            try:
                sent = self.sock.send(self.out)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.close()
                return
            del self.out[:sent]
        self._out_since = None
        if self._closing_since is not None:
            self.close()

    def _write(self, data: bytes) -> None:
        """Queue bytes for the client, behind everything queued before them."""
        session = self.session
        client = session.client if session is not None else None
        if client is not None and client.interleaved:
            if not client.control(data):
                log.debug("rtsp: %s does not read its answers", self.peer)
                self.close()
            return
        if not self.out:
            self._out_since = time.monotonic()
        self.out += data
        self._flush()

    def _close_when_flushed(self) -> None:
        if self._closing_since is not None or self.closed:
            return
        self._closing_since = time.monotonic()
        session = self.session
        client = session.client if session is not None else None
        if client is not None and client.interleaved:
            # its sender writes what is queued, then exits: _sender_gone closes us
            session.mount.remove(client, graceful=True)  # type: ignore[union-attr]
        elif not self.out:
            self.close()

    def _sender_gone(self, client: ClientQueue) -> None:
        """A sender stopped (its client reset, stalled past the write timeout, or
        finished after TEARDOWN): the session is over."""
        if not self.closed and self.session is not None and self.session.client is client:
            self.close()

    def close(self) -> None:
        """Release everything the client holds: its session, sender, sockets."""
        if self.closed:
            return
        self.closed = True
        self.server.forget(self)
        # the timer heap may hold this object until its deadline: keep nothing big
        self.reader = RequestReader()
        self.out.clear()
        session, self.session = self.session, None
        if session is not None:
            if session.client is not None:
                session.mount.remove(session.client)  # its sender closes its own socket
            elif session.udp is not None:
                session.udp.close()
            if session.udp_rtcp is not None:
                session.udp_rtcp.close()
        # shutdown reaches a sender blocked on its dup of this socket; close alone would not
        with contextlib.suppress(OSError):  # not connected (any more)
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()

    # ---- answers ---------------------------------------------------------
    @staticmethod
    def _response(
        request: Request | None,
        code: int,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
        extra: list[tuple[str, str]] | None = None,
    ) -> bytes:
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
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + body

    def respond(self, request: Request | None, code: int, headers: dict[str, str] | None = None,
                body: bytes = b"", extra: list[tuple[str, str]] | None = None) -> None:  # fmt: skip
        self._write(self._response(request, code, headers, body, extra))

    # ---- protocol --------------------------------------------------------
    def _dispatch(self, request: Request, now: float) -> None:
        malformed = (
            not is_number((request.header("cseq", "") or "").strip())
            or (request.url == "*" and request.method != "OPTIONS")
            or (request.method != "OPTIONS" and not request.method.isupper())
        )
        if malformed:
            self.respond(request, 400)
        else:
            self._handle(request, now)

    def _authorised(self, request: Request, now: float) -> bool:
        """Checks the request's credentials (``auth.Credentials.check``); if refused, answers
        it: 401 with the challenge (delayed for an address that keeps failing, holding only
        this connection, never the loop), or 503 and a close for one refused outright."""
        credentials = self.server.credentials
        if credentials is None or request.method == "OPTIONS":
            return True
        verdict = credentials.check(
            request.method, request.url, request.header("authorization"), self.peer, now=now
        )
        if verdict.ok:
            return True
        log.debug("rtsp: %s %s from %s refused: %s", request.method, request.url, self.peer,
                  verdict.reason)  # fmt: skip
        if verdict.outcome == "refuse":
            self.respond(request, 503, {"Retry-After": str(math.ceil(verdict.retry_after))})
            self._close_when_flushed()
            return False
        challenge = [("WWW-Authenticate", value) for value in verdict.challenge]
        if verdict.delay > 0:
            self.hold(verdict.delay, lambda: self.respond(request, 401, extra=challenge))
        else:
            self.respond(request, 401, extra=challenge)
        return False

    def _handle(self, request: Request, now: float) -> None:
        if request.url != "*" and not request.url.lower().startswith("rtsp://"):
            self.respond(request, 400)
            return
        if not self._authorised(request, now):
            return
        if self.session is not None and _given_session(request) == self.session.id:
            self.session.seen = now  # any request naming the session keeps it alive
        method = request.method
        if method == "OPTIONS":
            self.respond(request, 200, {"Public": METHODS})
        elif method == "DESCRIBE":
            self._describe(request)
        elif method == "SETUP":
            self._setup(request, now)
        elif method == "PLAY":
            self._play(request)
        elif method in ("GET_PARAMETER", "SET_PARAMETER"):
            if self._session_ok(request):
                self.respond(request, 200, self._session_header())
        elif method == "TEARDOWN":
            if self._session_ok(request):
                self.respond(request, 200, self._session_header())
                self._close_when_flushed()
        elif method in ("PAUSE", "RECORD", "ANNOUNCE", "REDIRECT"):
            self.respond(request, 405, {"Allow": METHODS})
        else:
            self.respond(request, 501)

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
        if mount.sdp is None:  # the encoder has not produced SPS/PPS yet: wait a little
            self.waiting_for = mount
            self.hold(DESCRIBE_WAIT, lambda: self._answer_describe(request, mount))
            return
        self._answer_describe(request, mount)

    def _answer_describe(self, request: Request, mount: Mount) -> None:
        if mount.sdp is None:
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
        return {"Session": f"{self.session.id};timeout={self.server.limits.session_timeout}"}

    def _session_ok(self, request: Request) -> bool:
        given = _given_session(request)
        matches = self.session is not None and given == self.session.id
        if not matches and (given or request.method in ("PLAY", "TEARDOWN")):
            self.respond(request, 454)
            return False
        return True

    def _setup(self, request: Request, now: float) -> None:
        mount = self._mount(request)
        if mount is None:
            return
        if self.session is not None:
            if _given_session(request) != self.session.id:
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
            if not is_number(channels[0]) or int(channels[0]) > 254:
                self.respond(request, 461)
                return
            channel = int(channels[0])
            self.session = _Session(session_id, mount, "tcp", now, channel=channel)
            reply = f"RTP/AVP/TCP;unicast;interleaved={channel}-{channel + 1}"
        elif spec.startswith("RTP/AVP") and "multicast" not in spec and "client_port" in options:
            ports = options["client_port"].split("-")
            if not is_number(ports[0]) or not 0 < int(ports[0]) < 65535:
                self.respond(request, 461)
                return
            if not self.server.reserve_fds(self, 2):
                self.respond(request, 503)
                return
            try:
                rtp, rtcp = udp_port_pair(self.sock.getsockname()[0])
            except OSError as error:  # out of ports or file descriptors
                log.warning("rtsp: no UDP ports for %s: %s", self.peer, error)
                self.server.reserve_fds(self, -2)
                self.respond(request, 503)
                return
            rtp.settimeout(self.server.limits.session_timeout)
            rtcp.setblocking(False)
            self.session = _Session(session_id, mount, "udp", now, udp=rtp, udp_rtcp=rtcp,
                                    client_addr=(self.peer, int(ports[0])))  # fmt: skip
            self.server.watch_rtcp(rtcp, self)
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
        response = self._response(
            request,
            200,
            {**self._session_header(), "Range": "npt=0.000-",
             "RTP-Info": f"url={request.url.rstrip('/')}/trackID=0"},
        )  # fmt: skip
        if session.client is not None:  # already playing
            self._write(response)
        elif session.transport == "tcp":
            self._play_interleaved(request, session, response)
        else:
            # answer first: media sent before the response would reach a client still
            # waiting for it (FFmpeg skips such packets, losing the keyframe)
            self._write(response)
            udp, addr = session.udp, session.client_addr
            assert udp is not None and addr is not None

            def send(packet: bytes) -> None:
                udp.sendto(packet, addr)

            def gone() -> None:
                udp.close()
                self.server.call_soon(lambda: self._sender_gone(client))

            client = session.mount.add(send, on_exit=gone)
            session.client = client

    def _play_interleaved(self, request: Request, session: _Session, response: bytes) -> None:
        """Start the sender that owns this socket's writes from now on."""
        # A small kernel buffer, so a stalled viewer shows up in our own bounded
        # queue (counted drops) instead of hiding megabytes in the kernel.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, TCP_SEND_BUFFER)
        if not self.server.reserve_fds(self, 1):
            self.respond(request, 503)
            self._close_when_flushed()
            return
        try:
            # The sender blocks (up to the timeout) on its own descriptor: the loop's
            # stays non-blocking, and closing ours never frees a number it still uses.
            wire = self.sock.dup()
        except OSError:
            self.server.reserve_fds(self, -1)
            self.respond(request, 503)
            self._close_when_flushed()
            return
        wire.settimeout(self.server.limits.session_timeout)
        prefix = bytes((0x24, session.channel))

        def send(packet: bytes) -> None:
            wire.sendall(prefix + len(packet).to_bytes(2, "big") + packet)

        def gone() -> None:
            wire.close()
            self.server.call_soon(lambda: self._sender_gone(client))

        # answers not yet flushed, then PLAY's, all before the first packet
        greeting = bytes(self.out) + response
        self.out.clear()
        self._out_since = None
        client = session.mount.add(send, wire.sendall, greeting, gone)
        session.client = client


def _given_session(request: Request) -> str:
    return (request.header("session") or "").split(";")[0].strip()


def _transport_options(spec: str) -> dict[str, str]:
    """``RTP/AVP;unicast;client_port=5000-5001`` -> {"RTP/AVP": "", "unicast": "",
    "client_port": "5000-5001"}."""
    options = {}
    for part in spec.split(";"):
        name, _, value = part.strip().partition("=")
        if name:
            options[name] = value
    return options


def udp_port_pair(host: str) -> tuple[socket.socket, socket.socket]:
    """Two UDP sockets on consecutive ports (RTP even, RTCP odd), bound to ``host`` (IPv4 or
    IPv6, as the RTSP connection came)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(50):
        rtp = socket.socket(family, socket.SOCK_DGRAM)
        rtp.bind((host, 0))
        port = rtp.getsockname()[1]
        if port % 2 == 0 and port < 65535:
            rtcp = socket.socket(family, socket.SOCK_DGRAM)
            try:
                rtcp.bind((host, port + 1))
                return rtp, rtcp
            except OSError:
                rtcp.close()
        rtp.close()
    raise OSError("no free UDP port pair")

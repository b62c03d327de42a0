"""An RTSP/1.0 server (RFC 2326) that serves live H.264 to many clients.

Shape: one thread per server runs an event loop (``selectors``: epoll on Linux)
over the listening socket, every client connection and every UDP session's
RTCP socket. It accepts, reads and parses requests without blocking, answers
them through per-connection output buffers, and keeps one timer heap for all
deadlines; an idle connection costs a socket and a small object, no thread.
Requests are split off the byte stream by request.py and answered by
connection.py (one ``Connection`` per client, the protocol's state).
Per playing client, one sender thread drains that client's bounded packet queue
(stages/sinks/rtsp/mount.py) and is the only writer of its socket: a ``dup`` of
the connection for TCP-interleaved media (answers to keep-alives queue behind
it, never inside an RTP frame), the RTP socket for UDP. The encoder side
(``Mount.publish``) only appends to the queues and never blocks, so a slow or
stalled client cannot slow the pipeline or other clients: when its queue is
full it is emptied and the client resumes at the next keyframe (the drop is
counted). A client joining mid-stream also starts at the next keyframe, which
carries SPS/PPS, so it shows a picture within one keyframe interval.

Transports: RTP over the RTSP TCP connection (interleaved, ``$`` framing) and
RTP over UDP unicast to the client's ports. No RTCP is sent; FFmpeg and
GStreamer clients play without sender reports.

Robustness (``Limits``): at most ``max_connections`` connections (and never
more than the process's open-file limit allows, keeping ``FD_RESERVE``
descriptors for the pipeline) and ``max_per_address`` from one IP address;
more are closed as soon as they are accepted. A connection must start its first
request within ``first_byte_timeout`` and complete every request (or ``$``
frame) within ``request_timeout`` of its first byte, however slowly it drips;
between requests it may idle as long as a session lives. A session lives
``session_timeout`` seconds (advertised as ``timeout=``) past its last sign of
life: a request carrying its Session header (GET_PARAMETER, OPTIONS, ...) or
RTCP from the client (on the server's RTCP port for UDP, the odd channel when
interleaved); then it is torn down: its sender stops, its queue and sockets are
freed, its connection closed. A sender blocked on a client that does not read
gives up after the same time. Accepted sockets have TCP keep-alive on.
Requests are size-limited and parsed in linear time; unknown or malformed input
gets a 4xx/5xx answer or closes that one connection, and nothing a client sends
can stop the server or reach another client.
"""

from __future__ import annotations

import contextlib
import errno
import heapq
import itertools
import logging
import math
import selectors
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass

from stages.sinks.rtsp.auth import Credentials
from stages.sinks.rtsp.connection import Connection
from stages.sinks.rtsp.mount import Mount

log = logging.getLogger("framegraph")

FD_RESERVE = 256
"""File descriptors the server leaves to the rest of the process (files, encoders)."""
LISTEN_BACKLOG = 512
ACCEPT_BATCH = 64
"""Connections accepted per wake-up, so a connection storm cannot starve readers."""
ACCEPT_PAUSE = 0.1
"""Seconds accepting pauses after an error such as running out of descriptors."""
REFUSAL_LOG_INTERVAL = 60.0

_LISTENER, _WAKE, _CONNECTION, _RTCP = range(4)


@dataclass(frozen=True)
class Limits:
    """What clients may hold, and for how long.

    Attributes:
        max_connections: connections open at once, whoever they are from.
        max_per_address: connections open at once from one IP address.
        first_byte_timeout: seconds a new connection may stay silent before
            its first request starts.
        request_timeout: seconds to send a whole request (or interleaved
            frame) once its first byte arrived, and to read the answers.
        session_timeout: seconds a session lives without a sign of life (a
            request naming it, or RTCP from its client); advertised in the
            Session header as ``timeout=``. Also how long a connection may idle
            between requests, and a sender may be blocked on a client that does
            not read, before they are closed.
    """

    max_connections: int = 4096
    max_per_address: int = 32
    first_byte_timeout: float = 5.0
    request_timeout: float = 10.0
    session_timeout: int = 60

    def __post_init__(self) -> None:
        for name in ("max_connections", "max_per_address", "session_timeout"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
        for name in ("first_byte_timeout", "request_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")


def _descriptor_budget(reserve: int = FD_RESERVE) -> int:
    """How many descriptors the server may hold for clients under RLIMIT_NOFILE."""
    try:
        import resource
    except ImportError:  # not POSIX: no limit to stay under
        return 1 << 30
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1 << 30
    return max(soft - reserve, soft // 2)


def _keep_alive(sock: socket.socket, idle: int) -> None:
    """TCP keep-alive, probing after ``idle`` seconds of silence (the kernel's
    default waits two hours), so a peer that vanished is noticed."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (("TCP_KEEPIDLE", idle), ("TCP_KEEPINTVL", max(idle // 4, 1)),
                        ("TCP_KEEPCNT", 4)):  # fmt: skip
        option = getattr(socket, name, None)
        if option is not None:
            with contextlib.suppress(OSError):  # an option this platform refuses
                sock.setsockopt(socket.IPPROTO_TCP, option, value)


class RtspServer:
    """Serves mounts on ``host:port`` until ``stop()``.

    Args:
        host: bind address (127.0.0.1 unless told otherwise).
        port: TCP port (0 picks a free one; see ``port`` after ``start()``).
        credentials: required to DESCRIBE / SETUP / PLAY when given.
        limits: connection caps and timeouts (``Limits()``'s defaults if None).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8554,
        credentials: Credentials | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.credentials = credentials
        self.limits = limits if limits is not None else Limits()
        self.mounts: dict[str, Mount] = {}
        self.held: set[Connection] = set()  # connections holding a request (see Connection.hold)
        self.refused = 0  # connections closed at once: over a cap
        self.expired = 0  # connections closed by a deadline or a session timeout
        self._lock = threading.Lock()  # mounts: added and removed from other threads
        self._listener: socket.socket | None = None
        self._selector: selectors.BaseSelector | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._calls: deque[Callable[[], None]] = deque()  # run on the loop thread
        self._connections: set[Connection] = set()
        self._per_address: Counter[str] = Counter()
        self._fds = 0  # descriptors held for clients
        self._fd_budget = 0
        self._timers: list[tuple[float, int, Connection]] = []
        self._sequence = itertools.count()
        self._accept_paused_until: float | None = None
        self._refusal_logged = -math.inf
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- life cycle (any thread) ------------------------------------------
    def start(self) -> None:
        """Bind and listen. Raises OSError if the address cannot be bound."""
        listener = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((self.host, self.port))
            listener.listen(LISTEN_BACKLOG)
        except OSError:
            listener.close()
            raise
        listener.setblocking(False)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._fd_budget = _descriptor_budget()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(listener, selectors.EVENT_READ, (_LISTENER, None))
        self._selector.register(self._wake_r, selectors.EVENT_READ, (_WAKE, None))
        self._thread = threading.Thread(target=self._run, name=f"rtsp-{self.port}", daemon=True)
        self._thread.start()

    def add_mount(self, path: str, client_buffer: int = 2048) -> Mount:
        path = "/" + path.strip("/")
        with self._lock:
            if path in self.mounts:
                raise ValueError(f"mount {path} is already served on port {self.port}")
            mount = Mount(path, client_buffer, on_ready=lambda: self.call_soon(self._mounts_ready))
            self.mounts[path] = mount
        return mount

    def remove_mount(self, path: str) -> None:
        with self._lock:
            self.mounts.pop(path, None)

    def stop(self) -> None:
        """Close the listener and every connection; clients see the stream end."""
        self._stopping.set()
        if self._thread is None:
            if self._listener is not None:
                self._listener.close()
            return
        self._wake()
        self._thread.join(5)
        if self._thread.is_alive():
            log.warning("rtsp server on port %d did not stop in time", self.port)

    def call_soon(self, call: Callable[[], None]) -> None:
        """Run ``call`` on the loop thread (safe from any thread)."""
        self._calls.append(call)
        self._wake()

    def stats(self) -> dict[str, int]:
        """Connections open now, and closed for being over a cap or a deadline."""
        return {
            "connections": len(self._connections),
            "refused": self.refused,
            "expired": self.expired,
        }

    def _wake(self) -> None:
        if self._wake_w is not None:
            with contextlib.suppress(OSError):  # full (a wake-up is pending) or closed
                self._wake_w.send(b"\0")

    # ---- used by connections (loop thread) ----------------------------------
    def forget(self, conn: Connection) -> None:
        """``conn`` is closing: stop watching it and give back what it counted."""
        if conn.registered and self._selector is not None:
            self._selector.unregister(conn.sock)
            conn.registered = 0
        session = conn.session
        if session is not None and session.udp_rtcp is not None and self._selector is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(session.udp_rtcp)
        if conn in self._connections:
            self._connections.discard(conn)
            self._per_address[conn.peer] -= 1
            if self._per_address[conn.peer] <= 0:
                del self._per_address[conn.peer]
            self._fds -= conn.fds
        self.held.discard(conn)

    def reserve_fds(self, conn: Connection, count: int) -> bool:
        """Count ``count`` more descriptors (negative: fewer) for ``conn``; False
        when that would pass the budget."""
        if count > 0 and self._fds + count > self._fd_budget:
            return False
        self._fds += count
        conn.fds += count
        return True

    def watch_rtcp(self, sock: socket.socket, conn: Connection) -> None:
        assert self._selector is not None
        self._selector.register(sock, selectors.EVENT_READ, (_RTCP, conn))

    # ---- the loop ----------------------------------------------------------
    def _run(self) -> None:
        assert self._selector is not None
        try:
            while not self._stopping.is_set():
                events = self._selector.select(self._timeout())
                now = time.monotonic()
                for key, mask in events:
                    kind, conn = key.data
                    if conn is not None and conn.closed:
                        continue  # closed earlier in this round (its number may be reused)
                    if kind == _CONNECTION:
                        if mask & selectors.EVENT_WRITE:
                            self._guard(conn, conn.on_writable, now)
                        if mask & selectors.EVENT_READ and not conn.closed:
                            self._guard(conn, conn.on_readable, now)
                    elif kind == _RTCP:
                        self._guard(conn, conn.on_rtcp, key.fileobj, now)
                    elif kind == _LISTENER:
                        self._accept(now)
                    else:
                        with contextlib.suppress(OSError):
                            self._wake_r.recv(4096)  # type: ignore[union-attr]
                while self._calls:
                    call = self._calls.popleft()
                    try:
                        call()
                    except Exception:  # one client's clean-up must not end the server
                        log.debug("rtsp server on port %d: a call failed", self.port,
                                  exc_info=True)  # fmt: skip
                self._run_timers(time.monotonic())
        except Exception:
            log.exception("rtsp server on port %d failed", self.port)
        finally:
            self._close_all()

    def _timeout(self) -> float | None:
        due = self._timers[0][0] if self._timers else math.inf
        if self._accept_paused_until is not None:
            due = min(due, self._accept_paused_until)
        if due == math.inf:
            return None
        return max(due - time.monotonic(), 0.0)

    def _guard(self, conn: Connection, handler: Callable, *args: object) -> None:
        """Run one connection's handler; whatever it raises closes only that
        connection. Then wait for what it now waits for."""
        try:
            handler(*args)
        except Exception:
            log.debug("rtsp connection from %s failed", conn.peer, exc_info=True)
            conn.close()
        if not conn.closed:
            self._update(conn)

    def _update(self, conn: Connection) -> None:
        assert self._selector is not None
        read, write = conn.wanted_events()
        events = (selectors.EVENT_READ if read else 0) | (selectors.EVENT_WRITE if write else 0)
        if events != conn.registered:
            if not conn.registered:
                self._selector.register(conn.sock, events, (_CONNECTION, conn))
            elif not events:
                self._selector.unregister(conn.sock)
            else:
                self._selector.modify(conn.sock, events, (_CONNECTION, conn))
            conn.registered = events
        due = conn.deadline()
        # One heap entry per connection: a later deadline is found when the
        # earlier entry fires; only an earlier one needs a new entry.
        if due < conn.scheduled:
            conn.scheduled = due
            heapq.heappush(self._timers, (due, next(self._sequence), conn))

    def _run_timers(self, now: float) -> None:
        while self._timers and self._timers[0][0] <= now:
            due, _, conn = heapq.heappop(self._timers)
            if conn.closed or due != conn.scheduled:
                continue  # superseded by an earlier entry
            conn.scheduled = math.inf
            self._guard(conn, conn.on_deadline, now)
        if self._accept_paused_until is not None and now >= self._accept_paused_until:
            self._accept_paused_until = None
            assert self._selector is not None and self._listener is not None
            self._selector.register(self._listener, selectors.EVENT_READ, (_LISTENER, None))

    def _mounts_ready(self) -> None:
        """A mount has its SDP: answer the DESCRIBEs that waited for it."""
        for conn in list(self.held):
            if conn.waiting_for is not None and conn.waiting_for.sdp is not None:
                self._guard(conn, conn.release)

    def _accept(self, now: float) -> None:
        assert self._listener is not None and self._selector is not None
        for _ in range(ACCEPT_BATCH):
            try:
                sock, addr = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                if error.errno == errno.ECONNABORTED:
                    continue  # reset before we got to it
                # e.g. out of descriptors: the socket stays readable, so stop
                # watching it for a moment instead of spinning
                log.warning("rtsp server on port %d: accept failed: %s", self.port, error)
                self._selector.unregister(self._listener)
                self._accept_paused_until = now + ACCEPT_PAUSE
                return
            self._admit(sock, addr, now)

    def _admit(self, sock: socket.socket, addr: tuple, now: float) -> None:
        peer = addr[0]
        limits = self.limits
        if len(self._connections) >= limits.max_connections or self._fds >= self._fd_budget:
            self._refuse(sock, f"{len(self._connections)} connections open")
            return
        if self._per_address[peer] >= limits.max_per_address:
            self._refuse(sock, f"{self._per_address[peer]} connections open from {peer}")
            return
        try:
            sock.setblocking(False)
            _keep_alive(sock, limits.session_timeout)
        except OSError:  # already reset by the peer
            sock.close()
            return
        conn = Connection(self, sock, addr, now)
        self._connections.add(conn)
        self._per_address[peer] += 1
        self._fds += conn.fds
        self._update(conn)

    def _refuse(self, sock: socket.socket, why: str) -> None:
        self.refused += 1
        sock.close()
        now = time.monotonic()
        if now - self._refusal_logged >= REFUSAL_LOG_INTERVAL:
            self._refusal_logged = now
            log.warning("rtsp server on port %d refuses connections: %s", self.port, why)

    def _close_all(self) -> None:
        for conn in list(self._connections):
            with contextlib.suppress(Exception):  # keep closing the others
                conn.close()
        for sock in (self._listener, self._wake_r, self._wake_w):
            if sock is not None:
                sock.close()
        self._wake_w = None
        if self._selector is not None:
            self._selector.close()


def _who(credentials: Credentials | None) -> tuple[str, str, str, float] | None:
    """What two mounts must agree on to share a server: user, password, scheme, nonce life."""
    if credentials is None:
        return None
    return (credentials.username, credentials.password, credentials.scheme,
            credentials.nonce_lifetime)  # fmt: skip


_servers: dict[tuple[str, int], tuple[RtspServer, int]] = {}
_servers_lock = threading.Lock()


def acquire_server(
    host: str,
    port: int,
    credentials: Credentials | None,
    limits: Limits | None = None,
    tries: int = 1,
) -> RtspServer:
    """The process's server for ``host:port``, started on first use (shared by mounts).

    Args:
        host: the address to bind.
        port: the port asked for (0: any free one).
        credentials: what clients must prove, if anything.
        limits: connection caps and timeouts.
        tries: ports to try, from ``port`` upward, while the one tried is taken by another
            process (several processes on one machine asking for one port: cluster workers).
            The server is still found under the port asked for; ``server.port`` is the one
            it serves on.

    Raises:
        ValueError: the server already runs with other credentials or limits.
        OSError: the address cannot be bound (every port tried is taken, or another error).
    """
    limits = limits if limits is not None else Limits()
    with _servers_lock:
        if (host, port) in _servers:
            server, users = _servers[(host, port)]
            if _who(server.credentials) != _who(credentials):
                raise ValueError(f"rtsp://{host}:{port} is already served with other credentials")
            if server.limits != limits:
                raise ValueError(f"rtsp://{host}:{port} is already served with other limits")
            _servers[(host, port)] = (server, users + 1)
            return server
        candidates = list(range(port, min(port + max(tries, 1), 65536))) if port else [0]
        for candidate in candidates:
            server = RtspServer(host, candidate, credentials, limits)
            try:
                server.start()
                break
            except OSError as error:
                if error.errno != errno.EADDRINUSE or candidate == candidates[-1]:
                    raise
        if server.port != port and port:
            log.warning("rtsp: port %d on %s is taken: serving on %d", port, host, server.port)
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

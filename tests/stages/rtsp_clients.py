"""Clients for the RTSP output's tests, all on 127.0.0.1.

``Player`` is a real player: PyAV (FFmpeg's RTSP client and H.264 decoder) on a
thread, recording for every decoded frame when it arrived, its PTS and the
frame counter burned in by ``SyntheticSource`` (``None`` for the server's
"no signal" filler). ``RawClient`` speaks RTSP over a bare socket, for what no
well-behaved player does: inspect a 401, look at the first RTP packet after
PLAY, stop reading (a stalled viewer), or vanish with a TCP reset; it also plays
over UDP and sends keep-alives or RTCP by hand. ``GstPlayer`` plays with
GStreamer's rtspsrc (Debian's python3 and its gi), and ``Slowloris`` holds many
idle and slowly dripped connections open from another process.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass
from itertools import pairwise
from urllib.parse import urlsplit

import av
import numpy as np

from stages.sinks.rtsp.connection import udp_port_pair
from stages.sources.synthetic import COUNTER_BITS, counter_cell, read_counter
from tests.conftest import free_port, wait_until  # noqa: F401  (re-exported for the tests)
from tests.stages.rtsp_camera import SYSTEM_PYTHON, system_gstreamer_has

HOST = "127.0.0.1"


def md5(*parts: str) -> str:
    """``md5("a", "b")``: the hex MD5 of ``a:b``, as Digest authentication joins its parts."""
    return hashlib.md5(":".join(parts).encode()).hexdigest()


def digest_authorization(
    nonce: str,
    method: str,
    uri: str,
    *,
    user: str = "u",
    password: str = "p",
    nc: int | None = 1,
    cnonce: str = "0a4f113b9c2d7e51",
    realm: str = "FrameGraph",
) -> str:
    """An ``Authorization`` value as a client computes it.

    With ``nc`` it is FFmpeg's form (libavformat/httpauth.c: qop="auth", a fresh
    cnonce per request, nc counting requests from 1 per nonce); with ``nc=None``
    it is GStreamer's (gstrtspconnection.c: RFC 2069, no qop / nc / cnonce).
    """
    ha1, ha2 = md5(user, realm, password), md5(method, uri)
    head = f'Digest username="{user}",realm="{realm}",nonce="{nonce}",uri="{uri}"'
    if nc is None:
        return f'{head.replace(",", ", ")}, response="{md5(ha1, nonce, ha2)}"'
    count = f"{nc:08x}"
    response = md5(ha1, nonce, count, cnonce, "auth", ha2)
    return f'{head},response="{response}",algorithm=MD5,qop="auth",cnonce="{cnonce}",nc={count}'


def is_listening(port: int) -> bool:
    """True when a TCP socket listens on ``port`` (read from /proc, so nothing connects:
    FFmpeg's listen mode would take a probing connection for the real one)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                    return True
    return False


# ---- what a decoded picture shows ---------------------------------------------------


def counter_levels(image: np.ndarray) -> np.ndarray:
    """Mean brightness of each counter cell (black ~0 or white ~255 on a real frame)."""
    cell = counter_cell(image.shape[1])
    strip = image[1 : cell - 1, : COUNTER_BITS * cell].mean(axis=(0, 2))
    return np.array([strip[i * cell + 1 : (i + 1) * cell - 1].mean() for i in range(COUNTER_BITS)])


def frame_counter(image: np.ndarray) -> int | None:
    """The burned-in frame index, or None for the "no signal" picture (flat grey 40)."""
    levels = counter_levels(image)
    if np.all((levels > 15) & (levels < 75)):
        return None
    return read_counter(image)


# ---- PyAV player ---------------------------------------------------------------------


@dataclass
class Received:
    """One decoded frame: when it arrived (monotonic s), PTS, counter (None: filler),
    and whether the decoder flagged it corrupt (packets lost, e.g. over UDP)."""

    arrival: float
    pts: int | None
    counter: int | None
    corrupt: bool = False


class Player(threading.Thread):
    """Plays ``url`` with PyAV on its own thread until ``seconds`` of frames were
    decoded (counted from the first one), ``frames`` were decoded, ``stop()``, or
    the stream ends. Errors are kept in ``error``, never raised on the thread."""

    def __init__(self, url: str, transport: str = "tcp", seconds: float | None = None,
                 frames: int | None = None) -> None:  # fmt: skip
        super().__init__(name=f"player-{transport}", daemon=True)
        self.url, self.transport = url, transport
        self.seconds, self.frames = seconds, frames
        self.started = 0.0
        self.opened: float | None = None
        self.received: list[Received] = []
        self.error: BaseException | None = None
        self.size: tuple[int, int] | None = None
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        self.started = time.monotonic()
        try:
            options = {"rtsp_transport": self.transport}
            with av.open(self.url, options=options, timeout=10) as container:
                self.opened = time.monotonic()
                for frame in container.decode(video=0):
                    image = frame.to_ndarray(format="bgr24")
                    now = time.monotonic()
                    self.size = (frame.width, frame.height)
                    counter = frame_counter(image)
                    self.received.append(Received(now, frame.pts, counter, frame.is_corrupt))
                    if self._done(now):
                        break
        except BaseException as error:  # reported by the test
            self.error = error

    def _done(self, now: float) -> bool:
        if self._halt.is_set():
            return True
        if self.frames is not None and len(self.received) >= self.frames:
            return True
        return self.seconds is not None and now - self.received[0].arrival >= self.seconds

    # ---- what it saw --------------------------------------------------------
    @property
    def first_frame_after(self) -> float:
        """Seconds from starting to open the URL to the first decoded picture."""
        return self.received[0].arrival - self.started

    @property
    def counters(self) -> list[int]:
        """Counters read from intact frames (a corrupt frame's pixels may lie)."""
        return [r.counter for r in self.received if r.counter is not None and not r.corrupt]

    @property
    def corrupt(self) -> int:
        return sum(r.corrupt for r in self.received)

    @property
    def pts(self) -> list[int]:
        """PTS of every frame that has one (FFmpeg may leave the first one unset)."""
        return [r.pts for r in self.received if r.pts is not None]

    def delivered(self) -> float:
        """Share of the source's frames, between the first and last one seen, decoded."""
        counters = self.counters
        return len(set(counters)) / (max(counters) - min(counters) + 1)

    def rate(self, after: float = 0.0) -> float:
        """Decoded frames per second of wall time, first to last frame; from ``after``
        seconds past the first one (the frames FFmpeg buffered while probing the
        stream arrive in a burst)."""
        start = self.received[0].arrival + after
        arrivals = [r.arrival for r in self.received if r.arrival >= start]
        return (len(arrivals) - 1) / (arrivals[-1] - arrivals[0])

    def largest_gap(self) -> int:
        """Most source frames missing in a row between two decoded ones."""
        return max((b - a - 1 for a, b in pairwise(self.counters)), default=0)

    def check(self, counters: bool = True) -> None:
        """Assert it played cleanly: frames came, PTS strictly increase, and (for
        the synthetic scene) counters never go backwards or repeat."""
        assert self.error is None, f"{self.transport} player failed: {self.error!r}"
        assert len(self.received) > 1, "no frames decoded"
        assert all(b > a for a, b in pairwise(self.pts)), "PTS not strictly increasing"
        if counters:
            assert all(b > a for a, b in pairwise(self.counters)), "counters not increasing"


# ---- RTSP over a bare socket ---------------------------------------------------------


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


class RawClient:
    """RTSP/1.0 spoken by hand over one TCP connection (interleaved media only).

    Args:
        url: the stream's ``rtsp://`` URL.
        rcvbuf: SO_RCVBUF set before connecting (a small one makes a stalled
            reader stall the TCP window at once).
        timeout: socket timeout in seconds.
    """

    def __init__(self, url: str, rcvbuf: int | None = None, timeout: float = 5.0) -> None:
        self.url = url
        parts = urlsplit(url)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((parts.hostname, parts.port))
        self.cseq = 0
        self.session: str | None = None
        self.buffer = b""
        self.packets: list[tuple[float, int, bytes]] = []
        """Interleaved packets read so far: (arrival, channel, RTP packet)."""
        self.setup: Response | None = None
        self.rtp: socket.socket | None = None  # UDP sessions: where media arrives
        self.rtcp: socket.socket | None = None

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        self.buffer += chunk

    def _take_interleaved(self) -> bool:
        """Move one complete ``$`` frame from the buffer to ``packets``."""
        if len(self.buffer) < 4:
            return False
        size = struct.unpack("!H", self.buffer[2:4])[0]
        if len(self.buffer) < 4 + size:
            return False
        self.packets.append((time.monotonic(), self.buffer[1], self.buffer[4 : 4 + size]))
        self.buffer = self.buffer[4 + size :]
        return True

    def read_response(self) -> Response:
        """The next response; interleaved packets before it go to ``packets``."""
        while True:
            if self.buffer.startswith(b"$"):
                if not self._take_interleaved():
                    self._fill()
                continue
            end = self.buffer.find(b"\r\n\r\n")
            if end == -1:
                self._fill()
                continue
            head, rest = self.buffer[:end].decode("latin-1"), self.buffer[end + 4 :]
            lines = head.split("\r\n")
            status = int(lines[0].split(" ")[1])
            headers = [(k.strip(), v.strip()) for k, _, v in (x.partition(":") for x in lines[1:])]
            length = int(next((v for k, v in headers if k.lower() == "content-length"), "0"))
            while len(rest) < length:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("server closed the connection")
                rest += chunk
            self.buffer = rest[length:]
            return Response(status, headers, rest[:length])

    def request(self, method: str, url: str | None = None, **headers: str) -> Response:
        self.cseq += 1
        lines = [f"{method} {url or self.url} RTSP/1.0", f"CSeq: {self.cseq}"]
        if self.session is not None:
            lines.append(f"Session: {self.session}")
        lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        return self.read_response()

    def play(self, transport: str = "tcp") -> float:
        """DESCRIBE, SETUP (TCP interleaved 0-1, or UDP to a fresh port pair), PLAY;
        returns when PLAY was sent. ``setup`` keeps SETUP's response."""
        described = self.request("DESCRIBE", Accept="application/sdp")
        assert described.status == 200, described
        base = described.header("Content-Base") or self.url + "/"
        if transport == "udp":
            self.rtp, self.rtcp = udp_port_pair(HOST)
            port = self.rtp.getsockname()[1]
            spec = f"RTP/AVP;unicast;client_port={port}-{port + 1}"
        else:
            spec = "RTP/AVP/TCP;unicast;interleaved=0-1"
        self.setup = self.request("SETUP", base + "trackID=0", Transport=spec)
        assert self.setup.status == 200, self.setup
        self.session = (self.setup.header("Session") or "").split(";")[0]
        sent = time.monotonic()
        played = self.request("PLAY", self.url, Range="npt=0.000-")
        assert played.status == 200, played
        return sent

    @property
    def server_rtcp(self) -> tuple[str, int]:
        """Where the server takes RTCP for a UDP session (its odd server port)."""
        assert self.setup is not None
        transport = self.setup.header("Transport") or ""
        options = dict(part.partition("=")[::2] for part in transport.split(";"))
        return self.sock.getpeername()[0], int(options["server_port"].split("-")[1])

    def udp_packets(self, seconds: float) -> int:
        """RTP packets that arrive on the UDP port within ``seconds``."""
        assert self.rtp is not None
        count, deadline = 0, time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.rtp.settimeout(left)
            try:
                self.rtp.recv(65536)
            except TimeoutError:
                break
            count += 1
        return count

    def send_rtcp(self) -> None:
        """An empty RTCP receiver report: to the server's RTCP port over UDP, on
        channel 1 when interleaved."""
        report = struct.pack("!BBHI", 0x80, 201, 1, 0x12345678)
        if self.rtcp is not None:
            self.rtcp.sendto(report, self.server_rtcp)
        else:
            self.sock.sendall(b"$\x01" + len(report).to_bytes(2, "big") + report)

    def keep_alive(self) -> Response:
        """GET_PARAMETER with the session, as players send to keep it alive
        (media read meanwhile is dropped)."""
        response = self.request("GET_PARAMETER", self.url)
        self.packets.clear()
        return response

    def next_packet(self) -> tuple[float, int, bytes]:
        """The next interleaved packet (arrival time, channel, RTP bytes)."""
        while not self.packets:
            if not self.buffer.startswith(b"$") and self.buffer:
                raise AssertionError(f"unexpected bytes in the media stream: {self.buffer[:40]!r}")
            if not self._take_interleaved():
                self._fill()
        return self.packets.pop(0)

    def read_until_closed(self, seconds: float) -> list[tuple[float, int, bytes]]:
        """Every packet until the server hangs up or ``seconds`` have passed."""
        deadline = time.monotonic() + seconds
        packets = []
        with contextlib.suppress(ConnectionError, TimeoutError):
            while time.monotonic() < deadline:
                packets.append(self.next_packet())
        return packets

    def reset(self) -> None:
        """Vanish abruptly: close with a TCP reset (SO_LINGER 0), no TEARDOWN."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def close(self) -> None:
        for sock in (self.sock, self.rtp, self.rtcp):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()


def rtp_payload(packet: bytes) -> bytes:
    """The payload of an RTP packet (after CSRCs and any header extension)."""
    count = packet[0] & 0x0F
    offset = 12 + 4 * count
    if packet[0] & 0x10:
        words = struct.unpack("!H", packet[offset + 2 : offset + 4])[0]
        offset += 4 + 4 * words
    return packet[offset:]


def rtp_timestamp(packet: bytes) -> int:
    return struct.unpack("!I", packet[4:8])[0]


def starts_keyframe(packet: bytes) -> bool:
    """True if the RTP packet opens an H.264 keyframe: SPS, PPS, an IDR slice, or the
    first FU-A fragment of an IDR slice (RFC 6184)."""
    payload = rtp_payload(packet)
    kind = payload[0] & 0x1F
    if kind == 28:  # FU-A: the fragmented NAL's type is in the FU header
        return bool(payload[1] & 0x80) and payload[1] & 0x1F == 5
    return kind in (5, 7, 8)


# ---- GStreamer's RTSP client -----------------------------------------------------------

GST_PLAYER = textwrap.dedent("""
    import json, sys, time
    import gi
    gi.require_version("Gst", "1.0")
    from gi.repository import GLib, Gst

    url, transport, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    Gst.init(None)
    # Whole access units (one per frame) as rtph264depay hands them on: Debian's
    # GStreamer has no H.264 decoder in the packages CI installs (avdec_h264 is in
    # gstreamer1.0-libav; openh264dec refuses caps without a profile).
    pipeline = Gst.parse_launch(
        f"rtspsrc location={url} protocols={transport} latency=200 ! rtph264depay ! "
        "video/x-h264,stream-format=byte-stream,alignment=au ! "
        "appsink name=sink emit-signals=true sync=false max-buffers=100"
    )
    arrivals, errors = [], []
    loop = GLib.MainLoop()

    def on_sample(sink):
        sink.emit("pull-sample")
        arrivals.append(time.monotonic())
        if arrivals[-1] - arrivals[0] >= seconds:
            GLib.idle_add(loop.quit)
        return Gst.FlowReturn.OK

    def on_message(bus, message):
        if message.type == Gst.MessageType.ERROR:
            errors.append(str(message.parse_error()[0].message))
            loop.quit()
        elif message.type == Gst.MessageType.EOS:
            loop.quit()

    pipeline.get_by_name("sink").connect("new-sample", on_sample)
    bus = pipeline.get_bus()
    bus.add_signal_watch()
    bus.connect("message", on_message)
    started = time.monotonic()
    GLib.timeout_add_seconds(int(seconds) + 30, loop.quit)  # only a hang
    pipeline.set_state(Gst.State.PLAYING)
    loop.run()
    pipeline.set_state(Gst.State.NULL)
    print(json.dumps({"arrivals": arrivals, "started": started, "errors": errors}), flush=True)
""")


def gstreamer_player_available() -> bool:
    """Debian's python3 with GStreamer's rtspsrc, rtph264depay and appsink is here."""
    return system_gstreamer_has("rtspsrc", "rtph264depay", "appsink")


class GstPlayer:
    """Plays ``url`` with GStreamer (rtspsrc, rtph264depay) in its own process until
    ``seconds`` of frames (whole access units, not decoded) arrived, counted from the
    first; ``join()`` then reads when each came."""

    def __init__(self, url: str, transport: str = "tcp", seconds: float = 5.0) -> None:
        self.url, self.transport, self.seconds = url, transport, seconds
        self.process: subprocess.Popen[str] | None = None
        self.arrivals: list[float] = []
        self.errors: list[str] = []
        self.first_frame_after: float | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [SYSTEM_PYTHON, "-c", GST_PLAYER, self.url, self.transport, str(self.seconds)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    def join(self, timeout: float) -> None:
        assert self.process is not None
        try:
            stdout, stderr = self.process.communicate(timeout=timeout)
        finally:
            self.process.kill()
        lines = stdout.strip().splitlines()
        assert lines, f"gstreamer player printed nothing: {stderr[-2000:]}"
        result = json.loads(lines[-1])
        self.arrivals, self.errors = result["arrivals"], result["errors"]
        if self.arrivals:
            self.first_frame_after = self.arrivals[0] - result["started"]

    def rate(self, after: float = 0.0) -> float:
        """Frames per second of wall time, first to last frame; from ``after``
        seconds past the first one."""
        arrivals = [a for a in self.arrivals if a >= self.arrivals[0] + after]
        return (len(arrivals) - 1) / (arrivals[-1] - arrivals[0])

    def largest_gap(self) -> float:
        """Longest wait between two frames, seconds."""
        return max((b - a for a, b in pairwise(self.arrivals)), default=0.0)


# ---- an attacker that holds connections ------------------------------------------------

SLOWLORIS = textwrap.dedent("""
    import json, selectors, socket, sys, time

    port, idle, drip, interval, addresses = (int(sys.argv[1]), int(sys.argv[2]),
                                             int(sys.argv[3]), float(sys.argv[4]), sys.argv[5:])
    request = (f"OPTIONS rtsp://127.0.0.1:{port}/live RTSP/1.0\\r\\nCSeq: 1\\r\\nX-Pad: "
               + "a" * 8000).encode()
    selector = selectors.DefaultSelector()
    stats = {"idle": 0, "drip": 0, "opened": 0, "closed": 0, "refused": 0, "failed": 0}
    turn = 0

    def connect(kind):
        global turn
        turn += 1
        sock = socket.socket()
        sock.bind((addresses[turn % len(addresses)], 0))
        sock.settimeout(2)
        try:
            sock.connect(("127.0.0.1", port))
        except OSError:
            sock.close()
            stats["failed"] += 1
            return
        sock.setblocking(False)
        now = time.monotonic()
        state = {"kind": kind, "opened": now, "due": now, "sent": 0}
        selector.register(sock, selectors.EVENT_READ, state)
        stats[kind] += 1
        stats["opened"] += 1

    for i in range(idle + drip):
        connect("idle" if i < idle else "drip")
    report = time.monotonic()
    while True:
        for key, _ in selector.select(0.05):
            try:
                data = key.fileobj.recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if data:
                continue  # an answer: not expected from either kind
            state = key.data
            selector.unregister(key.fileobj)
            key.fileobj.close()
            stats[state["kind"]] -= 1
            # closed within a moment of connecting: the server refused it (a cap)
            lived = time.monotonic() - state["opened"]
            stats["refused" if lived < 0.5 else "closed"] += 1
            connect(state["kind"])  # and the attacker comes straight back
        now = time.monotonic()
        for key in list(selector.get_map().values()):
            state = key.data
            if state["kind"] == "drip" and now >= state["due"]:
                state["due"] = now + interval
                try:
                    key.fileobj.send(request[state["sent"] : state["sent"] + 1])
                    state["sent"] += 1
                except OSError:
                    pass
        if now - report >= 0.5:
            report = now
            print(json.dumps({"t": now, **stats}), flush=True)
""")


class Slowloris:
    """Another process that keeps ``idle`` connections open that never send a byte
    and ``drip`` connections that send a request header one byte every ``interval``
    seconds, spread over the loopback ``addresses``; each one the server closes is
    opened again at once. ``reports`` collects its status lines (open counts,
    closed by the server, refused right away)."""

    def __init__(self, port: int, idle: int, drip: int, interval: float,
                 addresses: list[str]) -> None:  # fmt: skip
        self.process = subprocess.Popen(
            [sys.executable, "-c", SLOWLORIS, str(port), str(idle), str(drip), str(interval),
             *addresses],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.reports: list[dict[str, float]] = []
        self._reader = threading.Thread(target=self._read, name="slowloris-out", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.reports.append(json.loads(line))

    @property
    def last(self) -> dict[str, float]:
        return self.reports[-1] if self.reports else {}

    def stop(self) -> str:
        """End the process (its connections close with it); returns its stderr."""
        self.process.kill()
        _, stderr = self.process.communicate(timeout=10)
        self._reader.join(5)
        return stderr

"""Clients for the RTSP output's tests, all on 127.0.0.1.

``Player`` is a real player: PyAV (FFmpeg's RTSP client and H.264 decoder) on a
thread, recording for every decoded frame when it arrived, its PTS and the
frame counter burned in by ``SyntheticSource`` (``None`` for the server's
"no signal" filler). ``RawClient`` speaks RTSP over a bare socket, for what no
well-behaved player does: inspect a 401, look at the first RTP packet after
PLAY, stop reading (a stalled viewer), or vanish with a TCP reset.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from dataclasses import dataclass
from itertools import pairwise
from urllib.parse import urlsplit

import av
import numpy as np

from stages.sources.synthetic import COUNTER_BITS, counter_cell, read_counter
from tests.conftest import free_port, wait_until  # noqa: F401  (re-exported for the tests)

HOST = "127.0.0.1"


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

    def rate(self) -> float:
        """Decoded frames per second of wall time, first to last frame."""
        span = self.received[-1].arrival - self.received[0].arrival
        return (len(self.received) - 1) / span

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

    def play(self) -> float:
        """DESCRIBE, SETUP (TCP interleaved 0-1), PLAY; returns when PLAY was sent."""
        described = self.request("DESCRIBE", Accept="application/sdp")
        assert described.status == 200, described
        base = described.header("Content-Base") or self.url + "/"
        setup = self.request("SETUP", base + "trackID=0",
                             Transport="RTP/AVP/TCP;unicast;interleaved=0-1")  # fmt: skip
        assert setup.status == 200, setup
        self.session = (setup.header("Session") or "").split(";")[0]
        sent = time.monotonic()
        played = self.request("PLAY", self.url, Range="npt=0.000-")
        assert played.status == 200, played
        return sent

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
        with contextlib.suppress(OSError):
            self.sock.close()


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

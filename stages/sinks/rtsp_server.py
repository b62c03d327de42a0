"""Serve the annotated stream over RTSP from inside the pipeline process."""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from urllib.parse import urlsplit

import cv2
import numpy as np

from pipeline.config import register
from pipeline.errors import ConfigError, SinkError
from pipeline.frame import Frame
from pipeline.stage import Sink
from stages.sinks.fit import even_size, fit
from stages.sinks.rtsp.auth import Credentials, Scheme
from stages.sinks.rtsp.encoder import LiveEncoder
from stages.sinks.rtsp.h264 import CLOCK_RATE, RtpPacketizer, sdp
from stages.sinks.rtsp.server import Limits, Mount, RtspServer, acquire_server, release_server

log = logging.getLogger("framegraph")
DEFAULT_PORT = 8554


def parse_rtsp_url(url: str) -> tuple[str, int, str]:
    """``rtsp://host:port/path`` -> (host, port, path).

    Raises:
        ConfigError: not an rtsp:// URL.
    """
    parts = urlsplit(url)
    if parts.scheme != "rtsp" or not parts.hostname:
        raise ConfigError(f"serve URL must look like rtsp://HOST:PORT/PATH, got {url!r}")
    try:
        port = DEFAULT_PORT if parts.port is None else parts.port  # 0: any free port
    except ValueError:
        raise ConfigError(f"bad port in {url!r}") from None
    return parts.hostname, port, "/" + (parts.path or "/").strip("/")


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) only serves this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


class RtpClock:
    """90 kHz RTP timestamps: from frame PTS while frames flow, from the wall clock
    for filler frames, and always strictly increasing (a jump back in PTS, e.g.
    after filler frames ran ahead of a reconnected source, shifts the mapping)."""

    def __init__(self, fps: float) -> None:
        self.step = max(round(CLOCK_RATE / fps), 1)
        self.last: int | None = None
        self._offset: int | None = None
        self._last_wall = 0.0

    def from_pts(self, seconds: float) -> int:
        ticks = round(seconds * CLOCK_RATE)
        if self._offset is None:
            self._offset = -ticks
        stamp = ticks + self._offset
        if self.last is not None and stamp <= self.last:
            self._offset += self.last + self.step - stamp
            stamp = self.last + self.step
        return self._advance(stamp)

    def from_wall(self) -> int:
        if self.last is None:
            return self._advance(0)
        elapsed = round((time.monotonic() - self._last_wall) * CLOCK_RATE)
        return self._advance(self.last + max(elapsed, 1))

    def _advance(self, stamp: int) -> int:
        self.last = stamp
        self._last_wall = time.monotonic()
        return stamp


def no_signal_image(width: int, height: int) -> np.ndarray:
    """The filler picture sent while the source is down."""
    image = np.full((height, width, 3), 40, np.uint8)
    text = "no signal"
    scale = max(width / 640, 0.4)
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 1.5 * scale, 2)
    origin = ((width - tw) // 2, (height + th) // 2)
    cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 1.5 * scale, (200, 200, 200), 2)
    cv2.putText(image, time.strftime("%H:%M:%S"), (10, height - 12), cv2.FONT_HERSHEY_SIMPLEX,
                0.6 * scale, (160, 160, 160), 1)  # fmt: skip
    return image


@register("rtsp_server")
class RtspServerSink(Sink):
    """Serves frames as H.264 over RTSP at ``url`` (TCP interleaved and UDP).

    Several sinks with the same host and port share one server (one mount each).
    While no frame arrives for ``idle_after`` seconds (a source reconnecting),
    a "no signal" picture is sent at ``fps`` so players stay connected.

    Args:
        url: ``rtsp://HOST:PORT/PATH`` to serve; HOST 127.0.0.1 keeps it local,
            0.0.0.0 serves every interface (explicitly).
        fps: nominal frame rate (encoder rate control, filler rate, SDP).
        preset: x264 preset.
        bitrate: target bits per second (None: constant quality).
        keyint: frames between keyframes (None: one per second); a client
            joining mid-stream waits at most this long for a picture.
        username: require this user (with ``password``) for DESCRIBE / SETUP /
            PLAY. Without one, a non-loopback ``url`` is served to anyone who
            can reach it (a warning says so).
        password: the user's password.
        auth: how clients prove it: ``digest`` (default; expiring, signed,
            replay-checked nonces), ``basic`` (the password crosses the network
            in clear on every request, reusable by anyone who sees one) or
            ``any`` (both offered; FFmpeg and GStreamer pick Digest).
        idle_after: seconds without frames before "no signal" fillers start.
        client_buffer: RTP packets queued per client before it is resynced.
        max_connections_per_address: connections one IP address may hold open
            at once (players behind one NAT share an address).
        session_timeout: seconds a client's session lives without a keep-alive
            (an RTSP request naming it, or RTCP); players are told this value.
        nonce_lifetime: seconds a Digest nonce is accepted; then clients are told it is
            stale and answer a fresh one on their own (a captured header dies with it).
        port_tries: ports to try from the url's upward while the one tried is taken by
            another process (cluster workers sharing a node); ``served_url`` has the one
            served on. 1: a taken port is an error.
    """

    def __init__(
        self,
        url: str = "rtsp://127.0.0.1:8554/live",
        fps: float = 30.0,
        preset: str = "ultrafast",
        bitrate: int | None = None,
        keyint: int | None = None,
        username: str | None = None,
        password: str | None = None,
        auth: Scheme = "digest",
        idle_after: float = 1.0,
        client_buffer: int = 2048,
        max_connections_per_address: int = 32,
        session_timeout: int = 60,
        nonce_lifetime: float = 60.0,
        port_tries: int = 1,
    ) -> None:
        self.url = url
        self.host, self.port, self.path = parse_rtsp_url(url)
        if (username is None) != (password is None):
            raise ConfigError("rtsp_server: give both username and password, or neither")
        try:
            self.credentials = (
                Credentials(username, password, auth, nonce_lifetime=nonce_lifetime)  # type: ignore[arg-type]
                if username
                else None
            )
        except ValueError as error:
            raise ConfigError(f"rtsp_server: {error}") from None
        if port_tries < 1:
            raise ConfigError("rtsp_server: port_tries must be at least 1")
        self.port_tries = port_tries
        self.fps = fps
        self.preset, self.bitrate, self.keyint = preset, bitrate, keyint
        self.idle_after = idle_after
        self.client_buffer = client_buffer
        try:
            self.limits = Limits(max_per_address=max_connections_per_address,
                                 session_timeout=session_timeout)  # fmt: skip
        except ValueError as error:
            raise ConfigError(f"rtsp_server: {error}") from None
        self.server: RtspServer | None = None
        self.mount: Mount | None = None
        self._encoder: LiveEncoder | None = None
        self._packetizer = RtpPacketizer()
        self._clock = RtpClock(fps)
        self._lock = threading.Lock()
        self._last_frame = 0.0
        self._fillers = 0
        self._stop = threading.Event()
        self._filler_thread: threading.Thread | None = None

    def open(self) -> None:
        if not is_loopback(self.host):
            if self.credentials is None:
                log.warning(
                    "rtsp_server: %s is served without credentials to anyone who can "
                    "reach %s (set username and password)",
                    self.url,
                    self.host,
                )
            elif self.credentials.scheme != "digest":
                log.warning(
                    "rtsp_server: %s accepts Basic auth, which sends the password in "
                    "clear (auth: digest avoids it)",
                    self.url,
                )
        try:
            self.server = acquire_server(self.host, self.port, self.credentials, self.limits,
                                         self.port_tries)  # fmt: skip
        except OSError as error:
            ports = f"{self.port}" + (f"-{self.port + self.port_tries - 1}"
                                      if self.port and self.port_tries > 1 else "")  # fmt: skip
            raise SinkError(f"cannot serve RTSP on {self.host}:{ports}: {error.strerror}") from None
        except ValueError as error:
            raise SinkError(str(error)) from None
        try:
            self.mount = self.server.add_mount(self.path, self.client_buffer)
        except ValueError as error:  # the path is another sink's: leave it (and close()) alone
            release_server(self.server, self.host, self.port)
            self.server = None
            raise SinkError(str(error)) from None
        self._filler_thread = threading.Thread(target=self._fill, name="rtsp-filler", daemon=True)
        self._filler_thread.start()

    @property
    def served_url(self) -> str:
        """The URL players open (with the real port when 0 was asked for)."""
        port = self.server.port if self.server is not None else self.port
        host = f"[{self.host}]" if ":" in self.host else self.host  # IPv6, as URLs write it
        return f"rtsp://{host}:{port}{self.path}"

    def write(self, frame: Frame) -> None:
        with self._lock:
            self._last_frame = time.monotonic()
            image = frame.image
            if self._encoder is None:
                log.warning("serving %s", self.served_url)  # once, when there is a picture
                self._encoder = LiveEncoder(*even_size(image), self.fps, self.preset,
                                            self.bitrate, self.keyint)  # fmt: skip
            self._send(image, self._clock.from_pts(frame.time))

    def _send(self, image: np.ndarray, timestamp: int) -> None:
        encoder = self._encoder
        assert encoder is not None and self.mount is not None
        image = fit(image, (encoder.width, encoder.height))
        for unit in encoder.encode(image, timestamp):
            if not self.mount.ready.is_set() and encoder.sps and encoder.pps:
                self.mount.describe(sdp(encoder.sps, encoder.pps, self.fps, self._packetizer.ssrc))
            packets = self._packetizer.packetize(unit.nals, unit.timestamp)
            self.mount.publish(packets, unit.keyframe)

    def _fill(self) -> None:
        """While frames stop coming, send "no signal" frames at ``fps``."""
        period = 1.0 / self.fps
        while not self._stop.wait(period):
            with self._lock:
                idle = time.monotonic() - self._last_frame
                if self._encoder is None or idle < self.idle_after:
                    continue
                image = no_signal_image(self._encoder.width, self._encoder.height)
                self._send(image, self._clock.from_wall())
                self._fillers += 1

    def status(self) -> dict[str, object]:
        stats = self.mount.stats() if self.mount is not None else {}
        return {**stats, "no_signal_frames": self._fillers}

    def close(self) -> None:
        self._stop.set()
        if self._filler_thread is not None:
            self._filler_thread.join()
        if self.server is not None:
            if self.mount is not None:
                self.server.remove_mount(self.path)
            release_server(self.server, self.host, self.port)
            self.server = None

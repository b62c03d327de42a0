"""Network streams (rtsp, rtsps, http(s), hls, udp, rtmp, tcp, srt) through PyAV,
with a stall watchdog and reconnection.

Connection states, shown live in metrics: ``connecting`` -> ``streaming`` ->
(``reconnecting`` -> ``streaming``)* -> ``stopped``. The first connection must
succeed within ``open_timeout`` (a wrong URL is an error, not an endless wait);
after that, a lost or stalled stream (no packet for ``read_timeout`` seconds) is
reopened with exponential backoff, forever unless ``max_reconnects`` says.

Timestamps: each connection's PTS restart wherever the server likes, so output
PTS are ``connection start (seconds since the first connection) + PTS since
that connection's first frame``, in a fixed 1/90000 time base. They increase
strictly and a reconnection leaves a gap as long as the outage. Where the
server's own clock jumps back within a connection (a looping test server, a
restarted encoder behind a relay), or ran ahead of ours before a reconnection
(a burst of buffered media), the time line carries on one frame interval after
the last frame instead of squeezing frames together.

A connection counts as back once it delivers a frame: one that opens but ends
before any frame is a failed attempt (longer backoff, counted for
``max_reconnects``).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from fractions import Fraction
from typing import Literal

import av

from pipeline.config import register
from pipeline.errors import StreamError
from pipeline.frame import Frame
from pipeline.stage import Source
from stages.sources.av_input import describe, to_bgr

log = logging.getLogger("framegraph")
TIME_BASE = Fraction(1, 90_000)
LOW_LATENCY = {
    "flags": "low_delay",
    "max_delay": "500000",
    "probesize": "32",
    "analyzeduration": "0",
}
"""Demuxer options for ``low_latency``. A minimal probe opens a stream in about
0.1 s instead of about 1 s, and nothing read while probing is thrown away; with
FFmpeg's ``fflags=nobuffer`` the frames read during the probe were discarded, so
every connection lost up to a whole GOP (measured on a local MPEG-TS stream)."""
MAX_STEP = 1.0
"""Longest media-time step between two frames still taken as the frame interval."""


def redact(url: str) -> str:
    """URL without its password, for logs and errors."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    credentials, host = rest.split("@", 1)
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


class _Timeline:
    """Output PTS of one stream source across connections (rules in the module doc)."""

    def __init__(self) -> None:
        self.last = -1
        self.step = 1  # media time between the last two frames, in TIME_BASE ticks
        self._origin = time.monotonic()
        self._start = 0
        self._first: float | None = None
        self._previous: float | None = None

    def _now(self) -> int:
        return round((time.monotonic() - self._origin) / TIME_BASE)

    def new_connection(self, rate: Fraction | None) -> None:
        """A connection opened; ``rate`` is its nominal frame rate, if known."""
        if self.last < 0 and rate:
            self.step = max(round(1 / (rate * TIME_BASE)), 1)
        self._start = self._now()
        if self.last >= 0:  # never behind the previous connection's last frame
            self._start = max(self._start, self.last + self.step)
        self._first = self._previous = None

    def stamp(self, seconds: float | None) -> int:
        """PTS for a frame at media time ``seconds`` of this connection (None: unknown)."""
        if seconds is None:
            pts = self._now()
        else:
            previous = self._previous
            if previous is not None and seconds <= previous:
                # The server's clock jumped back: go on one frame after the last one.
                self._start, self._first = self.last + self.step, seconds
            elif previous is not None and seconds - previous <= MAX_STEP:
                self.step = max(round((seconds - previous) / TIME_BASE), 1)
            self._previous = seconds
            if self._first is None:
                self._first = seconds
            pts = self._start + round((seconds - self._first) / TIME_BASE)
        self.last = max(pts, self.last + 1)
        return self.last


@register("stream")
class StreamSource(Source):
    """A live network stream.

    Args:
        url: e.g. ``rtsp://cam/1``, ``http://host/live.m3u8``, ``udp://@:5000``.
        transport: RTSP transport, ``tcp`` (default, survives NAT and loss) or ``udp``.
        low_latency: ask FFmpeg not to buffer (nobuffer, low_delay).
        open_timeout: seconds to wait for the first connection.
        read_timeout: seconds without data before the stream counts as stalled.
        reconnect: reopen a lost stream (else a loss ends the source).
        max_reconnects: give up after this many failed attempts in a row (None = never).
        backoff_initial: first wait before reconnecting, doubled per failure.
        backoff_max: longest wait between attempts.
        options: extra FFmpeg demuxer/protocol options.
        source_id: name in results and metrics (default: the URL without password).
    """

    live = True

    def __init__(
        self,
        url: str,
        transport: Literal["tcp", "udp"] = "tcp",
        low_latency: bool = True,
        open_timeout: float = 10.0,
        read_timeout: float = 5.0,
        reconnect: bool = True,
        max_reconnects: int | None = None,
        backoff_initial: float = 0.5,
        backoff_max: float = 10.0,
        options: dict[str, str] | None = None,
        source_id: str | None = None,
    ) -> None:
        self.url = url
        self.transport = transport
        self.low_latency = low_latency
        self.open_timeout = open_timeout
        self.read_timeout = read_timeout
        self.reconnect = reconnect
        self.max_reconnects = max_reconnects
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.options = dict(options or {})
        self.source_id = source_id or redact(url)
        self.state = "connecting"
        self.reconnects = 0
        """Reconnections that brought frames again."""
        self.reconnect_attempts = 0
        self._container: av.container.InputContainer | None = None
        self._stop = threading.Event()

    def _av_options(self) -> dict[str, str]:
        options = dict(LOW_LATENCY) if self.low_latency else {}
        if self.url.startswith(("rtsp://", "rtsps://")):
            options["rtsp_transport"] = self.transport
        options.update(self.options)
        return options

    def _connect(self) -> av.container.InputContainer:
        container = av.open(
            self.url,
            mode="r",
            options=self._av_options(),
            timeout=(self.open_timeout, self.read_timeout),
        )
        if not container.streams.video:
            container.close()
            raise StreamError(f"no video in stream {redact(self.url)}")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        return container

    def open(self) -> None:
        try:
            self._container = self._connect()
        except (av.error.FFmpegError, OSError) as error:
            self.state = "stopped"
            raise StreamError(
                f"cannot open stream {redact(self.url)}: {describe(error)} "
                f"(waited up to {self.open_timeout:g} s)"
            ) from None
        except StreamError:
            self.state = "stopped"
            raise

    def status(self) -> dict[str, object]:
        return {
            "connection": self.state,
            "reconnects": self.reconnects,
            "reconnect_attempts": self.reconnect_attempts,
        }

    def request_stop(self) -> None:
        self._stop.set()

    def frames(self) -> Iterator[Frame]:
        timeline = _Timeline()
        index = 0
        failures = 0  # reconnection attempts in a row that brought no frame
        reconnected = False
        while not self._stop.is_set():
            if self._container is None:
                self._container = self._reconnect(failures)
                if self._container is None:
                    failures += 1
                    continue
                reconnected = True
            stream = self._container.streams.video[0]
            time_base = stream.time_base
            timeline.new_connection(stream.guessed_rate or stream.average_rate)
            delivered = False
            try:
                for packet in self._container.demux(stream):
                    for decoded in packet.decode():
                        seconds = None
                        if decoded.pts is not None and time_base is not None:
                            seconds = float(decoded.pts * time_base)
                        pts = timeline.stamp(seconds)
                        if not delivered:
                            delivered, failures = True, 0
                            self._connected(reconnected)
                        yield Frame(to_bgr(decoded), pts, TIME_BASE, index, self.source_id)
                        index += 1
                        if self._stop.is_set():
                            return
                log.warning("stream %s ended", redact(self.url))
            except (av.error.FFmpegError, OSError) as error:
                if self._stop.is_set():
                    return
                log.warning("stream %s lost: %s", redact(self.url), describe(error))
            finally:
                self._close_container()
            if not self.reconnect:
                return
            if reconnected and not delivered:
                failures += 1  # it opened, but is not back: a failed attempt
            self.state = "reconnecting"

    def _connected(self, after_reconnect: bool) -> None:
        """The connection delivered its first frame."""
        self.state = "streaming"
        if after_reconnect:
            self.reconnects += 1
            log.warning("stream %s is back", redact(self.url))

    def _reconnect(self, failures: int) -> av.container.InputContainer | None:
        """One attempt after a backoff wait; None if it failed (or we are stopping)."""
        if self.max_reconnects is not None and failures >= self.max_reconnects:
            raise StreamError(
                f"stream {redact(self.url)} lost and not back after {failures} attempts"
            )
        self.state = "reconnecting"
        wait = min(self.backoff_initial * 2**failures, self.backoff_max)
        if self._stop.wait(wait):
            return None
        self.reconnect_attempts += 1
        try:
            return self._connect()
        except (av.error.FFmpegError, OSError, StreamError) as error:
            log.info("reconnecting to %s failed: %s", redact(self.url), describe(error))
            return None

    def _close_container(self) -> None:
        if self._container is not None:
            with contextlib.suppress(av.error.FFmpegError, OSError):
                self._container.close()  # if already broken, nothing is left to release
            self._container = None

    def close(self) -> None:
        self.state = "stopped"
        self._close_container()

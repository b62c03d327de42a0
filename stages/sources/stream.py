"""Network streams (rtsp, rtsps, http(s), hls, udp, rtmp, tcp, srt) through PyAV,
with a stall watchdog and reconnection.

Live or finite: ``live: auto`` takes RTSP, RTMP, SRT, UDP, TCP and RTP as live; an HTTP(S)
input is a finite recording when its demuxer knows its duration (a file on a web server, a
VOD HLS playlist, which FFmpeg gives a duration only when it has ``#EXT-X-ENDLIST``) and
live otherwise (live HLS, MPEG-TS or MJPEG pushed over HTTP). A finite input plays like a
file: each frame once, in order, with its own timestamps, the edges after it blocking; a
transport error in the middle reconnects, seeks back to the last frame delivered (an HTTP
range request underneath) and goes on after it, giving up after ``max_reconnects``
attempts in a row that bring no new frame (5 unless set). The rest of this text is about
live inputs.

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
``max_reconnects``). Only a lost transport reconnects: a packet that fails to decode (a
bit error, a corrupt slice) is skipped and counted (``status()["decode_errors"]``), and a
frame over ``max_pixels``, declared when a connection opens or decoded later (a stream may
change size part-way), ends the source with an error, since reconnecting brings it back.
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

from pipeline.config import MAX_PIXELS, register
from pipeline.errors import StreamError
from pipeline.frame import Frame
from pipeline.stage import Source
from stages.sources.av_input import check_pixels, decode_frames, describe, to_bgr
from stages.sources.urls import redact

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
LIVE_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "srt", "udp", "tcp", "rtp")
"""Protocols that only carry live media; other inputs are finite when they have a duration."""
FINITE_RECONNECTS = 5
"""Attempts in a row without a new frame before a finite input gives up (``max_reconnects``
unset): a recording that keeps failing at one place is an error, not a wait forever."""


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
    """A network stream: live (a camera, live HLS) or finite (a file or VOD playlist over HTTP).

    Args:
        url: e.g. ``rtsp://cam/1``, ``http://host/live.m3u8``, ``udp://@:5000``.
        live: ``auto`` decides when the stream opens (module doc); ``True`` / ``False`` say.
        transport: RTSP transport, ``tcp`` (default, survives NAT and loss) or ``udp``.
        low_latency: ask FFmpeg not to buffer (nobuffer, low_delay).
        open_timeout: seconds to wait for the first connection.
        read_timeout: seconds without data before the stream counts as stalled.
        reconnect: reopen a lost stream (else a loss ends the source).
        max_reconnects: give up after this many failed attempts in a row (None: never on a
            live input, ``FINITE_RECONNECTS`` on a finite one).
        backoff_initial: first wait before reconnecting, doubled per failure.
        backoff_max: longest wait between attempts.
        options: extra FFmpeg demuxer/protocol options.
        source_id: name in results and metrics (default: the URL without user, password or
            token values, see ``stages.sources.urls.redact``).
        max_pixels: the largest frame accepted, width x height (None: no limit).
    """

    def __init__(
        self,
        url: str,
        live: Literal["auto", True, False] = "auto",
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
        max_pixels: int | None = MAX_PIXELS,
    ) -> None:
        self.url = url
        self.max_pixels = max_pixels
        scheme = url.split("://", 1)[0].lower() if "://" in url else ""
        self.decide_live = live == "auto" and scheme not in LIVE_SCHEMES
        """Live or finite is learnt from the input when it opens."""
        self.live = True if live == "auto" else bool(live)
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
        self.decode_errors = 0
        """Packets that failed to decode and were skipped (not taken for a lost link)."""
        self._container: av.container.InputContainer | None = None
        self._stop = threading.Event()

    def _av_options(self) -> dict[str, str]:
        options = dict(LOW_LATENCY) if self.low_latency and self.live else {}
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

    def _check_declared_size(self, container: av.container.InputContainer) -> None:
        """A connection's declared frame size within ``max_pixels``, else the container is
        closed and the source ends (another connection would bring the same size)."""
        context = container.streams.video[0].codec_context
        try:
            check_pixels(context.width, context.height, self.max_pixels,
                         f"stream {redact(self.url)}", StreamError)  # fmt: skip
        except StreamError:
            self.state = "stopped"
            with contextlib.suppress(av.error.FFmpegError, OSError):
                container.close()
            raise

    def open(self) -> None:
        try:
            container = self._connect()
            self._check_declared_size(container)
            self._container = container
        except (av.error.FFmpegError, OSError) as error:
            self.state = "stopped"
            raise StreamError(
                f"cannot open stream {redact(self.url)}: {describe(error)} "
                f"(waited up to {self.open_timeout:g} s)"
            ) from None
        except StreamError:
            self.state = "stopped"
            raise
        if self.decide_live:
            self.live = self._container.duration is None
            self.decide_live = False
            log.info("stream %s is %s", redact(self.url), "live" if self.live else "finite")
            if not self.live and self.low_latency:
                # Opened with the short probe meant for live media, which leaves some inputs'
                # frame rate unknown (HLS); a recording can afford the full one.
                self._close_container()
                self.open()

    def expected_frames(self) -> int | None:
        container = self._container
        if self.live or container is None:
            return None
        stream = container.streams.video[0]
        if stream.frames:
            return stream.frames
        rate = stream.average_rate or stream.guessed_rate
        if container.duration is None or not rate:
            return None
        return round(container.duration / 1e6 * float(rate))

    def status(self) -> dict[str, object]:
        return {
            "connection": self.state,
            "reconnects": self.reconnects,
            "reconnect_attempts": self.reconnect_attempts,
            "decode_errors": self.decode_errors,
        }

    def request_stop(self) -> None:
        self._stop.set()

    def frames(self) -> Iterator[Frame]:
        finite = not self.live
        budget = self.max_reconnects
        if finite and budget is None:
            budget = FINITE_RECONNECTS
        timeline = _Timeline()  # live: PTS rebased across connections
        index = 0
        last: int | None = None  # finite: PTS of the last frame delivered (stream time base)
        failures = 0  # reconnection attempts in a row that brought no new frame
        reconnected = False
        while not self._stop.is_set():
            if self._container is None:
                self._container = self._reconnect(failures, budget)
                if self._container is None:
                    failures += 1
                    continue
                reconnected = True
                if finite:
                    self._seek_before(last)
            stream = self._container.streams.video[0]
            if finite:  # its own timestamps
                time_base = Fraction(stream.time_base) if stream.time_base else TIME_BASE
                step = max(round(1 / (Fraction(stream.average_rate or 25) * time_base)), 1)
            else:
                time_base = TIME_BASE
                timeline.new_connection(stream.guessed_rate or stream.average_rate)
            fresh = False  # this connection brought a frame not delivered before
            where = f"stream {redact(self.url)}"
            try:
                for decoded in decode_frames(
                    self._container, stream, where, on_decode_error=self._count_decode_error
                ):
                    check_pixels(decoded.width, decoded.height, self.max_pixels, where,
                                 StreamError)  # fmt: skip
                    if finite:
                        pts = decoded.pts
                        if pts is None:  # no timestamp: one frame interval after the last
                            pts = 0 if last is None else last + step
                        if last is not None and pts <= last:
                            continue  # delivered before the connection was lost
                    else:
                        seconds = None
                        if decoded.pts is not None and stream.time_base is not None:
                            seconds = float(decoded.pts * stream.time_base)
                        pts = timeline.stamp(seconds)
                    if not fresh:
                        fresh, failures = True, 0
                        self._connected(reconnected)
                    yield Frame(to_bgr(decoded), pts, time_base, index, self.source_id)
                    index, last = index + 1, pts
                    if self._stop.is_set():
                        return
                if finite and index == 0:
                    raise StreamError(f"no decodable video frame in {redact(self.url)}")
                if finite and (self._at_end(stream, last, step) or not fresh):
                    return  # the whole input, or a resumed one with nothing after the cut
                log.warning("stream %s ended%s", redact(self.url), " early" if finite else "")
            except (av.error.FFmpegError, OSError) as error:
                if self._stop.is_set():
                    return
                log.warning("stream %s lost: %s", redact(self.url), describe(error))
            finally:
                self._close_container()
            if not self.reconnect:
                return  # what arrived went out (of a recording: as from a truncated file)
            if reconnected and not fresh:
                failures += 1  # it opened, but is not back: a failed attempt
            self.state = "reconnecting"

    def _count_decode_error(self) -> int:
        self.decode_errors += 1
        return self.decode_errors

    def _seek_before(self, last: int | None) -> None:
        """After a reconnection: to the keyframe at or before the last frame delivered (a
        demuxer that cannot seek reads from the start; frames up to ``last`` are skipped)."""
        if last is None or self._container is None:
            return
        stream = self._container.streams.video[0]
        try:
            self._container.seek(last, stream=stream, backward=True)
        except (av.error.FFmpegError, OSError) as error:
            log.info("stream %s: cannot seek (%s), reading from the start",
                     redact(self.url), describe(error))  # fmt: skip

    def _at_end(self, stream: av.video.stream.VideoStream, last: int | None, step: int) -> bool:
        """The last frame delivered is the input's last one (by its duration)."""
        container = self._container
        if last is None or container is None or container.duration is None:
            return True  # nothing tells where the end is: take the demuxer's word
        start = container.start_time or 0
        end = Fraction(start + container.duration, 1_000_000)  # seconds, AV_TIME_BASE
        return (last + 2 * step) * Fraction(stream.time_base) >= end

    def _connected(self, after_reconnect: bool) -> None:
        """The connection delivered its first frame."""
        self.state = "streaming"
        if after_reconnect:
            self.reconnects += 1
            log.warning("stream %s is back", redact(self.url))

    def _reconnect(
        self, failures: int, budget: int | None = None
    ) -> av.container.InputContainer | None:
        """One attempt after a backoff wait; None if it failed (or we are stopping)."""
        budget = self.max_reconnects if budget is None else budget
        if budget is not None and failures >= budget:
            raise StreamError(
                f"stream {redact(self.url)} lost and not back after {failures} attempts"
            )
        self.state = "reconnecting"
        wait = min(self.backoff_initial * 2**failures, self.backoff_max)
        if self._stop.wait(wait):
            return None
        self.reconnect_attempts += 1
        try:
            container = self._connect()
        except (av.error.FFmpegError, OSError, StreamError) as error:
            log.info("reconnecting to %s failed: %s", redact(self.url), describe(error))
            return None
        self._check_declared_size(container)  # a size error is no outage: not retried
        return container

    def _close_container(self) -> None:
        if self._container is not None:
            with contextlib.suppress(av.error.FFmpegError, OSError):
                self._container.close()  # if already broken, nothing is left to release
            self._container = None

    def close(self) -> None:
        self.state = "stopped"
        self._close_container()

"""Publish the annotated stream to an external RTSP server (ANNOUNCE / RECORD),
e.g. MediaMTX, through FFmpeg's RTSP muxer."""

from __future__ import annotations

import logging
from fractions import Fraction
from typing import Literal

import av

from pipeline.config import register
from pipeline.errors import SinkError
from pipeline.frame import Frame
from pipeline.stage import Sink
from stages.sinks.fit import even_size, fit
from stages.sinks.rtsp.h264 import CLOCK_RATE
from stages.sinks.rtsp_server import RtpClock
from stages.sources.av_input import describe
from stages.sources.urls import redact

log = logging.getLogger("framegraph")


@register("rtsp_push")
class RtspPushSink(Sink):
    """Pushes H.264 (libx264, zerolatency, no B-frames, 1 s GOP) to ``url``.

    Args:
        url: ``rtsp://[user:pass@]server:port/path`` of the receiving server.
        fps: nominal frame rate.
        preset: x264 preset.
        transport: ``tcp`` (default) or ``udp`` towards the server.
        timeout: seconds to wait for the server when connecting and writing.
    """

    def __init__(
        self,
        url: str,
        fps: float = 30.0,
        preset: str = "ultrafast",
        transport: Literal["tcp", "udp"] = "tcp",
        timeout: float = 10.0,
    ) -> None:
        self.url = url
        self.fps = fps
        self.preset = preset
        self.transport = transport
        self.timeout = timeout
        self.frames_sent = 0
        self._container: av.container.OutputContainer | None = None
        self._stream = None
        self._clock = RtpClock(fps)

    def _connect(self, width: int, height: int) -> None:
        try:
            container = av.open(
                self.url, mode="w", format="rtsp",
                options={"rtsp_transport": self.transport}, timeout=self.timeout,
            )  # fmt: skip
        except (av.error.FFmpegError, OSError) as error:
            raise SinkError(f"cannot publish to {redact(self.url)}: {describe(error)}") from None
        stream = container.add_stream("libx264", rate=Fraction(self.fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = Fraction(1, CLOCK_RATE)
        keyint = max(round(self.fps), 1)
        stream.options = {
            "preset": self.preset,
            "tune": "zerolatency",
            "x264-params": f"keyint={keyint}:min-keyint={keyint}:scenecut=0:bframes=0",
        }
        self._container, self._stream = container, stream

    def write(self, frame: Frame) -> None:
        if self._container is None:
            self._connect(*even_size(frame.image))
        stream = self._stream
        image = fit(frame.image, (stream.width, stream.height))
        video = av.VideoFrame.from_ndarray(image, format="bgr24").reformat(format="yuv420p")
        video.pts = self._clock.from_pts(frame.time)
        video.time_base = Fraction(1, CLOCK_RATE)
        try:
            self._container.mux(stream.encode(video))
        except (av.error.FFmpegError, OSError) as error:
            raise SinkError(f"publishing to {redact(self.url)} failed: {describe(error)}") from None
        self.frames_sent += 1

    def close(self) -> None:
        if self._container is None:
            return
        try:
            self._container.mux(self._stream.encode(None))
        except (av.error.FFmpegError, OSError) as error:
            log.warning("finishing the push to %s: %s", redact(self.url), describe(error))
        finally:
            self._container.close()
            self._container = None

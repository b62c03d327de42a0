"""Annotated video to a file through PyAV: H.264 yuv420p with faststart by default,
so the result plays in browsers; written with the source PTS (variable frame rate
survives). ``close()`` always flushes the encoder and writes the index, so an
interrupted run still leaves a playable file holding every frame written."""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path

import av

from pipeline.config import register
from pipeline.errors import SinkError
from pipeline.frame import Frame
from pipeline.stage import Sink
from stages.sinks.fit import even_size, fit

log = logging.getLogger("framegraph")
CODEC_PREFERENCE = ("libx264", "h264", "libopenh264", "mpeg4", "mjpeg")
"""Tried in order by ``codec: auto``; the first encoder FFmpeg has wins."""


def pick_encoder(codec: str = "auto") -> str:
    """Name of the encoder to use: ``codec`` itself, or the best one available.

    Raises:
        SinkError: the requested encoder (or every fallback) is missing.
    """
    candidates = CODEC_PREFERENCE if codec == "auto" else (codec,)
    for name in candidates:
        try:
            av.codec.Codec(name, "w")
            return name
        except (av.error.FFmpegError, ValueError):
            continue
    raise SinkError(f"no usable video encoder among {', '.join(candidates)}")


@register("video_file")
class VideoFileSink(Sink):
    """Writes frames to a video file.

    The file opens on the first frame (its size sets the stream's); later frames
    of another size are resized to it. Odd sizes are cropped to even for yuv420p.

    Args:
        path: output file; the container follows the suffix (.mp4, .mkv, .mov, ...).
        codec: encoder name or ``auto`` (libx264, else the best available).
        crf: quality for x264 (lower = better, bigger).
        preset: x264 speed preset.
        fps: nominal frame rate for the encoder's rate control (PTS still decide timing).
        faststart: put the mp4 index at the front (plays while downloading).
        threads: encoder threads (0 = FFmpeg's choice, usually one per core).
    """

    def __init__(
        self,
        path: str,
        codec: str = "auto",
        crf: int = 23,
        preset: str = "veryfast",
        fps: float = 30.0,
        faststart: bool = True,
        threads: int = 0,
    ) -> None:
        self.path = Path(path)
        self.codec = codec
        self.crf, self.preset = crf, preset
        self.fps = fps
        self.faststart = faststart
        self.threads = threads
        self.frames_written = 0
        self._container: av.container.OutputContainer | None = None
        self._stream: av.video.stream.VideoStream | None = None
        self._size: tuple[int, int] | None = None
        self._time_base: Fraction | None = None
        self._last_pts: int | None = None

    def open(self) -> None:
        self.encoder = pick_encoder(self.codec)
        parent = self.path.parent
        if not parent.exists():
            try:
                parent.mkdir(parents=True)
            except OSError as error:
                raise SinkError(f"cannot create output folder {parent}: {error.strerror}") from None
        if self.path.is_dir():
            raise SinkError(f"output path is a directory: {self.path}")

    def _start(self, frame: Frame) -> None:
        self._size = even_size(frame.image)
        options = (
            {"movflags": "+faststart"}
            if self.faststart and self.path.suffix in (".mp4", ".mov", ".m4v")
            else {}
        )
        try:
            self._container = av.open(str(self.path), mode="w", options=options)
        except (av.error.FFmpegError, OSError) as error:
            raise SinkError(f"cannot write {self.path}: {error}") from None
        stream = self._container.add_stream(
            self.encoder, rate=Fraction(self.fps).limit_denominator(1001)
        )
        stream.width, stream.height = self._size
        stream.pix_fmt = "yuv420p"
        stream.codec_context.thread_count = self.threads
        self._time_base = frame.time_base
        stream.codec_context.time_base = frame.time_base
        stream.time_base = frame.time_base
        if self.encoder == "libx264":
            stream.options = {"crf": str(self.crf), "preset": self.preset}
        self._stream = stream

    def write(self, frame: Frame) -> None:
        if self._container is None:
            self._start(frame)
        image = fit(frame.image, self._size)  # type: ignore[arg-type]
        pts = round(frame.pts * frame.time_base / self._time_base)  # type: ignore[operator]
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1  # muxers need strictly increasing PTS
        self._last_pts = pts
        video = av.VideoFrame.from_ndarray(image, format="bgr24").reformat(format="yuv420p")
        video.pts = pts
        video.time_base = self._time_base
        self._mux(self._stream.encode(video))  # type: ignore[union-attr]
        self.frames_written += 1

    def _mux(self, packets: list[av.Packet]) -> None:
        try:
            self._container.mux(packets)  # type: ignore[union-attr]
        except (av.error.FFmpegError, OSError) as error:
            raise SinkError(f"writing {self.path} failed: {error}") from None

    def close(self) -> None:
        if self._container is None:
            return
        try:
            self._mux(self._stream.encode(None))  # type: ignore[union-attr]
        finally:
            self._container.close()
            self._container = None
            log.info("wrote %d frames to %s", self.frames_written, self.path)

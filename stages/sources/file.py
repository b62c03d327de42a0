"""Video files through PyAV: any container and codec FFmpeg reads."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av

from pipeline.config import register
from pipeline.errors import SourceError
from pipeline.frame import Frame
from pipeline.stage import Source
from stages.sources.av_input import decode_frames, describe, to_bgr
from stages.sources.pacing import Pacer

log = logging.getLogger("framegraph")


@register("file")
class FileSource(Source):
    """Decodes a video file, keeping each frame's PTS (variable frame rate survives).

    A truncated or partly corrupt file yields every frame that decodes, then
    ends with a warning. With ``realtime`` the file plays at its own pace and
    behaves as a live source (the graph drops frames it cannot keep up with).

    Args:
        path: the video file.
        realtime: pace frames by their PTS, like a camera.
        loop: start again at the end (PTS keep increasing).
        source_id: name in results and metrics (default: file name).
        decode_threads: FFmpeg decoder threads (0 = auto).
    """

    def __init__(
        self,
        path: str,
        realtime: bool = False,
        loop: bool = False,
        source_id: str | None = None,
        decode_threads: int = 0,
    ) -> None:
        self.path = Path(path)
        self.live = realtime
        self.loop = loop
        self.source_id = source_id or self.path.name
        self.decode_threads = decode_threads
        self._container: av.container.InputContainer | None = None
        self._stop = threading.Event()
        self._frame_count: int | None = None

    def open(self) -> None:
        path = self.path
        if not path.exists():
            raise SourceError(f"input file not found: {path}")
        if path.is_dir():
            raise SourceError(f"input is a directory, not a video file: {path}")
        if path.stat().st_size == 0:
            raise SourceError(f"input file is empty (0 bytes): {path}")
        try:
            container = av.open(str(path), mode="r")
        except (av.error.FFmpegError, OSError) as error:
            raise SourceError(f"not a readable video file: {path} ({describe(error)})") from None
        if not container.streams.video:
            container.close()
            raise SourceError(f"no video stream in {path}")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = self.decode_threads
        self._container = container
        self._frame_count = stream.frames or None

    def expected_frames(self) -> int | None:
        return None if self.loop else self._frame_count

    def request_stop(self) -> None:
        self._stop.set()

    def frames(self) -> Iterator[Frame]:
        container = self._container
        assert container is not None, "open() first"
        stream = container.streams.video[0]
        time_base = Fraction(stream.time_base) if stream.time_base else Fraction(1, 90_000)
        default_step = self._frame_step(stream, time_base)
        index = 0
        offset = 0  # added to PTS after each loop so time keeps increasing
        last_pts: int | None = None
        pacer = Pacer(self._stop)
        raw_first: int | None = None  # first PTS in the file, for loop offsets
        while not self._stop.is_set():
            for decoded in self._decode(container, stream):
                raw = decoded.pts
                if raw is None:  # some raw streams carry no PTS: count frames
                    raw = (last_pts - offset + default_step) if last_pts is not None else 0
                raw_first = raw if raw_first is None else raw_first
                pts = raw + offset
                if last_pts is not None and pts <= last_pts:
                    pts = last_pts + 1  # keep PTS strictly increasing for muxers
                if self.live and not pacer.wait(float(pts * time_base)):
                    return
                last_pts = pts
                yield Frame(to_bgr(decoded), pts, time_base, index, self.source_id)
                index += 1
                if self._stop.is_set():
                    return
            if index == 0:  # a header and no picture: nothing to process is an input error
                raise SourceError(f"no decodable video frame in {self.path}")
            if not self.loop:
                return
            container.seek(0)
            offset = last_pts + default_step - raw_first

    def _decode(
        self, container: av.container.InputContainer, stream: av.video.stream.VideoStream
    ) -> Iterator[av.VideoFrame]:
        """Decode frames, skipping corrupt packets and ending at a truncation."""
        try:
            yield from decode_frames(container, stream, str(self.path))
        except (av.error.FFmpegError, OSError) as error:
            log.warning("%s: stopped reading early: %s", self.path, describe(error))

    @staticmethod
    def _frame_step(stream: av.video.stream.VideoStream, time_base: Fraction) -> int:
        rate = stream.average_rate or stream.guessed_rate or 30
        return max(round(1 / (Fraction(rate) * time_base)), 1)

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None

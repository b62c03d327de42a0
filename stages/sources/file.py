"""Video files through PyAV: any container and codec FFmpeg reads."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av

from pipeline.config import MAX_PIXELS, register
from pipeline.errors import SourceError
from pipeline.frame import Frame
from pipeline.stage import Source
from stages.sources.av_input import check_pixels, decode_frames, describe, to_bgr
from stages.sources.pacing import Pacer

log = logging.getLogger("framegraph")


@register("file")
class FileSource(Source):
    """Decodes a video file, keeping each frame's PTS (variable frame rate survives).

    A truncated or partly corrupt file yields every frame that decodes, then
    ends with a warning; packets that fail to decode are skipped and counted
    (``status()["decode_errors"]``). With ``realtime`` the file plays at its own pace and
    behaves as a live source (the graph drops frames it cannot keep up with).

    Frames larger than ``max_pixels`` are an input error, found from the size the file
    declares when it opens, and from each decoded frame before it is converted (a stream
    may change size part-way): a small crafted file can declare pictures of hundreds of
    megabytes each.

    Args:
        path: the video file.
        realtime: pace frames by their PTS, like a camera.
        loop: start again at the end (PTS keep increasing); a pass that yields no frame
            ends the source with an error instead of starting again.
        source_id: name in results and metrics (default: file name).
        decode_threads: FFmpeg decoder threads (0 = auto).
        max_pixels: the largest frame accepted, width x height (None: no limit).
    """

    def __init__(
        self,
        path: str,
        realtime: bool = False,
        loop: bool = False,
        source_id: str | None = None,
        decode_threads: int = 0,
        max_pixels: int | None = MAX_PIXELS,
    ) -> None:
        self.path = Path(path)
        self.live = realtime
        self.loop = loop
        self.source_id = source_id or self.path.name
        self.decode_threads = decode_threads
        self.max_pixels = max_pixels
        self.decode_errors = 0
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
        try:  # the size the file declares, known before any picture is decoded
            check_pixels(stream.codec_context.width, stream.codec_context.height,
                         self.max_pixels, str(path))  # fmt: skip
        except SourceError:
            container.close()
            raise
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = self.decode_threads
        self._container = container
        self._frame_count = stream.frames or None

    def expected_frames(self) -> int | None:
        return None if self.loop else self._frame_count

    def request_stop(self) -> None:
        self._stop.set()

    def status(self) -> dict[str, object]:
        return {"decode_errors": self.decode_errors} if self.decode_errors else {}

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
            first_of_pass = index
            for decoded in self._decode(container, stream):
                check_pixels(decoded.width, decoded.height, self.max_pixels, str(self.path))
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
            if index == first_of_pass:  # a header and no picture: an input error
                raise SourceError(self._no_frame(stream, first_of_pass > 0))
            if not self.loop:
                return
            try:
                container.seek(0)
            except (av.error.FFmpegError, OSError) as error:
                raise SourceError(f"loop: cannot go back to the start of {self.path} "
                                  f"({describe(error)})") from None  # fmt: skip
            offset = last_pts + default_step - raw_first

    def _no_frame(self, stream: av.video.stream.VideoStream, looping: bool) -> str:
        """The error for a pass over the file that yielded no frame."""
        what = f"no decodable video frame in {self.path}"
        if looping:  # the file changed under us, or seeking to its start does not work
            what = f"loop: a pass over {self.path} yielded no frame (it changed, or cannot seek)"
        if self.decode_errors:
            count = self.decode_errors
            what += f"; {count} packet{'s' if count > 1 else ''} failed to decode"
        if not stream.codec_context.width:
            what += "; it declares no frame size that FFmpeg accepts"
        return what

    def _count_decode_error(self) -> int:
        self.decode_errors += 1
        return self.decode_errors

    def _decode(
        self, container: av.container.InputContainer, stream: av.video.stream.VideoStream
    ) -> Iterator[av.VideoFrame]:
        """Decode frames, skipping corrupt packets and ending at a truncation."""
        try:
            yield from decode_frames(
                container, stream, str(self.path), on_decode_error=self._count_decode_error
            )
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

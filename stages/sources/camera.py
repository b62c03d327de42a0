"""Local cameras (V4L2 on Linux) through PyAV."""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av

from pipeline.config import MAX_PIXELS, register
from pipeline.errors import SourceError
from pipeline.frame import Frame
from pipeline.stage import Source
from stages.sources.av_input import check_pixels, decode_frames, describe, to_bgr

log = logging.getLogger("framegraph")
TIME_BASE = Fraction(1, 1_000_000)
CAPTURE_FORMAT = {"linux": "v4l2", "darwin": "avfoundation", "win32": "dshow"}
CLOSE_WAIT_S = 2.0
"""How long closing waits for the reading thread to leave a read before leaving it be."""
_NOTHING = object()


class _Reader:
    """Decodes a capture device on a thread of its own and hands over one frame at a time.

    A V4L2 read blocks in the kernel until the driver has a frame, and no FFmpeg timeout
    reaches into it: a camera unplugged mid-read, or a driver that stops delivering, would
    hold the source's thread forever. Here only this thread can get stuck; the source waits
    for the next frame with a timeout. It decodes at most one frame ahead, as the blocking
    read did. Packets that fail to decode (a corrupt MJPEG frame) are skipped and counted.
    """

    def __init__(self, container: av.container.InputContainer, device: str) -> None:
        self._container = container
        self._device = device
        self._cond = threading.Condition()
        self._item: object = _NOTHING  # (capture time, frame), an error, or None at the end
        self._stopped = False
        self.decode_errors = 0
        self.thread = threading.Thread(target=self._run, name=f"camera-{device}", daemon=True)
        self.thread.start()

    def _count_decode_error(self) -> int:
        self.decode_errors += 1
        return self.decode_errors

    def _run(self) -> None:
        stream = self._container.streams.video[0]
        where = f"camera {self._device}"
        try:
            for frame in decode_frames(self._container, stream, where, self._count_decode_error):
                if not self._hand_over((time.monotonic(), frame)):
                    return
        except (av.error.FFmpegError, OSError) as error:
            self._hand_over(error)
            return
        self._hand_over(None)

    def _hand_over(self, item: object) -> bool:
        """Wait until the previous item was taken, then offer ``item``; False once stopped."""
        with self._cond:
            self._cond.wait_for(lambda: self._item is _NOTHING or self._stopped)
            if self._stopped:
                return False
            self._item = item
            self._cond.notify_all()
            return True

    def take(self, timeout: float) -> object:
        """The next item: ``(capture time, frame)``, an exception, None at the end; or
        ``_NOTHING`` after ``timeout`` seconds without one (or once stopped)."""
        with self._cond:
            self._cond.wait_for(lambda: self._item is not _NOTHING or self._stopped, timeout)
            item, self._item = self._item, _NOTHING
            self._cond.notify_all()
            return item

    def stop(self) -> None:
        """Wake both sides; the thread ends once its current read returns."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    @property
    def stopped(self) -> bool:
        return self._stopped


@register("camera")
class CameraSource(Source):
    """A webcam or capture card. PTS are monotonic capture times (µs).

    Args:
        device: index (``0`` -> ``/dev/video0``) or a device path.
        width: requested width (None = the camera's default).
        height: requested height.
        fps: requested frame rate.
        input_format: camera pixel format, e.g. ``mjpeg`` for high resolutions over USB 2.
        source_id: name in results and metrics.
        read_timeout: seconds without a frame before the camera counts as gone (an input
            error, not an endless wait).
        max_pixels: the largest frame accepted, width x height (None: no limit).
    """

    live = True

    def __init__(
        self,
        device: str = "0",
        width: int | None = None,
        height: int | None = None,
        fps: float | None = None,
        input_format: str | None = None,
        source_id: str | None = None,
        read_timeout: float = 5.0,
        max_pixels: int | None = MAX_PIXELS,
    ) -> None:
        self.device = f"/dev/video{device}" if str(device).isdigit() else str(device)
        self.width, self.height, self.fps = width, height, fps
        self.input_format = input_format
        self.source_id = source_id or Path(self.device).name
        self.read_timeout = read_timeout
        self.max_pixels = max_pixels
        self._container: av.container.InputContainer | None = None
        self._reader: _Reader | None = None
        self._stop = threading.Event()

    def open(self) -> None:
        where = f"camera {self.device}"
        if self.width and self.height:  # asking for too much is a config mistake: say so now
            check_pixels(self.width, self.height, self.max_pixels, where)
        if sys.platform == "linux" and not Path(self.device).exists():
            raise SourceError(f"camera not found: {self.device}")
        options: dict[str, str] = {}
        if self.width and self.height:
            options["video_size"] = f"{self.width}x{self.height}"
        if self.fps:
            options["framerate"] = f"{self.fps:g}"
        if self.input_format:
            options["input_format"] = self.input_format
        try:
            container = av.open(
                self.device, format=CAPTURE_FORMAT.get(sys.platform), options=options
            )
        except (av.error.FFmpegError, OSError) as error:
            raise SourceError(f"cannot open camera {self.device}: {describe(error)}") from None
        if not container.streams.video:
            container.close()
            raise SourceError(f"camera {self.device} gives no video")
        context = container.streams.video[0].codec_context
        try:  # the size the driver agreed to, before any frame is decoded
            check_pixels(context.width, context.height, self.max_pixels, where)
        except SourceError:
            container.close()
            raise
        self._container = container

    def status(self) -> dict[str, object]:
        errors = self._reader.decode_errors if self._reader is not None else 0
        return {"decode_errors": errors} if errors else {}

    def request_stop(self) -> None:
        self._stop.set()
        if self._reader is not None:
            self._reader.stop()  # wakes frames() if it is waiting for one

    def frames(self) -> Iterator[Frame]:
        assert self._container is not None, "open() first"
        reader = self._reader = _Reader(self._container, self.device)
        if self._stop.is_set():
            reader.stop()
        start = time.monotonic()
        last_pts = -1
        index = 0
        try:
            while not self._stop.is_set():
                item = reader.take(self.read_timeout)
                if item is _NOTHING:
                    if reader.stopped:
                        return
                    raise SourceError(
                        f"camera {self.device}: no frame for {self.read_timeout:g} s "
                        "(read_timeout); unplugged or stalled"
                    )
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise SourceError(f"camera {self.device} stopped: {describe(item)}")
                captured, decoded = item  # type: ignore[misc]
                check_pixels(decoded.width, decoded.height, self.max_pixels,
                             f"camera {self.device}")  # fmt: skip
                pts = max(round((captured - start) / TIME_BASE), last_pts + 1)
                last_pts = pts
                yield Frame(to_bgr(decoded), pts, TIME_BASE, index, self.source_id, captured)
                index += 1
        finally:
            reader.stop()

    def close(self) -> None:
        reader = self._reader  # kept: status() still counts its decode errors
        if reader is not None:
            reader.stop()
            reader.thread.join(CLOSE_WAIT_S)
            if reader.thread.is_alive():  # closing under a read would crash the demuxer
                log.warning("camera %s is stuck in a read; left open", self.device)
                self._container = None
                return
        if self._container is not None:
            with contextlib.suppress(av.error.FFmpegError, OSError):
                self._container.close()
            self._container = None

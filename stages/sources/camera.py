"""Local cameras (V4L2 on Linux) through PyAV."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av

from pipeline.config import register
from pipeline.errors import SourceError
from pipeline.frame import Frame
from pipeline.stage import Source
from stages.sources.av_input import describe, to_bgr

TIME_BASE = Fraction(1, 1_000_000)
CAPTURE_FORMAT = {"linux": "v4l2", "darwin": "avfoundation", "win32": "dshow"}


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
    ) -> None:
        self.device = f"/dev/video{device}" if str(device).isdigit() else str(device)
        self.width, self.height, self.fps = width, height, fps
        self.input_format = input_format
        self.source_id = source_id or Path(self.device).name
        self._container: av.container.InputContainer | None = None
        self._stop = threading.Event()

    def open(self) -> None:
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
            self._container = av.open(
                self.device, format=CAPTURE_FORMAT.get(sys.platform), options=options
            )
        except (av.error.FFmpegError, OSError) as error:
            raise SourceError(f"cannot open camera {self.device}: {describe(error)}") from None

    def request_stop(self) -> None:
        self._stop.set()

    def frames(self) -> Iterator[Frame]:
        assert self._container is not None, "open() first"
        start = time.monotonic()
        last_pts = -1
        try:
            for index, decoded in enumerate(self._container.decode(video=0)):
                pts = max(round((time.monotonic() - start) / TIME_BASE), last_pts + 1)
                last_pts = pts
                yield Frame(to_bgr(decoded), pts, TIME_BASE, index, self.source_id)
                if self._stop.is_set():
                    return
        except (av.error.FFmpegError, OSError) as error:
            raise SourceError(f"camera {self.device} stopped: {describe(error)}") from None

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None

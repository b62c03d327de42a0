"""A window on screen (OpenCV highgui), where a GUI exists."""

from __future__ import annotations

import os
import sys

import cv2

from pipeline.config import register
from pipeline.errors import SinkError
from pipeline.frame import Frame
from pipeline.stage import Sink


@register("display")
class DisplaySink(Sink):
    """Shows frames in a window; closing it or pressing q/Esc does not stop the
    graph by itself (use Ctrl-C), it only stops showing.

    Args:
        window: window title.
    """

    def __init__(self, window: str = "FrameGraph") -> None:
        self.window = window
        self._shown = True

    def open(self) -> None:
        if sys.platform.startswith("linux") and not (
            os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
        ):
            raise SinkError("display sink needs a screen: no DISPLAY is set")
        try:
            cv2.namedWindow(self.window, cv2.WINDOW_NORMAL)
        except cv2.error:
            raise SinkError(
                "display sink needs OpenCV with GUI support: this OpenCV has none "
                "(pip install opencv-python instead of opencv-python-headless)"
            ) from None

    def write(self, frame: Frame) -> None:
        if not self._shown:
            return
        cv2.imshow(self.window, frame.image)
        if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
            self._shown = False
            cv2.destroyWindow(self.window)

    def close(self) -> None:
        if self._shown:
            cv2.destroyAllWindows()

"""PyAV helpers shared by the file, camera and stream sources."""

from __future__ import annotations

import av
import numpy as np


def to_bgr(frame: av.VideoFrame) -> np.ndarray:
    """Decoded frame -> uint8 [H, W, 3] BGR, with its rotation metadata applied.

    FFmpeg reports the display matrix rotation counter-clockwise in degrees;
    ``np.rot90`` with positive ``k`` also turns counter-clockwise.
    """
    image = frame.to_ndarray(format="bgr24")
    quarter_turns = round((frame.rotation or 0) / 90) % 4
    if quarter_turns:
        image = np.ascontiguousarray(np.rot90(image, quarter_turns))
    return image


def describe(error: BaseException) -> str:
    """A short reason from a PyAV / OS error, without file paths repeated."""
    if isinstance(error, av.error.FFmpegError):
        return error.strerror or type(error).__name__
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__

"""PyAV helpers shared by the file, camera and stream sources."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import av
import numpy as np

log = logging.getLogger("framegraph")


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


def decode_frames(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, where: str
) -> Iterator[av.VideoFrame]:
    """The stream's frames, skipping packets that fail to decode (logged, naming ``where``).

    Raises:
        av.error.FFmpegError, OSError: reading the input failed (a truncation, a lost link).
    """
    for packet in container.demux(stream):
        try:
            yield from packet.decode()
        except av.error.InvalidDataError as error:
            log.warning("%s: skipped a corrupt packet (%s)", where, describe(error))

"""PyAV helpers shared by the file, camera and stream sources."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import av
import numpy as np

from pipeline.errors import SourceError

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


def check_pixels(
    width: int,
    height: int,
    max_pixels: int | None,
    where: str,
    error: type[SourceError] = SourceError,
) -> None:
    """Refuse a picture larger than ``max_pixels`` before anything is made of it.

    A size of 0 (not known yet) passes; the frames are checked as they come.

    Raises:
        SourceError (or ``error``): one line naming ``where``, the size and the limit.
    """
    if max_pixels is None or width * height <= max_pixels:
        return
    side = int(max_pixels**0.5)
    raise error(
        f"{where}: frames are {width}x{height} ({width * height} pixels), over max_pixels="
        f"{max_pixels} (about {side}x{side}); raise max_pixels to accept them"
    )


def describe(error: BaseException) -> str:
    """A short reason from a PyAV / OS error, without file paths repeated."""
    if isinstance(error, av.error.FFmpegError):
        return error.strerror or type(error).__name__
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__


def decode_frames(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    where: str,
    on_decode_error: Callable[[], int] | None = None,
) -> Iterator[av.VideoFrame]:
    """The stream's frames, skipping packets that fail to decode.

    Reading and decoding fail for different reasons: a packet the decoder refuses is bad
    data (a bit error on the wire, a corrupt file), and the next packet may decode again,
    so it is skipped, whatever the decoder's error; reading a packet failing means the input
    itself is gone (a truncation, a lost link), for the caller to handle. Each skipped
    packet calls ``on_decode_error``, which returns how many were skipped so far; the 1st,
    10th, 100th, ... is logged, naming ``where``, so a stream full of errors does not flood
    the log. Until the first frame decodes they are logged at debug level only: a live
    stream joined between keyframes starts with a few, and an input that never decodes is
    the caller's one error (with the count), not a warning per packet before it.

    Raises:
        av.error.FFmpegError, OSError: reading the input failed.
    """
    skipped = 0
    level = logging.DEBUG  # until a frame has decoded
    for packet in container.demux(stream):
        try:
            frames = packet.decode()
        except av.error.FFmpegError as error:
            skipped = on_decode_error() if on_decode_error is not None else skipped + 1
            if _is_power_of_ten(skipped):
                log.log(level, "%s: skipped a packet that does not decode (%s); %d so far",
                        where, describe(error), skipped)  # fmt: skip
            continue
        if frames:
            level = logging.WARNING
        yield from frames


def _is_power_of_ten(count: int) -> bool:
    while count >= 10 and count % 10 == 0:
        count //= 10
    return count == 1

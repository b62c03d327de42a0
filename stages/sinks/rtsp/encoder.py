"""A live H.264 encoder: libx264 tuned for streaming, one access unit per frame."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np

from stages.sinks.rtsp.h264 import CLOCK_RATE, NAL_PPS, NAL_SPS, nal_type, split_annexb


@dataclass
class AccessUnit:
    """One encoded frame: its NAL units, 90 kHz timestamp, and whether it starts a GOP."""

    nals: list[bytes]
    timestamp: int
    keyframe: bool


class LiveEncoder:
    """libx264 with zerolatency, no B-frames, a keyframe every ``keyint`` frames
    (or, by default, every second of timestamps, whatever the real frame rate)
    and SPS/PPS repeated before every keyframe, so a client can join at any
    keyframe and frames leave the encoder as soon as they enter it.

    Args:
        width: frame width (even).
        height: frame height (even).
        fps: nominal rate, for rate control and the keyframe interval.
        preset: x264 speed preset.
        bitrate: target bits per second (None: constant quality, crf 23).
        keyint: frames between keyframes (default: one per second of ``timestamp``,
            forced by time, so a source slower than ``fps`` still gets one per second).
    """

    def __init__(
        self,
        width: int,
        height: int,
        fps: float,
        preset: str = "ultrafast",
        bitrate: int | None = None,
        keyint: int | None = None,
    ) -> None:
        self.width, self.height = width, height
        # by time when no frame count is given: ``fps`` is only nominal (a 10 fps
        # source behind a 30 fps sink would otherwise get a keyframe every 3 s)
        self.key_ticks = None if keyint else CLOCK_RATE
        self._last_key: int | None = None
        keyint = keyint or 10 * max(round(fps), 1)  # by time; this is only a backstop
        context = av.codec.CodecContext.create("libx264", "w")
        context.width, context.height = width, height
        context.pix_fmt = "yuv420p"
        context.time_base = Fraction(1, CLOCK_RATE)
        context.framerate = Fraction(fps).limit_denominator(1001)
        params = f"repeat-headers=1:keyint={keyint}:min-keyint={keyint}:scenecut=0:bframes=0"
        options = {"preset": preset, "tune": "zerolatency", "x264-params": params}
        if bitrate:
            context.bit_rate = bitrate
        else:
            options["crf"] = "23"
        context.options = options
        context.open()
        self._context = context
        self._force_key = False
        self.sps: bytes | None = None
        self.pps: bytes | None = None

    def request_keyframe(self) -> None:
        """Makes the next frame a keyframe (a new viewer can start from it)."""
        self._force_key = True

    def encode(self, image: np.ndarray, timestamp: int) -> list[AccessUnit]:
        """Encode a BGR uint8 [H, W, 3] image shown at ``timestamp`` (90 kHz)."""
        frame = av.VideoFrame.from_ndarray(image, format="bgr24").reformat(format="yuv420p")
        frame.pts = timestamp
        if self._force_key or (
            self.key_ticks is not None
            and self._last_key is not None
            and timestamp - self._last_key >= self.key_ticks
        ):
            frame.pict_type = av.video.frame.PictureType.I
            self._force_key = False
        units = self._units(self._context.encode(frame))
        for unit in units:
            if unit.keyframe:
                self._last_key = unit.timestamp
        return units

    def _units(self, packets: list[av.Packet]) -> list[AccessUnit]:
        units = []
        for packet in packets:
            nals = split_annexb(bytes(packet))
            for nal in nals:
                if nal_type(nal) == NAL_SPS:
                    self.sps = nal
                elif nal_type(nal) == NAL_PPS:
                    self.pps = nal
            units.append(AccessUnit(nals, int(packet.pts), bool(packet.is_keyframe)))
        return units

"""Media that declare huge pictures in a few bytes, crafted without encoding one.

A baseline JPEG of a flat grey picture needs 2 bits per 8x8 block when its Huffman tables
hold one code each (DC difference 0, end of block): a 16000x16000 frame is 1 MB, and
FFmpeg decodes it into a real 16000x16000 picture (768 MB once converted to BGR). Muxed into
Matroska it is a video whose container and codec both declare that size.
"""

from __future__ import annotations

import struct
import zlib
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

FFMPEG_SIDE = 16000
"""A square side FFmpeg accepts (its own limit is about 16250: (w + 128) * (h + 128) * 8
must stay under 2**31), so a file declaring more is written at this size and patched."""


def flat_jpeg(width: int, height: int) -> bytes:
    """A grey ``width`` x ``height`` baseline JPEG, one component, ~width*height/256 bytes."""

    def segment(marker: int, body: bytes) -> bytes:
        return b"\xff" + bytes([marker]) + struct.pack(">H", len(body) + 2) + body

    blocks = -(-width // 8) * -(-height // 8)
    one_code = bytes([1] + [0] * 15)  # one code of one bit, for symbol 0
    return b"".join([
        b"\xff\xd8",  # start of image
        segment(0xDB, b"\x00" + bytes([1]) * 64),  # quantisation table 0: all ones
        segment(0xC0, struct.pack(">BHHB", 8, height, width, 1) + b"\x01\x11\x00"),
        segment(0xC4, b"\x00" + one_code + b"\x00"),  # DC table: category 0 only
        segment(0xC4, b"\x10" + one_code + b"\x00"),  # AC table: end of block only
        segment(0xDA, b"\x01\x01\x00\x00\x3f\x00"),  # start of scan
        bytes(-(-2 * blocks // 8)),  # every block: DC "0", EOB "0"
        b"\xff\xd9",  # end of image
    ])  # fmt: skip


def write_mjpeg(path: Path, packets: list[bytes], width: int, height: int, fps: int = 25) -> Path:
    """Mux JPEG ``packets`` as they are (no encoding) into a Matroska file declaring
    ``width`` x ``height``."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mjpeg", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuvj420p"
        for i, data in enumerate(packets):
            packet = av.Packet(data)
            packet.stream = stream
            packet.pts = packet.dts = i
            packet.time_base = Fraction(1, fps)
            packet.duration = 1
            container.mux(packet)
    return path


def jpeg_bomb(path: Path, width: int, height: int, frames: int = 2) -> Path:
    """A Matroska MJPEG video whose container and JPEGs declare ``width`` x ``height``.

    Sides over ``FFMPEG_SIDE`` (which PyAV will not write) are written as ``FFMPEG_SIDE``
    and the container's PixelWidth / PixelHeight patched in place (same length)."""
    packet = flat_jpeg(width, height)
    if width <= FFMPEG_SIDE and height <= FFMPEG_SIDE:
        return write_mjpeg(path, [packet] * frames, width, height)
    write_mjpeg(path, [packet] * frames, FFMPEG_SIDE, FFMPEG_SIDE)
    data = path.read_bytes()
    for element, side in ((b"\xb0", width), (b"\xba", height)):  # EBML ids, 2-byte values
        assert side < 2**16
        old = element + b"\x82" + struct.pack(">H", FFMPEG_SIDE)
        assert data.count(old) == 1, "unexpected Matroska layout"
        data = data.replace(old, element + b"\x82" + struct.pack(">H", side))
    path.write_bytes(data)
    return path


def png_bomb(path: Path, width: int, height: int) -> Path:
    """A few-hundred-byte PNG whose header declares ``width`` x ``height`` (its pixel data
    is that of an 8x8 image: a decoder allocates the whole picture, then finds it short)."""
    data = bytearray(cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))  # the chunk's CRC
    path.write_bytes(bytes(data))
    return path

"""H.264 for RTP: Annex B parsing, RFC 6184 packetisation, and the SDP that
describes the stream.

Packetisation: a NAL unit that fits the payload size goes out whole (single NAL
unit packet); a larger one is split into FU-A fragments (type 28) whose first
byte keeps the NAL's F and NRI bits and whose second byte carries start/end
flags and the NAL type; the NAL header byte itself is not repeated. All packets
of one access unit (one frame) share the 90 kHz timestamp, and the last one has
the RTP marker bit set.
"""

from __future__ import annotations

import base64
import random
import struct
from dataclasses import dataclass, field

NAL_SPS, NAL_PPS, NAL_IDR = 7, 8, 5
FU_A = 28
RTP_VERSION = 2
PAYLOAD_TYPE = 96
CLOCK_RATE = 90_000


def split_annexb(data: bytes) -> list[bytes]:
    """NAL units of an Annex B byte stream (3- or 4-byte start codes removed)."""
    nals = []
    start = data.find(b"\x00\x00\x01")
    while start != -1:
        begin = start + 3
        nxt = data.find(b"\x00\x00\x01", begin)
        end = len(data) if nxt == -1 else nxt
        nal = data[begin:end]
        if nxt != -1 and nal.endswith(b"\x00"):
            nal = nal[:-1]  # the leading zero of a 4-byte start code
        if nal:
            nals.append(nal)
        start = nxt
    return nals


def nal_type(nal: bytes) -> int:
    return nal[0] & 0x1F


@dataclass
class RtpPacketizer:
    """Turns access units into RTP packets for one stream.

    Args:
        payload_size: most payload bytes per packet (MTU minus IP/UDP/RTP headers).
    """

    payload_size: int = 1400
    ssrc: int = field(default_factory=lambda: random.getrandbits(32))
    sequence: int = field(default_factory=lambda: random.getrandbits(16))

    def _packet(self, payload: bytes, timestamp: int, marker: bool) -> bytes:
        header = struct.pack(
            "!BBHII",
            RTP_VERSION << 6,
            (0x80 if marker else 0) | PAYLOAD_TYPE,
            self.sequence,
            timestamp & 0xFFFFFFFF,
            self.ssrc,
        )
        self.sequence = (self.sequence + 1) & 0xFFFF
        return header + payload

    def packetize(self, nals: list[bytes], timestamp: int) -> list[bytes]:
        """RTP packets of one access unit at ``timestamp`` (90 kHz)."""
        packets = []
        for i, nal in enumerate(nals):
            last_nal = i == len(nals) - 1
            if len(nal) <= self.payload_size:
                packets.append(self._packet(nal, timestamp, last_nal))
                continue
            indicator = (nal[0] & 0xE0) | FU_A
            body = nal[1:]
            chunk = self.payload_size - 2
            for offset in range(0, len(body), chunk):
                first, last = offset == 0, offset + chunk >= len(body)
                header = (0x80 if first else 0) | (0x40 if last else 0) | nal_type(nal)
                payload = bytes((indicator, header)) + body[offset : offset + chunk]
                packets.append(self._packet(payload, timestamp, last_nal and last))
        return packets


def sdp(sps: bytes, pps: bytes, fps: float, session_id: int, host: str = "127.0.0.1") -> str:
    """Session description of one H.264 video track (``trackID=0``)."""
    profile_level_id = sps[1:4].hex().upper()
    sprop = ",".join(base64.b64encode(p).decode("ascii") for p in (sps, pps))
    lines = [
        "v=0",
        f"o=- {session_id} 1 IN IP4 {host}",
        "s=FrameGraph",
        "t=0 0",
        "a=control:*",
        "a=range:npt=0-",
        f"m=video 0 RTP/AVP {PAYLOAD_TYPE}",
        "c=IN IP4 0.0.0.0",
        f"a=rtpmap:{PAYLOAD_TYPE} H264/{CLOCK_RATE}",
        f"a=fmtp:{PAYLOAD_TYPE} packetization-mode=1;profile-level-id={profile_level_id};"
        f"sprop-parameter-sets={sprop}",
        f"a=framerate:{fps:g}",
        "a=control:trackID=0",
    ]
    return "\r\n".join(lines) + "\r\n"

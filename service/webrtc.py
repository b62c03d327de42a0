"""The page's live video over WebRTC (aiortc), WHEP-style: the page POSTs an SDP offer for a
stream and gets the answer; the stream's frames are encoded once (H.264, libx264) for every
viewer, as the RTSP server does, and each viewer's connection only packetizes them.

A viewer's queue is short: a viewer that stalls loses units (then waits for the next
keyframe) and never slows the encoder, which never slows the graph (it takes the feed's
newest frame when it is ready for one). The encoder thread runs while someone watches and
stops a few seconds after the last viewer left.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from fractions import Fraction

import av
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCRtpSender, RTCSessionDescription

from stages.sinks.fit import even_size, fit
from stages.sinks.rtsp.encoder import AccessUnit, LiveEncoder
from stages.sinks.rtsp.h264 import CLOCK_RATE
from stages.sinks.web import LiveHub

log = logging.getLogger("framegraph")
IDLE_S = 3.0
"""An encoder with no viewer for this long stops."""
QUEUE_UNITS = 30
"""Encoded frames a viewer may have waiting; beyond, it skips to the next keyframe."""
TIME_BASE = Fraction(1, CLOCK_RATE)


class _Viewer:
    """One viewer's queue of encoded frames, fed from the encoder's thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[AccessUnit | None] = asyncio.Queue(QUEUE_UNITS)
        self.waiting_for_key = True

    def offer(self, unit: AccessUnit) -> None:  # on the event loop
        if self.waiting_for_key and not unit.keyframe:
            return
        if self.queue.full():  # stalled: drop what waits, start again at a keyframe
            while not self.queue.empty():
                self.queue.get_nowait()
            self.waiting_for_key = not unit.keyframe
            if self.waiting_for_key:
                return
        self.waiting_for_key = False
        self.queue.put_nowait(unit)


class SharedEncoder:
    """Encodes one stream's newest frames for all its viewers, on a thread of its own."""

    def __init__(self, hub: LiveHub, name: str, fps: float = 25.0) -> None:
        self.hub, self.name, self.fps = hub, name, fps
        self.viewers: set[_Viewer] = set()
        self._lock = threading.Lock()
        self._encoder: LiveEncoder | None = None
        self.thread: threading.Thread | None = None
        self.running = False

    def subscribe(self, viewer: _Viewer) -> None:
        with self._lock:
            self.viewers.add(viewer)
            if self._encoder is not None:
                self._encoder.request_keyframe()
            if not self.running:
                self.running = True
                self.thread = threading.Thread(target=self._run, name=f"webrtc-{self.name}",
                                               daemon=True)  # fmt: skip
                self.thread.start()

    def unsubscribe(self, viewer: _Viewer) -> None:
        with self._lock:
            self.viewers.discard(viewer)

    def _run(self) -> None:
        number, idle_since, start = 0, None, time.monotonic()
        try:
            while True:
                with self._lock:
                    if not self.viewers:
                        idle_since = idle_since or time.monotonic()
                        if time.monotonic() - idle_since > IDLE_S:
                            self.running = False
                            return
                    else:
                        idle_since = None
                feed = self.hub.feeds.get(self.name)
                if feed is None:
                    time.sleep(0.1)
                    continue
                newest = feed.wait_newer(number, 0.5)
                image = feed.image
                if newest == number or image is None:
                    continue
                number = newest
                if self._encoder is None:
                    width, height = even_size(image)
                    self._encoder = LiveEncoder(width, height, self.fps)
                    self._encoder.request_keyframe()
                size = (self._encoder.width, self._encoder.height)
                stamp = round((time.monotonic() - start) * CLOCK_RATE)
                for unit in self._encoder.encode(fit(image, size), stamp):
                    with self._lock:
                        viewers = list(self.viewers)
                    for viewer in viewers:
                        viewer.loop.call_soon_threadsafe(viewer.offer, unit)
        finally:
            self._encoder = None  # its codec context goes with it
            with self._lock:
                self.running = False


class EncodedTrack(MediaStreamTrack):
    """A video track whose frames are already encoded (aiortc only packetizes them)."""

    kind = "video"

    def __init__(self, encoder: SharedEncoder, viewer: _Viewer) -> None:
        super().__init__()
        self.encoder, self.viewer = encoder, viewer
        encoder.subscribe(viewer)

    async def recv(self) -> av.Packet:
        unit = await self.viewer.queue.get()
        if unit is None:
            raise asyncio.CancelledError
        packet = av.Packet(b"".join(b"\x00\x00\x00\x01" + nal for nal in unit.nals))
        packet.pts, packet.time_base = unit.timestamp, TIME_BASE
        return packet

    def stop(self) -> None:
        self.encoder.unsubscribe(self.viewer)
        super().stop()


class WebRTCViews:
    """Every stream's shared encoder and every viewer's peer connection."""

    def __init__(self, hub: LiveHub) -> None:
        self.hub = hub
        self.encoders: dict[str, SharedEncoder] = {}
        self.connections: set[RTCPeerConnection] = set()

    async def answer(self, name: str, offer_sdp: str) -> str:
        """The SDP answer for a viewer's offer to watch stream ``name`` (H.264 only)."""
        encoder = self.encoders.setdefault(name, SharedEncoder(self.hub, name))
        connection = RTCPeerConnection()
        self.connections.add(connection)
        track = EncodedTrack(encoder, _Viewer(asyncio.get_running_loop()))

        @connection.on("connectionstatechange")
        async def changed() -> None:
            if connection.connectionState in ("failed", "closed"):
                await self.close(connection, track)

        sender = connection.addTrack(track)
        h264 = [c for c in RTCRtpSender.getCapabilities("video").codecs
                if c.mimeType.lower() == "video/h264"]  # fmt: skip
        for transceiver in connection.getTransceivers():
            if transceiver.sender == sender:
                transceiver.setCodecPreferences(h264)  # the one encoder's codec
        await connection.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        await connection.setLocalDescription(await connection.createAnswer())
        return connection.localDescription.sdp

    async def close(self, connection: RTCPeerConnection, track: EncodedTrack) -> None:
        track.stop()
        self.connections.discard(connection)
        await connection.close()

    async def close_all(self) -> None:
        for connection in list(self.connections):
            await connection.close()
        self.connections.clear()

"""The page's live video over WebRTC (aiortc), WHEP-style: the page POSTs an SDP offer for a
stream and gets the answer; the stream's frames are encoded once (H.264, libx264) for every
viewer, as the RTSP server does, and each viewer's connection only packetizes them.

A viewer's queue is short: a viewer that stalls loses units (then waits for the next
keyframe) and never slows the encoder, which never slows the graph (it takes the feed's
newest frame when it is ready for one). The encoder thread runs while someone watches and
stops a few seconds after the last viewer left.

A viewer's peer connection is closed when its browser goes away (ICE consent: ~30 s
without an answer), when its stream ends (removed, or the graph stopped: its feed ends) and
when the views close. :class:`ThreadedViews` runs the views on an event loop of their own
thread, for callers that have none (the service's backend, a cluster worker's actor).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from fractions import Fraction

import av
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc import sdp as aiortc_sdp
from aiortc.exceptions import InternalError, InvalidAccessError, InvalidStateError

from stages.sinks.fit import even_size, fit
from stages.sinks.rtsp.encoder import AccessUnit, LiveEncoder
from stages.sinks.rtsp.h264 import CLOCK_RATE
from stages.sinks.web import LiveFeed, LiveHub

log = logging.getLogger("framegraph")
IDLE_S = 3.0
"""An encoder with no viewer for this long stops."""
QUEUE_UNITS = 30
"""Encoded frames a viewer may have waiting; beyond, it skips to the next keyframe."""
TIME_BASE = Fraction(1, CLOCK_RATE)
MAX_VIEWERS = 64
"""Peer connections one process serves at once: each holds sockets and DTLS state until its
browser goes away (~30 s after a silent one), so offers past it are refused."""
ANSWER_TIMEOUT_S = 15.0
"""How long :meth:`ThreadedViews.answer` waits for aiortc's answer (its ICE gathering asks
a STUN server, for up to 5 s where none answers)."""


class TooManyViewers(RuntimeError):
    """``MAX_VIEWERS`` connections are open: the offer is refused (the API answers 503)."""


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
    """Encodes one stream's newest frames for all its viewers, on a thread of its own.

    Args:
        hub: the live feeds.
        name: the stream.
        fps: nominal frame rate (the encoder's rate control).
        on_end: called (on the encoder's thread) once the stream's feed has ended: its
            viewers are to be let go; the encoder is then ``ended`` and serves nobody.
    """

    def __init__(
        self,
        hub: LiveHub,
        name: str,
        fps: float = 25.0,
        on_end: Callable[[SharedEncoder], None] | None = None,
    ) -> None:
        self.hub, self.name, self.fps = hub, name, fps
        self.on_end = on_end
        self.viewers: set[_Viewer] = set()
        self._lock = threading.Lock()
        self._encoder: LiveEncoder | None = None
        self.thread: threading.Thread | None = None
        self.running = False
        self.ended = False

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
        followed: LiveFeed | None = None  # the feed being encoded (a new one: a new stream)
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
                if followed is not None and (feed is not followed or followed.ended):
                    self.ended = True  # removed, or the graph stopped: nothing more comes
                    if self.on_end is not None:
                        self.on_end(self)
                    return
                if feed is None:  # before the stream's first frame
                    time.sleep(0.1)
                    continue
                followed = feed
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
    """Every stream's shared encoder and every viewer's peer connection (on one event loop:
    the one that calls :meth:`answer`)."""

    def __init__(self, hub: LiveHub) -> None:
        self.hub = hub
        self.encoders: dict[str, SharedEncoder] = {}
        self.connections: dict[RTCPeerConnection, EncodedTrack] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing: set[asyncio.Future[None]] = set()  # held: a task nobody holds may vanish

    async def answer(self, name: str, offer_sdp: str) -> str:
        """The SDP answer for a viewer's offer to watch stream ``name`` (H.264 only).

        Raises:
            ValueError: the offer cannot be answered (not an SDP offer, no video to receive
                in H.264); its connection is closed.
        """
        try:  # aiortc's parser asserts on what is not SDP: caught here, before any connection
            aiortc_sdp.SessionDescription.parse(offer_sdp)
        except (AssertionError, ValueError, IndexError, KeyError) as error:
            raise ValueError(f"not an SDP offer ({error or type(error).__name__})") from None
        if len(self.connections) >= MAX_VIEWERS:
            raise TooManyViewers(f"{len(self.connections)} viewers already: try again later")
        self._loop = asyncio.get_running_loop()
        encoder = self.encoders.get(name)
        if encoder is None or encoder.ended:  # an ended one belongs to an earlier stream
            encoder = self.encoders[name] = SharedEncoder(self.hub, name, on_end=self._ended)
        connection = RTCPeerConnection()
        track = EncodedTrack(encoder, _Viewer(self._loop))
        self.connections[connection] = track

        @connection.on("connectionstatechange")
        async def changed() -> None:
            if connection.connectionState in ("failed", "closed"):
                await self.close(connection)

        try:
            sender = connection.addTrack(track)
            h264 = [c for c in RTCRtpSender.getCapabilities("video").codecs
                    if c.mimeType.lower() == "video/h264"]  # fmt: skip
            for transceiver in connection.getTransceivers():
                if transceiver.sender == sender:
                    transceiver.setCodecPreferences(h264)  # the one encoder's codec
            await connection.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
            await connection.setLocalDescription(await connection.createAnswer())
        except (ValueError, InternalError, InvalidAccessError, InvalidStateError) as error:
            await self.close(connection)
            raise ValueError(
                f"cannot answer this WebRTC offer ({error or type(error).__name__})"
            ) from None
        except BaseException:  # cancelled (the caller gave up waiting), or a bug: no leak
            await asyncio.shield(self.close(connection))
            raise
        return connection.localDescription.sdp

    def _ended(self, encoder: SharedEncoder) -> None:
        """A stream's feed ended (on its encoder's thread): its viewers' connections close."""
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed: so are the connections
                loop.call_soon_threadsafe(self._close_viewers_of, encoder)

    def _close_viewers_of(self, encoder: SharedEncoder) -> None:
        if self.encoders.get(encoder.name) is encoder:
            del self.encoders[encoder.name]
        for connection, track in list(self.connections.items()):
            if track.encoder is encoder:
                closing = asyncio.ensure_future(self.close(connection))
                self._closing.add(closing)
                closing.add_done_callback(self._closing.discard)

    async def close(self, connection: RTCPeerConnection) -> None:
        """Closes one viewer's connection (the browser sees it end) and lets its track go."""
        track = self.connections.pop(connection, None)
        if track is not None:
            track.stop()
        await connection.close()

    async def close_all(self) -> None:
        """Closes every viewer's connection."""
        for connection in list(self.connections):
            await self.close(connection)


class ThreadedViews:
    """:class:`WebRTCViews` on an asyncio event loop of their own thread, started at the
    first answer, for callers with blocking calls and no loop of their own.

    Args:
        hub: the live feeds (a ``web`` sink's).
    """

    def __init__(self, hub: LiveHub) -> None:
        self.views = WebRTCViews(hub)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(target=self._loop.run_forever, name="webrtc",
                                                daemon=True)  # fmt: skip
                self._thread.start()
            return self._loop

    def answer(self, name: str, offer_sdp: str, timeout: float = ANSWER_TIMEOUT_S) -> str:
        """The SDP answer for a viewer's offer to watch stream ``name`` (blocks).

        Raises:
            ValueError: the offer cannot be answered.
            TimeoutError: no answer within ``timeout`` seconds.
        """
        future = asyncio.run_coroutine_threadsafe(
            self.views.answer(name, offer_sdp), self._running_loop()
        )
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"no WebRTC answer for {name!r} in {timeout:g} s") from None

    @property
    def connections(self) -> int:
        """Viewers' connections open now."""
        return len(self.views.connections)

    def close(self, timeout: float = 5.0) -> None:
        """Closes every viewer's connection and ends the loop's thread (a later
        :meth:`answer` starts them again)."""
        with self._lock:
            loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self.views.close_all(), loop).result(timeout)
        except concurrent.futures.TimeoutError:
            log.warning("webrtc: viewers' connections did not close in %.0f s", timeout)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
            if not thread.is_alive():
                loop.close()

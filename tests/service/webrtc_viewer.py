"""A browser-like WebRTC viewer for the tests: aiortc as the client, on an event loop of its
own thread. It offers to receive one video track, as the page does, gets the answer from a
blocking callable (an HTTP POST to the API, a worker's method) and decodes what comes."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack


class Viewer:
    """Connects at once; raises what ``answer`` raised.

    Args:
        answer: the offer's SDP -> the answer's SDP (blocks).
        timeout: seconds to wait for the answer.
    """

    def __init__(self, answer: Callable[[str], str], timeout: float = 30.0) -> None:
        self.sizes: list[tuple[int, int]] = []
        """Each decoded frame's (width, height), in order."""
        self.states: list[str] = []
        """The connection's states as they changed."""
        self.ended = threading.Event()
        """Set once the track or the connection ended (the server closed it)."""
        self.answer_sdp = ""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="viewer", daemon=True)
        self._thread.start()
        self._connection: RTCPeerConnection | None = None
        self._readers: list[asyncio.Future[None]] = []  # held: a task nobody holds may vanish
        self._call(self._connect(answer), timeout)

    def _call(self, coroutine: object, timeout: float) -> object:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)  # type: ignore[arg-type]

    async def _connect(self, answer: Callable[[str], str]) -> None:
        connection = self._connection = RTCPeerConnection()
        connection.addTransceiver("video", direction="recvonly")

        @connection.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            self._readers.append(asyncio.ensure_future(self._read(track)))

        @connection.on("connectionstatechange")
        def changed() -> None:
            self.states.append(connection.connectionState)
            if connection.connectionState in ("failed", "closed"):
                self.ended.set()

        await connection.setLocalDescription(await connection.createOffer())
        self.answer_sdp = await asyncio.to_thread(answer, connection.localDescription.sdp)
        await connection.setRemoteDescription(RTCSessionDescription(self.answer_sdp, "answer"))

    async def _read(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                self.ended.set()
                return
            self.sizes.append((frame.width, frame.height))

    def wait_frames(self, count: int, timeout: float) -> bool:
        """Whether ``count`` more frames than now were decoded within ``timeout`` seconds."""
        target = len(self.sizes) + count
        deadline = time.monotonic() + timeout
        while len(self.sizes) < target and time.monotonic() < deadline:
            time.sleep(0.05)
        return len(self.sizes) >= target

    def close(self) -> None:
        """Hangs up and ends the loop's thread."""
        if self._connection is not None:
            self._call(self._connection.close(), 10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def __enter__(self) -> Viewer:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

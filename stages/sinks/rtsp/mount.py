"""The media side of the RTSP server: a mount (one served path) and, per playing
client, a bounded packet queue drained by that client's own sender thread.

The encoder calls ``Mount.publish``, which only appends to the queues and never
blocks; each sender writes to its own client and may block there (up to its
socket's timeout) without holding up anyone else.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

MAX_CONTROL_BACKLOG = 256 * 1024
"""RTSP response bytes queued on a TCP-interleaved client before it is dropped:
a client that asks (keep-alives) but never reads the answers."""


class ClientQueue:
    """Packets waiting for one playing client, bounded; starts at a keyframe.

    Args:
        send: writes one RTP packet to the client; may block (up to its socket's
            timeout) or raise OSError, which ends this client.
        capacity: RTP packets queued before the client is resynced at a keyframe.
        write: writes raw bytes on the same path as ``send`` (RTSP responses on
            a TCP-interleaved connection, which must never land inside an RTP
            frame); None when responses travel elsewhere (UDP).
        greeting: bytes written before any packet: responses still unsent when
            the client started playing, ending with the PLAY response.
        on_exit: called on the sender thread once it has stopped for good.
    """

    def __init__(
        self,
        send: Callable[[bytes], None],
        capacity: int,
        write: Callable[[bytes], None] | None = None,
        greeting: bytes = b"",
        on_exit: Callable[[], None] | None = None,
    ) -> None:
        self._send = send
        self._write = write
        self._on_exit = on_exit
        self.capacity = capacity
        self.drops = 0
        self.sent = 0
        self._packets: deque[bytes] = deque()
        self._control: deque[bytes] = deque([greeting] if greeting else [])
        self._control_bytes = len(greeting)
        self._waiting_keyframe = True
        self._closed = False
        self._finishing = False
        self._cond = threading.Condition()
        self.thread = threading.Thread(target=self._run, name="rtsp-client", daemon=True)
        self.thread.start()

    @property
    def interleaved(self) -> bool:
        """True when RTSP responses to this client go through its sender."""
        return self._write is not None

    def offer(self, packets: list[bytes], keyframe: bool) -> None:
        """Queue one access unit's packets (called by the encoder side; never blocks)."""
        with self._cond:
            if self._closed or self._finishing:
                return
            if self._waiting_keyframe and not keyframe:
                return
            if len(self._packets) + len(packets) > self.capacity:
                self.drops += len(self._packets)
                self._packets.clear()  # the client fell behind: resync at a keyframe
                if not keyframe:
                    self._waiting_keyframe = True
                    return
            self._waiting_keyframe = False
            self._packets.extend(packets)
            self._cond.notify()

    def control(self, data: bytes) -> bool:
        """Queue an RTSP response, sent ahead of queued packets (never dropped).

        Returns:
            False when the client already has too many unsent responses (it
            does not read them); the caller then drops the client.
        """
        with self._cond:
            if self._closed or self._finishing:
                return True  # on its way out: nothing more will be sent
            if self._control_bytes + len(data) > MAX_CONTROL_BACKLOG:
                return False
            self._control.append(data)
            self._control_bytes += len(data)
            self._cond.notify()
            return True

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    while not (self._packets or self._control or self._closed or self._finishing):
                        self._cond.wait()
                    if self._closed:
                        return
                    control = list(self._control)
                    self._control.clear()
                    self._control_bytes = 0
                    finishing = self._finishing
                    batch = [] if finishing else list(self._packets)
                    self._packets.clear()
                for data in control:
                    assert self._write is not None
                    self._write(data)
                if finishing:
                    return
                for packet in batch:
                    self._send(packet)
                    self.sent += 1
        except OSError:  # the client is gone, reset, or stalled past the write timeout
            pass
        finally:
            with self._cond:
                self._closed = True
            if self._on_exit is not None:
                self._on_exit()

    def close(self) -> None:
        """Stop now; queued packets and responses are dropped."""
        with self._cond:
            self._closed = True
            self._cond.notify()

    def finish(self) -> None:
        """Send the queued responses (e.g. TEARDOWN's), drop the packets, stop."""
        with self._cond:
            self._finishing = True
            self._cond.notify()

    @property
    def closed(self) -> bool:
        return self._closed


class Mount:
    """One path of the server: its stream description and its playing clients.

    Args:
        path: the path clients ask for, e.g. ``/live``.
        client_buffer: RTP packets queued per client before it is resynced.
        on_ready: called (on the encoder's thread) once the description is set,
            so that DESCRIBE requests waiting for it can be answered.
    """

    def __init__(
        self, path: str, client_buffer: int, on_ready: Callable[[], None] | None = None
    ) -> None:
        self.path = path
        self.client_buffer = client_buffer
        self.sdp: str | None = None
        self.ready = threading.Event()
        self._on_ready = on_ready
        self._clients: set[ClientQueue] = set()
        self._lock = threading.Lock()
        self._departed_drops = 0  # drops of clients that have left

    def describe(self, sdp: str) -> None:
        """Set the session description (once SPS/PPS are known)."""
        self.sdp = sdp
        self.ready.set()
        if self._on_ready is not None:
            self._on_ready()

    def publish(self, packets: list[bytes], keyframe: bool) -> None:
        """Hand one access unit to every playing client."""
        with self._lock:
            clients = list(self._clients)
        for client in clients:
            if client.closed:
                self.remove(client)
            else:
                client.offer(packets, keyframe)

    def add(
        self,
        send: Callable[[bytes], None],
        write: Callable[[bytes], None] | None = None,
        greeting: bytes = b"",
        on_exit: Callable[[], None] | None = None,
    ) -> ClientQueue:
        """Start a client (see ``ClientQueue`` for the arguments); it gets the
        next keyframe and everything after it."""
        client = ClientQueue(send, self.client_buffer, write, greeting, on_exit)
        with self._lock:
            self._clients.add(client)
        return client

    def remove(self, client: ClientQueue, graceful: bool = False) -> None:
        """Stop serving ``client``: at once, or after its queued responses
        (``graceful``)."""
        if graceful:
            client.finish()
        else:
            client.close()
        with self._lock:
            if client in self._clients:
                self._clients.discard(client)
                self._departed_drops += client.drops

    def stats(self) -> dict[str, int]:
        with self._lock:
            clients = list(self._clients)
            departed = self._departed_drops
        return {"clients": len(clients), "client_drops": departed + sum(c.drops for c in clients)}

"""A bounded queue between the graph and an event output's own delivery thread.

Flow control, in one place for the webhook and MQTT outputs:

- ``write`` (the graph's thread) only appends to the queue: it never waits for the
  receiver, a lock held for a few list operations aside. A slow or dead receiver costs the
  pipeline nothing but the events it cannot take.
- The queue holds at most ``capacity`` events. When it is full the **oldest** queued event
  is dropped to make room: on live video the newest events say what is happening now, and a
  receiver that comes back after an outage is better served by the last minutes than by the
  first ones. Every drop is counted; the first is logged, once.
- One delivery thread per output empties the queue in order (a receiver sees the events of
  one source in the order they happened, drops aside).
- On close, delivery goes on for at most ``drain`` seconds; what is still queued (or in
  hand) then is counted as ``abandoned`` and the close returns. The thread is a daemon and
  ends on its own after its current attempt.

Counts, all in the output's ``status()`` (the metrics JSON, the service API): ``sent``,
``failed`` (refused, or out of tries), ``dropped`` (queue full), ``queued`` (now),
``abandoned`` (left at close).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from pipeline.errors import ConfigError
from pipeline.results import Event
from stages.sinks.events.base import EventSink

log = logging.getLogger("framegraph")

JOIN_MARGIN = 0.5
"""Seconds past ``drain`` that close waits for the delivery thread to notice the deadline."""


class Outbox:
    """The bounded, drop-oldest queue of events and the delivery counters, behind one lock.

    Args:
        capacity: the most events queued at once.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.sent = self.failed = self.dropped = self.abandoned = 0
        self._items: deque[Event] = deque()
        self._in_hand = 0  # taken by the delivery thread, not yet settled
        self._deadline: float | None = None  # closing: deliver until then
        self._given_up = False
        self._cond = threading.Condition()

    def put(self, event: Event) -> bool:
        """Queue ``event``; when full, drop the oldest queued one first.

        Returns:
            Whether an event was dropped to make room.
        """
        with self._cond:
            if self._given_up:  # closed: nothing will deliver it
                self.abandoned += 1
                return False
            full = len(self._items) >= self.capacity
            if full:
                self._items.popleft()
                self.dropped += 1
            self._items.append(event)
            self._cond.notify_all()
        return full

    def take(
        self, most: int, ready: Callable[[], bool] | None = None, fill_wait: float = 0.0
    ) -> list[Event] | None:
        """Wait for events (and for ``ready()``, e.g. a connection), then take up to ``most``
        of them, oldest first; they are "in hand" until :meth:`settle`.

        Args:
            most: the most events to take.
            ready: whether the receiver can take them now (None: always).
            fill_wait: seconds to wait, from the first event, for ``most`` to be queued
                (not while closing).

        Returns:
            The events, or None when the thread should end: closing and nothing is left, or
            the close's deadline passed.
        """
        with self._cond:
            fill_until: float | None = None
            while True:
                if self._given_up:
                    return None
                now = time.monotonic()
                closing = self._deadline is not None
                if closing and (not self._items or now >= self._deadline):  # type: ignore[operator]
                    return None
                wait = self._deadline - now if closing else None  # type: ignore[operator]
                if self._items and (ready is None or ready()):
                    if len(self._items) < most and fill_wait > 0 and not closing:
                        fill_until = now + fill_wait if fill_until is None else fill_until
                        wait = fill_until - now
                    if len(self._items) >= most or wait is None or wait <= 0 or closing:
                        batch = [self._items.popleft() for _ in range(min(most, len(self._items)))]
                        self._in_hand = len(batch)
                        return batch
                # Woken by put, by wake() (a connection came up) or by the close.
                self._cond.wait(wait)

    def settle(self, sent: int = 0, failed: int = 0) -> None:
        """Count what became of the events in hand (ignored once the close gave up on
        them: they are counted as abandoned then)."""
        with self._cond:
            if self._given_up:
                return
            self.sent += sent
            self.failed += failed
            self._in_hand = 0
            self._cond.notify_all()

    def count(self, sent: int = 0, failed: int = 0) -> None:
        """Count outcomes that arrive later than :meth:`settle` (an MQTT broker's ack)."""
        with self._cond:
            self.sent += sent
            self.failed += failed
            self._cond.notify_all()

    def wake(self) -> None:
        """Make waiters look again (a connection came up, an ack arrived)."""
        with self._cond:
            self._cond.notify_all()

    def pause(self, seconds: float) -> bool:
        """Wait ``seconds`` (a retry's backoff), or less if the close's deadline comes first.

        Returns:
            Whether there is time left to try again.
        """
        with self._cond:
            end = time.monotonic() + seconds
            while not self._given_up:
                # the close may come during the pause: its deadline is read on every wake
                limit = end if self._deadline is None else min(end, self._deadline)
                left = limit - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return not self._given_up and (
                self._deadline is None or time.monotonic() < self._deadline
            )

    def time_left(self, limit: float) -> float:
        """``limit`` seconds, or what is left before the close's deadline if that is less."""
        with self._cond:
            if self._deadline is None:
                return limit
            return min(limit, self._deadline - time.monotonic())

    def wait_for(self, condition: Callable[[], bool]) -> bool:
        """While closing: wait until ``condition()`` or the deadline. Returns ``condition()``."""
        with self._cond:
            while not condition() and not self._given_up:
                left = (self._deadline or 0.0) - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return condition()

    def finish(self, drain: float) -> None:
        """Start closing: deliver what is queued for at most ``drain`` more seconds."""
        with self._cond:
            self._deadline = time.monotonic() + drain
            self._cond.notify_all()

    def give_up(self, unconfirmed: int = 0) -> int:
        """End delivery: count what is queued, in hand, and ``unconfirmed`` (sent but not
        acknowledged) as abandoned.

        Returns:
            How many events that was.
        """
        with self._cond:
            left = len(self._items) + self._in_hand + unconfirmed
            self._items.clear()
            self._in_hand = 0
            self.abandoned += left
            self._given_up = True
            self._cond.notify_all()
            return left

    def counts(self) -> dict[str, int]:
        with self._cond:
            return {
                "sent": self.sent,
                "failed": self.failed,
                "dropped": self.dropped,
                "queued": len(self._items) + self._in_hand,
                "abandoned": self.abandoned,
            }


class QueuedEventSink(EventSink):
    """An event output that delivers from an :class:`Outbox` on a thread of its own.

    Subclasses say where the events go: :meth:`_deliver` empties the outbox (it runs on the
    delivery thread until ``take`` returns None); :meth:`_stop` releases the connection when
    the sink closes and returns how many sent events are still unconfirmed;
    :meth:`_connection` says how the receiver is doing.

    Args:
        queue: the most events waiting for delivery; past it the oldest are dropped.
        drain: seconds the close goes on delivering what is queued before giving up.
    """

    def __init__(self, queue: int, drain: float) -> None:
        if queue < 1:
            raise ConfigError(f"{self.kind}: queue must be at least 1, got {queue}")
        if drain < 0:
            raise ConfigError(f"{self.kind}: drain must be 0 or more seconds, got {drain}")
        self.queue = queue
        self.drain = drain
        self._outbox: Outbox | None = None
        self._thread: threading.Thread | None = None
        self._warned_drop = False

    @property
    def label(self) -> str:
        """How logs name this output: ``kind 'name'``."""
        return f"{self.kind} {self.name!r}"

    def open(self) -> None:
        self._outbox = Outbox(self.queue)
        self._start()
        self._thread = threading.Thread(
            target=self._run, args=(self._outbox,), name=f"{self.kind}-{self.name}", daemon=True
        )
        self._thread.start()

    def _start(self) -> None:
        """Set up the client (on the graph's thread, before any event; must not wait for
        the receiver)."""

    def _deliver(self, outbox: Outbox) -> None:
        """Deliver events until ``outbox.take`` returns None."""
        raise NotImplementedError

    def _stop(self, outbox: Outbox) -> int:
        """Release the connection once the delivery thread ended or was given up on.

        Returns:
            Events sent but not confirmed by the receiver (counted as abandoned).
        """
        return 0

    def _connection(self) -> str:
        """The receiver's state in a word, for the status line ("" when not known yet)."""
        return ""

    def _run(self, outbox: Outbox) -> None:
        try:
            self._deliver(outbox)
        except Exception:  # a bug here must be seen, and must not take the graph down
            log.exception("%s: event delivery stopped", self.label)

    def emit(self, event: Event) -> None:
        if self._outbox.put(event) and not self._warned_drop:  # type: ignore[union-attr]
            self._warned_drop = True
            log.warning(
                "%s: the receiver is slower than the events; dropping the oldest queued "
                "events (more than %d waiting, counted in its status)",
                self.label, self.queue,
            )  # fmt: skip

    def status(self) -> dict[str, Any]:
        if self._outbox is None:
            return {}
        connection = self._connection()
        return {**self._outbox.counts(), **({"connection": connection} if connection else {})}

    def close(self) -> None:
        outbox, thread = self._outbox, self._thread
        if outbox is None or thread is None:
            return
        outbox.finish(self.drain)
        thread.join(self.drain + JOIN_MARGIN)
        left = outbox.give_up(self._stop(outbox))
        counts = outbox.counts()
        lost = counts["failed"] + counts["dropped"] + counts["abandoned"]
        (log.warning if lost else log.info)(
            "%s: %d events sent, %d failed, %d dropped (queue full), %d abandoned at close",
            self.label, counts["sent"], counts["failed"], counts["dropped"], left,
        )  # fmt: skip
        self._thread = None

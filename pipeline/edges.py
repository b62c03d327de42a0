"""Bounded edges between stages, each with a named flow-control policy.

Policies (what ``put`` does when the edge is full):

- ``block``: wait for room. Nothing is lost; a slow consumer slows the producer.
  Right for files, where every frame must reach the output.
- ``drop_oldest``: discard the oldest queued frame to make room. The consumer
  sees a recent window of frames; latency is bounded by the capacity.
- ``latest``: keep only the newest frame; every put replaces what is queued.
  Right for live input slower to process than to capture: the consumer always
  works on the freshest frame and end-to-end latency stays bounded.

Control items (end of stream) are never dropped and never count against the
capacity, so shutdown cannot be lost to a drop policy. Every dropped frame is
counted in ``drops``.

Capacity counts frames, and frames differ in size by orders of magnitude (8 frames of
4K BGR are 200 MB). So an edge also has a byte budget, ``max_bytes``, counted over its
queued frames' images (``frame.image.nbytes``): it is full when either bound is reached.
One frame is always admitted into an empty edge, however large, so a frame bigger than
the budget still flows (one at a time) and nothing deadlocks. ``latest`` holds one frame
whatever its size.
"""

from __future__ import annotations

import threading
from collections import deque
from enum import Enum
from typing import Any

from pipeline.frame import EndOfStream, Frame


class Policy(str, Enum):
    """What a full edge does with a new frame."""

    BLOCK = "block"
    DROP_OLDEST = "drop_oldest"
    LATEST = "latest"


class EdgeClosed(Exception):
    """Raised by ``get`` once the edge was closed (graph aborting)."""


Item = tuple[str, Frame | EndOfStream]
"""(name of the sending node, payload)."""
QUEUE_BYTES = 512 * 2**20
"""Default byte budget of an edge (512 MiB: ten 4K BGR frames)."""


def image_bytes(frame: Frame) -> int:
    """Bytes of a frame's image, what an edge's byte budget counts."""
    return int(getattr(frame.image, "nbytes", 0))


class Edge:
    """A bounded multi-producer, single-consumer queue with a drop policy.

    Args:
        name: shown in metrics, usually the consuming stage's name.
        capacity: most frames held at once (>= 1).
        policy: what to do when full.
        max_bytes: most image bytes held at once (None: no byte bound); one frame is
            always admitted, whatever its size.
    """

    def __init__(
        self,
        name: str,
        capacity: int = 8,
        policy: Policy = Policy.BLOCK,
        max_bytes: int | None = None,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"edge {name!r}: capacity must be >= 1, got {capacity}")
        if max_bytes is not None and max_bytes < 1:
            raise ValueError(f"edge {name!r}: max_bytes must be >= 1, got {max_bytes}")
        self.name = name
        self.max_bytes = max_bytes
        self._asked_capacity = capacity
        self.policy = Policy(policy)
        self.capacity = 1 if self.policy is Policy.LATEST else capacity
        self.drops = 0
        self.max_depth = 0
        self.peak_bytes = 0
        self._items: deque[Item] = deque()
        self._frames = 0
        self._bytes = 0
        self._closed = False
        self._cond = threading.Condition()

    def set_policy(self, policy: Policy) -> None:
        """Changes the policy before any frame went through (``latest`` holds one frame)."""
        with self._cond:
            if self._items:
                raise RuntimeError(f"edge {self.name!r}: policy changed while frames are queued")
            self.policy = Policy(policy)
            self.capacity = 1 if self.policy is Policy.LATEST else self._asked_capacity

    @property
    def depth(self) -> int:
        """Frames queued now."""
        return self._frames

    @property
    def bytes(self) -> int:
        """Image bytes queued now."""
        return self._bytes

    def _full_for(self, size: int) -> bool:
        """No room for a frame of ``size`` image bytes (an empty edge always has room)."""
        if self._frames == 0:
            return False
        if self._frames >= self.capacity:
            return True
        return self.max_bytes is not None and self._bytes + size > self.max_bytes

    def put(self, sender: str, payload: Frame | EndOfStream) -> bool:
        """Queue ``payload``; returns False if the edge was closed meanwhile."""
        with self._cond:
            if isinstance(payload, Frame):
                size = image_bytes(payload)
                if self.policy is Policy.BLOCK:
                    while self._full_for(size) and not self._closed:
                        self._cond.wait()
                else:  # drop the oldest frames until the new one fits
                    while self._full_for(size):
                        self._drop_oldest_frame()
                if self._closed:
                    return False
                self._frames += 1
                self._bytes += size
                self.max_depth = max(self.max_depth, self._frames)
                self.peak_bytes = max(self.peak_bytes, self._bytes)
            elif self._closed:
                return False
            self._items.append((sender, payload))
            self._cond.notify_all()
            return True

    def get(self, timeout: float | None = None) -> Item | None:
        """Next item, or None after ``timeout`` seconds with nothing queued.

        Raises:
            EdgeClosed: the edge was closed.
        """
        with self._cond:
            if not self._items and not self._closed:
                self._cond.wait(timeout)
            if self._closed:
                raise EdgeClosed(self.name)
            if not self._items:
                return None
            item = self._items.popleft()
            if isinstance(item[1], Frame):
                self._frames -= 1
                self._bytes -= image_bytes(item[1])
                self._cond.notify_all()
            return item

    def close(self) -> None:
        """Wake every waiter; later puts are refused and gets raise EdgeClosed."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _drop_oldest_frame(self) -> None:
        """Drop the oldest queued frame; control items keep their place."""
        for i, (_, payload) in enumerate(self._items):
            if isinstance(payload, Frame):
                del self._items[i]
                self._frames -= 1
                self._bytes -= image_bytes(payload)
                self.drops += 1
                return

    def snapshot(self) -> dict[str, Any]:
        """Depth, capacity, policy, drops and image bytes, for metrics."""
        return {
            "depth": self._frames,
            "max_depth": self.max_depth,
            "capacity": self.capacity,
            "policy": self.policy.value,
            "drops": self.drops,
            "bytes": self._bytes,
            "peak_bytes": self.peak_bytes,
            "max_bytes": self.max_bytes,
        }

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


class Edge:
    """A bounded multi-producer, single-consumer queue with a drop policy.

    Args:
        name: shown in metrics, usually the consuming stage's name.
        capacity: most frames held at once (>= 1).
        policy: what to do when full.
    """

    def __init__(self, name: str, capacity: int = 8, policy: Policy = Policy.BLOCK) -> None:
        if capacity < 1:
            raise ValueError(f"edge {name!r}: capacity must be >= 1, got {capacity}")
        self.name = name
        self._asked_capacity = capacity
        self.policy = Policy(policy)
        self.capacity = 1 if self.policy is Policy.LATEST else capacity
        self.drops = 0
        self.max_depth = 0
        self._items: deque[Item] = deque()
        self._frames = 0
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

    def put(self, sender: str, payload: Frame | EndOfStream) -> bool:
        """Queue ``payload``; returns False if the edge was closed meanwhile."""
        with self._cond:
            if isinstance(payload, Frame):
                if self.policy is Policy.BLOCK:
                    while self._frames >= self.capacity and not self._closed:
                        self._cond.wait()
                elif self._frames >= self.capacity:
                    self._drop_oldest_frames(self._frames - self.capacity + 1)
                if self._closed:
                    return False
                self._frames += 1
                self.max_depth = max(self.max_depth, self._frames)
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
                self._cond.notify_all()
            return item

    def close(self) -> None:
        """Wake every waiter; later puts are refused and gets raise EdgeClosed."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _drop_oldest_frames(self, count: int) -> None:
        kept: deque[Item] = deque()
        while self._items:
            item = self._items.popleft()
            if count and isinstance(item[1], Frame):
                count -= 1
                self._frames -= 1
                self.drops += 1
            else:
                kept.append(item)
        self._items = kept

    def snapshot(self) -> dict[str, Any]:
        """Depth, capacity, policy and drops, for metrics."""
        return {
            "depth": self._frames,
            "max_depth": self.max_depth,
            "capacity": self.capacity,
            "policy": self.policy.value,
            "drops": self.drops,
        }

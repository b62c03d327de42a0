"""Join by frame identity: wait until every branch of a fan-out delivered the
same ``(source_id, index)``, then merge their results into one frame.

Timestamp rule that makes this cheap and deadlock-free: each branch delivers the
frames of one source in increasing index order. So once branch B has delivered
index 10 of a source, B will never deliver index 9: a pending frame 9 that B is
missing is emitted at once with the results it has (a *partial* join). This
covers frames a branch dropped (policy ``latest``) or failed on. On live input a
timeout also bounds the wait for a branch that stalls.

Merging: the image and PTS come from the first branch (in the order the node's
``inputs`` lists them); ``results`` are the union, later branches' keys added.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from pipeline.frame import Frame


@dataclass
class _Pending:
    arrived: float
    frames: dict[str, Frame] = field(default_factory=dict)


class Joiner:
    """Collects branch outputs of one join node.

    Args:
        branches: upstream node names, in priority order for the merged image.
        timeout: seconds to wait for missing branches, or None to wait forever
            (file input, where every branch delivers every frame or says EOS).
    """

    def __init__(self, branches: list[str], timeout: float | None) -> None:
        self.branches = list(branches)
        self.timeout = timeout
        self.partial = 0
        self._pending: OrderedDict[tuple[str, int], _Pending] = OrderedDict()
        self._last: dict[str, dict[str, int]] = {b: {} for b in branches}
        self._done: set[str] = set()
        self._emitted: dict[str, int] = {}  # per source: highest index sent out
        self.late = 0

    def add(self, branch: str, frame: Frame, now: float) -> list[Frame]:
        """Take one branch's frame; return the frames that are now ready."""
        self._last[branch][frame.source_id] = frame.index
        if frame.key not in self._pending and frame.index <= self._emitted.get(frame.source_id, -1):
            self.late += 1  # its frame already left partial (timeout): never go back in time
            return []
        entry = self._pending.setdefault(frame.key, _Pending(arrived=now))
        entry.frames[branch] = frame
        return self._collect(lambda key, e: False)

    def branch_done(self, branch: str) -> list[Frame]:
        """``branch`` sent end of stream: nothing more will come from it."""
        self._done.add(branch)
        return self._collect(lambda key, e: False)

    def expire(self, now: float) -> list[Frame]:
        """Frames whose wait exceeded the timeout, emitted partial."""
        if self.timeout is None:
            return []
        return self._collect(lambda key, e: now - e.arrived >= self.timeout)

    def drain(self) -> list[Frame]:
        """Everything still pending, partial (the graph is ending)."""
        return self._collect(lambda key, e: True)

    def next_deadline(self) -> float | None:
        """Arrival time + timeout of the oldest pending frame."""
        if self.timeout is None or not self._pending:
            return None
        return next(iter(self._pending.values())).arrived + self.timeout

    def _can_still_arrive(self, branch: str, key: tuple[str, int]) -> bool:
        if branch in self._done:
            return False
        last = self._last[branch].get(key[0])
        return last is None or last < key[1]

    def _collect(self, force: Callable[[tuple[str, int], _Pending], bool]) -> list[Frame]:
        ready = []
        for key, entry in list(self._pending.items()):
            missing = [b for b in self.branches if b not in entry.frames]
            waiting = missing and not force(key, entry)
            if waiting and any(self._can_still_arrive(b, key) for b in missing):
                continue
            del self._pending[key]
            self._emitted[key[0]] = max(self._emitted.get(key[0], -1), key[1])
            if missing:
                self.partial += 1
            ready.append(self._merge(entry))
        return ready

    def _merge(self, entry: _Pending) -> Frame:
        ordered = [entry.frames[b] for b in self.branches if b in entry.frames]
        merged = ordered[0].branch_copy()
        for other in ordered[1:]:
            for key, value in other.results.items():
                merged.results.setdefault(key, value)
        return merged

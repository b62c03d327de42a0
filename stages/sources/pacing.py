"""Playing stored frames at their own pace, like a camera."""

from __future__ import annotations

import threading
import time


class Pacer:
    """Waits until each frame is due on the wall clock; the first frame is due at once.

    Args:
        stop: set from another thread to cut a wait short.
    """

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self._origin: float | None = None

    def wait(self, seconds: float) -> bool:
        """Block until media time ``seconds`` is due; False if a stop was requested."""
        if self._origin is None:
            self._origin = time.monotonic() - seconds
        return not self.stop.wait(max(self._origin + seconds - time.monotonic(), 0.0))

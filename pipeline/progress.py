"""What the user sees while a graph runs: a progress bar on files (known frame
count), a live one-line status on streams. Both go to stderr, refreshed by one
thread that sleeps between updates (no busy polling)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable

from tqdm import tqdm

from pipeline.metrics import Metrics


class ProgressDisplay:
    """Shows progress of a running graph until ``close()``.

    Args:
        metrics: the run's metrics.
        total: returns the frames expected, or None for live/unknown input (status
            line mode); asked again until known, since sources learn it when opened.
        enabled: None = only when stderr is a terminal.
        interval: seconds between refreshes.
    """

    def __init__(
        self,
        metrics: Metrics,
        total: Callable[[], int | None],
        enabled: bool | None = None,
        interval: float = 0.5,
    ) -> None:
        self.metrics = metrics
        self.total = total
        self.interval = interval
        disable = not sys.stderr.isatty() if enabled is None else not enabled
        self.bar = tqdm(
            total=None, unit="frame", dynamic_ncols=True, disable=disable, file=sys.stderr
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="progress", daemon=True)
        if not disable:
            self._thread.start()

    def _status(self) -> str:
        p50, _ = self.metrics.recent_e2e_ms()
        parts = [f"latency {p50:.0f} ms" if p50 == p50 else "latency -"]
        parts.append(f"drops {self.metrics.total_drops()}")
        for s in self.metrics.stages.values():
            connection = s.status().get("connection")
            if connection:
                parts.append(f"{s.name}: {connection}")
        rows = self.metrics.source_rows()
        if len(rows) > 1:  # several cameras: each one's rate and state
            parts += [f"{name} {row['fps']:.0f} fps {row['state']}".rstrip()
                      for name, row in rows.items()]  # fmt: skip
        return ", ".join(parts)

    def _update(self) -> None:
        if self.bar.total is None:
            self.bar.total = self.total()
        self.bar.n = self.metrics.frames_out
        self.bar.set_postfix_str(self._status(), refresh=False)
        self.bar.refresh()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._update()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        if not self.bar.disable:
            self._update()
        self.bar.close()

"""A synthetic test pattern: moving objects and a burned-in frame counter.

Deterministic for a given seed, so tests can check what arrives at the output
(the counter is readable back from the pixels; see ``read_counter``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from fractions import Fraction

import cv2
import numpy as np

from pipeline.config import register
from pipeline.frame import Frame
from pipeline.stage import Source
from stages.sources.pacing import Pacer

COUNTER_BITS = 16
"""The frame index is also burned in as black/white cells, machine-readable."""


def counter_cell(width: int) -> int:
    """Side in pixels of one counter cell for a frame ``width`` wide."""
    return max(4, min(12, width // COUNTER_BITS))


def read_counter(image: np.ndarray) -> int:
    """Frame index written by SyntheticSource into ``image`` (BGR), after any codec."""
    cell = counter_cell(image.shape[1])
    row = image[1 : cell - 1, : COUNTER_BITS * cell].mean(axis=(0, 2))
    bits = [row[i * cell + 1 : (i + 1) * cell - 1].mean() > 127 for i in range(COUNTER_BITS)]
    return sum(1 << i for i, bit in enumerate(bits) if bit)


@register("synthetic")
class SyntheticSource(Source):
    """Renders a moving test scene.

    Args:
        width: frame width in pixels.
        height: frame height in pixels.
        fps: frame rate; PTS step is 1/fps.
        frames: how many frames (None = endless).
        objects: number of moving shapes.
        live: pace frames at ``fps`` like a camera.
        seed: makes the scene reproducible.
        source_id: name in results and metrics.
    """

    def __init__(
        self,
        width: int = 1280,
        height: int = 720,
        fps: float = 30.0,
        frames: int | None = 300,
        objects: int = 4,
        live: bool = False,
        seed: int = 0,
        source_id: str = "synthetic",
    ) -> None:
        self.width, self.height = width, height
        self.fps = Fraction(fps).limit_denominator(1001)
        self.count = frames
        self.live = live
        self.source_id = source_id
        rng = np.random.default_rng(seed)
        self._pos = rng.uniform([0, 0], [width, height], size=(objects, 2))
        speed = rng.uniform(2, 8, size=(objects, 1)) * max(width, height) / 640
        angle = rng.uniform(0, 2 * np.pi, size=(objects, 1))
        self._vel = np.hstack([np.cos(angle), np.sin(angle)]) * speed
        self._size = rng.integers(max(height // 16, 8), max(height // 6, 12), size=objects)
        self._colour = rng.integers(60, 255, size=(objects, 3))
        y = np.linspace(40, 90, height, dtype=np.float32)[:, None]
        x = np.linspace(0, 30, width, dtype=np.float32)[None, :]
        base = (y + x).astype(np.uint8)
        self._background = np.dstack([base, base + 10, base + 20])
        self._stop = threading.Event()

    def expected_frames(self) -> int | None:
        return self.count

    def request_stop(self) -> None:
        self._stop.set()

    def render(self, index: int) -> np.ndarray:
        """The image of frame ``index`` (uint8 [H, W, 3] BGR)."""
        image = self._background.copy()
        pos = self._pos + self._vel * index
        span = np.array([self.width, self.height])
        pos = np.abs((pos + span) % (2 * span) - span)  # bounce off the borders
        for i, (x, y) in enumerate(pos.astype(int)):
            colour = tuple(int(c) for c in self._colour[i])
            size = int(self._size[i])
            if i % 2:
                cv2.circle(image, (x, y), size // 2, colour, -1, cv2.LINE_AA)
            else:
                cv2.rectangle(
                    image,
                    (x - size // 2, y - size // 3),
                    (x + size // 2, y + size // 3),
                    colour,
                    -1,
                )
        cell = counter_cell(self.width)
        for bit in range(COUNTER_BITS):
            value = 255 if (index >> bit) & 1 else 0
            image[:cell, bit * cell : (bit + 1) * cell] = value
        cv2.putText(
            image,
            f"frame {index}",
            (8, cell + 30),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.9,
            (255, 255, 255),
            2,
        )
        return image

    def frames(self) -> Iterator[Frame]:
        time_base = 1 / self.fps
        pacer = Pacer(self._stop)
        index = 0
        while self.count is None or index < self.count:
            if self.live and not pacer.wait(index * float(time_base)):
                return
            if self._stop.is_set():
                return
            yield Frame(self.render(index), index, Fraction(time_base), index, self.source_id)
            index += 1

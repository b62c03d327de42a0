"""The synthetic annotated world (``synthetic.generate``) as a source.

Frames are rendered on the fly from a seed, so a config can run a model on a sequence it was
never trained on (tools/train_* train on other seeds) without any file. The ground truth of
each frame rides along in ``frame.results["truth"]`` for stages that score themselves.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from fractions import Fraction

from pipeline.config import register
from pipeline.frame import Frame
from pipeline.stage import Source
from stages.sources.pacing import Pacer
from synthetic.generator import generate


@register("scene")
class SceneSource(Source):
    """Renders a synthetic scene: stuff, moving things, articulated people, pan and zoom.

    Args:
        seed: fixes the sequence (the training tools use 1000+ for training, 9000+ held out).
        frames: how many frames.
        width: frame width.
        height: frame height.
        fps: frame rate (PTS step 1/fps).
        live: pace frames at ``fps`` like a camera.
        truth: attach the ground truth (``SyntheticFrame``) as ``results["truth"]``.
        source_id: name in results and metrics.
    """

    def __init__(
        self,
        seed: int = 9000,
        frames: int = 150,
        width: int = 320,
        height: int = 320,
        fps: float = 30.0,
        live: bool = False,
        truth: bool = False,
        source_id: str = "scene",
    ) -> None:
        self.seed, self.count = seed, frames
        self.width, self.height = width, height
        self.fps = Fraction(fps).limit_denominator(1001)
        self.live, self.truth, self.source_id = live, truth, source_id
        self._stop = threading.Event()

    def expected_frames(self) -> int | None:
        return self.count

    def request_stop(self) -> None:
        self._stop.set()

    def frames(self) -> Iterator[Frame]:
        time_base = 1 / self.fps
        pacer = Pacer(self._stop)
        for rendered in generate(self.seed, self.count, self.width, self.height):
            index = rendered.index
            if self._stop.is_set() or (self.live and not pacer.wait(index * float(time_base))):
                return
            frame = Frame(rendered.image, index, Fraction(time_base), index, self.source_id)
            if self.truth:
                frame.results["truth"] = rendered
            yield frame

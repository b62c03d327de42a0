"""Running a model stage over several sources at once, recording its batches."""

from __future__ import annotations

from pipeline.frame import Frame
from pipeline.graph import Graph, NodeSpec
from pipeline.stage import Sink, Source, Stage


class Keep(Sink):
    """Keeps every frame."""

    def __init__(self) -> None:
        self.frames: list[Frame] = []

    def write(self, frame: Frame) -> None:
        self.frames.append(frame)


def run_sources(
    stage: Stage, name: str, sources: list[Source], max_frames: int | None = None
) -> tuple[dict[tuple[str, int], Frame], list[int]]:
    """Runs ``sources`` into ``stage`` (named ``name``; ``join: false``, so a batch may mix
    sources) and a sink.

    Returns:
        Every frame out, by (source id, index), and how many frames each of the stage's
        ``infer_batch`` calls took.
    """
    sizes: list[int] = []
    batched = stage.infer_batch  # type: ignore[attr-defined]

    def counted(frames: list[Frame]) -> list[Frame]:
        sizes.append(len(frames))
        return batched(frames)

    stage.infer_batch = counted  # type: ignore[attr-defined]
    keep = Keep()
    specs = [NodeSpec(f"source{i}", source) for i, source in enumerate(sources)]
    specs.append(NodeSpec(name, stage, [s.name for s in specs], join=False))
    specs.append(NodeSpec("keep", keep, [name]))
    report = Graph(specs, max_frames=max_frames).run()
    assert report.error is None, report.error
    return {(f.source_id, f.index): f for f in keep.frames}, sizes

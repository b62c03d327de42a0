"""A sequence written to disk reads back with identical ground truth."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from pipeline.frame import Frame
from stages.sinks.video_file import VideoFileSink
from synthetic.generator import generate
from synthetic.io import VIDEO, SequenceWriter, load_annotations, read_sequence


def write(directory: Path, images: bool) -> list:
    frames = list(generate(3, 12, 128, 96))
    writer = SequenceWriter(directory, {"seed": 3}, images=images)
    video = VideoFileSink(str(directory / VIDEO), crf=12, threads=1)
    video.open()
    for f in frames:
        writer.add(f)
        video.write(Frame(f.image, f.index, Fraction(1, 30), f.index, "synth"))
    video.close()
    writer.close()
    return frames


@pytest.mark.parametrize("images", [True, False])
def test_round_trip(tmp_path: Path, images: bool) -> None:
    frames = write(tmp_path, images)
    back = list(read_sequence(tmp_path))
    assert len(back) == len(frames)
    for a, b in zip(frames, back, strict=True):
        assert a.index == b.index and a.segments == b.segments
        assert np.array_equal(a.panoptic, b.panoptic) and np.array_equal(a.iuv, b.iuv)
        if images:
            assert np.array_equal(a.image, b.image)
        else:  # H.264: close, not equal
            mse = np.mean((a.image.astype(float) - b.image.astype(float)) ** 2)
            assert 10 * np.log10(255**2 / mse) > 30
    document = load_annotations(tmp_path)
    assert document["info"] == {"seed": 3}
    assert len(document["annotations"]) == sum(len(f.things()) for f in frames)
    assert {c["name"] for c in document["categories"]} >= {"person", "sky"}


def test_missing_pieces(tmp_path: Path) -> None:
    write(tmp_path, images=False)
    (tmp_path / "iuv" / "000004.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"000004\.png"):
        list(read_sequence(tmp_path))
    (tmp_path / VIDEO).write_bytes(b"")
    with pytest.raises(Exception):  # noqa: B017 - PyAV's own error for an empty file
        list(read_sequence(tmp_path))

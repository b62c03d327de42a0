"""The file source: PTS, variable frame rate, rotation, pacing, looping, bad files."""

from __future__ import annotations

import itertools
import subprocess
import time
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.errors import SourceError
from stages.sources.file import FileSource
from stages.sources.synthetic import read_counter
from tests.conftest import needs_ffmpeg, write_video


def frames_of(source: FileSource) -> list:
    source.open()
    try:
        return list(source.frames())
    finally:
        source.close()


def test_reads_every_frame_in_order_with_pts(clip: Path) -> None:
    frames = frames_of(FileSource(str(clip)))
    assert len(frames) == 30
    assert [f.index for f in frames] == list(range(30))
    assert [read_counter(f.image) for f in frames] == list(range(30))
    times = [f.time for f in frames]
    assert times == pytest.approx([i / 30 for i in range(30)], abs=1e-3)
    assert frames[0].image.shape == (120, 160, 3)


def test_variable_frame_rate_timestamps_are_kept(tmp_path: Path) -> None:
    pts = [0, 40, 70, 200, 230, 500, 520, 900]  # ms, irregular gaps
    path = write_video(tmp_path / "vfr.mp4", count=len(pts), pts=pts, time_base=Fraction(1, 1000))
    frames = frames_of(FileSource(str(path)))
    assert [f.time for f in frames] == pytest.approx([p / 1000 for p in pts], abs=1e-3)


@needs_ffmpeg
def test_rotation_metadata_is_applied_as_ffmpeg_displays_it(clip: Path, tmp_path: Path) -> None:
    rotated = tmp_path / "rotated.mp4"
    shown = tmp_path / "shown.png"
    run = {"check": True, "timeout": 60}
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(clip), "-c", "copy",
                    "-metadata:s:v:0", "rotate=90", str(rotated)], **run)  # fmt: skip
    # FFmpeg's own player path (autorotate) is the reference for what users see.
    subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(rotated), "-frames:v", "1", str(shown)], **run
    )
    reference = cv2.imread(str(shown))
    ours = frames_of(FileSource(str(rotated)))[0].image
    assert ours.shape == reference.shape == (160, 120, 3)
    assert np.abs(ours.astype(int) - reference).mean() < 3


def test_truncated_file_yields_the_frames_before_the_cut(clip: Path, tmp_path: Path) -> None:
    data = clip.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    frames = frames_of(FileSource(str(cut)))
    assert 5 < len(frames) < 30
    assert [read_counter(f.image) for f in frames] == list(range(len(frames)))


def test_realtime_paces_frames_by_pts(tmp_path: Path) -> None:
    path = write_video(tmp_path / "fast.mp4", count=10, time_base=Fraction(1, 20))
    source = FileSource(str(path), realtime=True)
    assert source.live
    t0 = time.monotonic()
    frames = frames_of(source)
    elapsed = time.monotonic() - t0
    assert len(frames) == 10
    assert 0.40 < elapsed < 10  # 9 frame steps of 50 ms; the upper bound only catches a hang


def test_loop_continues_with_increasing_pts(clip: Path) -> None:
    source = FileSource(str(clip), loop=True)
    source.open()
    frames = []
    for frame in source.frames():
        frames.append(frame)
        if len(frames) == 75:
            source.request_stop()
    source.close()
    assert len(frames) == 75
    pts = [f.pts for f in frames]
    assert all(b > a for a, b in itertools.pairwise(pts))
    assert frames[30].time == pytest.approx(1.0, abs=1e-3)  # continues one frame after 29/30 s
    assert read_counter(frames[30].image) == 0


def _written(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.mp4", "not found"),
        (lambda d: d, "directory"),
        (lambda d: _written(d / "empty.mp4", b""), "empty"),
        (lambda d: _written(d / "notes.mp4", b"hello " * 500), "not a readable video"),
    ],
    ids=["missing", "directory", "zero-byte", "not-video"],
)
def test_bad_files_raise_source_error(tmp_path: Path, make, message: str) -> None:
    path = make(tmp_path)
    with pytest.raises(SourceError, match=message):
        FileSource(str(path)).open()

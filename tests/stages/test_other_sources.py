"""Image folders, the synthetic pattern, and --source string mapping."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.errors import SourceError
from stages.sources import source_args_for
from stages.sources.images import ImageFolderSource
from stages.sources.synthetic import SyntheticSource, read_counter


def test_image_folder_plays_in_name_order_and_skips_unreadable(tmp_path: Path) -> None:
    for i in (2, 0, 1):
        cv2.imwrite(str(tmp_path / f"shot_{i}.png"), np.full((20, 30, 3), i * 50, np.uint8))
    (tmp_path / "shot_3.png").write_bytes(b"not a png")
    (tmp_path / "notes.txt").write_text("ignored")
    source = ImageFolderSource(str(tmp_path), fps=10)
    source.open()
    assert source.expected_frames() == 4
    frames = list(source.frames())
    assert [int(f.image.mean()) for f in frames] == [0, 50, 100]
    assert [f.time for f in frames] == pytest.approx([0.0, 0.1, 0.2])


def test_image_glob_and_empty_glob(tmp_path: Path) -> None:
    for name in ("a.png", "b.jpg"):
        cv2.imwrite(str(tmp_path / name), np.zeros((8, 8, 3), np.uint8))
    source = ImageFolderSource(str(tmp_path / "*.png"))
    source.open()
    assert len(list(source.frames())) == 1
    with pytest.raises(SourceError, match="no images found"):
        ImageFolderSource(str(tmp_path / "*.bmp")).open()


def test_synthetic_is_deterministic_moving_and_counts() -> None:
    a = SyntheticSource(width=320, height=240, frames=5, seed=3)
    b = SyntheticSource(width=320, height=240, frames=5, seed=3)
    frames = list(a.frames())
    assert len(frames) == 5
    assert np.array_equal(frames[2].image, b.render(2))
    assert [read_counter(f.image) for f in frames] == list(range(5))
    assert np.abs(frames[0].image.astype(int) - frames[4].image).mean() > 1  # objects moved
    assert read_counter(a.render(54321)) == 54321


def test_live_synthetic_stops_on_request() -> None:
    source = SyntheticSource(width=64, height=48, fps=10, frames=None, live=True)
    got = []
    for frame in source.frames():
        got.append(frame)
        if len(got) == 3:
            source.request_stop()
    assert len(got) == 3


@pytest.mark.parametrize(
    ("uri", "kind"),
    [
        ("0", "camera"),
        ("/dev/video2", "camera"),
        ("rtsp://cam.local/1", "stream"),
        ("http://host/live.m3u8", "stream"),
        ("udp://@:5000", "stream"),
        ("synthetic", "synthetic"),
        ("clip.mp4", "file"),
        ("shots/*.png", "images"),
    ],
)
def test_source_strings_map_to_kinds(uri: str, kind: str) -> None:
    assert source_args_for(uri)["kind"] == kind


def test_synthetic_size_in_source_string() -> None:
    assert source_args_for("synthetic:640x360") == {
        "kind": "synthetic",
        "width": 640,
        "height": 360,
    }


def test_scene_source_renders_the_synthetic_world() -> None:
    from stages.sources.scene import SceneSource
    from synthetic.generator import generate

    source = SceneSource(seed=5, frames=3, width=96, height=64, truth=True)
    frames = list(source.frames())
    expected = list(generate(5, 3, 96, 64))
    assert [f.index for f in frames] == [0, 1, 2] and source.expected_frames() == 3
    for frame, truth in zip(frames, expected, strict=True):
        assert np.array_equal(frame.image, truth.image)
        assert frame.results["truth"].segments == truth.segments

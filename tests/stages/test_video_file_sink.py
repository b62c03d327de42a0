"""The video file sink: H.264 yuv420p, faststart, source PTS, finalised on close."""

from __future__ import annotations

import itertools
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from pipeline.errors import SinkError
from pipeline.frame import Frame
from stages.sinks.video_file import VideoFileSink, pick_encoder
from stages.sources.synthetic import SyntheticSource, read_counter
from tests.conftest import ffprobe_frame_count, needs_ffprobe, read_video


def write_frames(sink: VideoFileSink, pts: list[int], size=(320, 240), tb=Fraction(1, 1000)):
    scene = SyntheticSource(width=size[0], height=size[1])
    sink.open()
    for i, p in enumerate(pts):
        sink.write(Frame(scene.render(i), p, tb, i, "test"))
    sink.close()


def test_writes_h264_yuv420p_with_source_timestamps(tmp_path: Path) -> None:
    pts = [0, 33, 100, 133, 400, 433, 466, 1000]
    path = tmp_path / "out.mp4"
    write_frames(VideoFileSink(str(path)), pts)
    times, images, codec = read_video(path)
    assert codec == "h264"
    assert times == pytest.approx([p / 1000 for p in pts], abs=1e-3)
    assert [read_counter(im) for im in images] == list(range(len(pts)))
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.pix_fmt == "yuv420p"


def test_faststart_puts_the_index_before_the_media(tmp_path: Path) -> None:
    path = tmp_path / "out.mp4"
    write_frames(VideoFileSink(str(path)), list(range(0, 300, 33)))
    data = path.read_bytes()
    assert 0 < data.find(b"moov") < data.find(b"mdat")


@needs_ffprobe
def test_ffprobe_decodes_every_frame(tmp_path: Path) -> None:
    path = tmp_path / "out.mp4"
    write_frames(VideoFileSink(str(path)), list(range(0, 1000, 40)))
    assert ffprobe_frame_count(path) == 25


def test_odd_sizes_are_cropped_and_other_sizes_resized(tmp_path: Path) -> None:
    path = tmp_path / "odd.mkv"
    sink = VideoFileSink(str(path))
    sink.open()
    sink.write(Frame(np.zeros((121, 161, 3), np.uint8), 0, Fraction(1, 30), 0, "a"))
    sink.write(Frame(np.full((240, 320, 3), 200, np.uint8), 1, Fraction(1, 30), 1, "a"))
    sink.close()
    _, images, _ = read_video(path)
    assert [im.shape for im in images] == [(120, 160, 3)] * 2
    assert images[1].mean() == pytest.approx(200, abs=4)


def test_non_increasing_pts_are_nudged_not_rejected(tmp_path: Path) -> None:
    path = tmp_path / "dup.mp4"
    write_frames(VideoFileSink(str(path)), [0, 10, 10, 5, 20])
    times, _, _ = read_video(path)
    assert len(times) == 5
    assert all(b > a for a, b in itertools.pairwise(times))


def test_auto_prefers_libx264_and_unknown_codec_is_a_sink_error() -> None:
    assert pick_encoder("auto") == "libx264"
    with pytest.raises(SinkError, match="no usable video encoder"):
        pick_encoder("no_such_codec")


def test_close_without_frames_writes_nothing(tmp_path: Path) -> None:
    sink = VideoFileSink(str(tmp_path / "never.mp4"))
    sink.open()
    sink.close()
    assert not (tmp_path / "never.mp4").exists()

"""Finite network inputs against real HTTP servers on 127.0.0.1: an MP4 and a VOD HLS
playlist (FFmpeg's HLS muxer) play once, whole, with their own timestamps, and the run
ends; a connection cut part-way resumes where it stopped; one that keeps failing gives up in
one line; a live HLS playlist that keeps growing is live and reconnects after an outage."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import av
import pytest

from pipeline.config import build_graph, parse_config
from pipeline.edges import Policy
from pipeline.errors import StreamError
from stages.sources.stream import StreamSource
from stages.sources.synthetic import read_counter
from tests.conftest import ROOT, ffprobe_frame_count, free_port, read_video, wait_until
from tests.stages.http_server import FolderServer, GrowingPlaylist
from tests.stages.stream_server import encode_clip

FRAMES = 150  # 6 s at 25 fps, a keyframe every second


@dataclass(frozen=True)
class Recording:
    folder: Path  # clip.mp4, big.mp4, vod/index.m3u8 (2 s segments), live/index*.ts (1 s)

    def times(self, name: str) -> list[float]:
        """The input's own frame times, read straight from the file."""
        with av.open(str(self.folder / name)) as container:
            stream = container.streams.video[0]
            return [float(f.pts * stream.time_base) for f in container.decode(stream)]


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True, timeout=60)


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Recording:
    folder = tmp_path_factory.mktemp("recording")
    clip = encode_clip(folder / "clip.ts", seconds=FRAMES / 25)  # frame counters burned in
    # As web pages serve MP4s: the index (moov) first, so a player reads straight through.
    ffmpeg("-i", str(folder / "clip.ts"), "-c", "copy", "-movflags", "+faststart",
           str(folder / "clip.mp4"))  # fmt: skip
    # Noisy and lossless, 3.6 MB: big enough that FFmpeg reaches a point past the loopback
    # socket's buffers with a range request rather than by reading on.
    lossless = ["-c:v", "libx264", "-preset", "ultrafast", "-qp", "0", "-g", "25", "-bf", "0"]
    ffmpeg("-i", str(folder / "clip.ts"), "-vf", "noise=alls=30:allf=t+u", *lossless,
           str(folder / "big.mp4"))  # fmt: skip
    for name, seconds, kind in (("vod", "2", ["-hls_playlist_type", "vod"]), ("live", "1", [])):
        (folder / name).mkdir()
        ffmpeg("-i", str(folder / "clip.ts"), "-c", "copy", "-f", "hls", "-hls_time", seconds,
               "-hls_list_size", "0", *kind, str(folder / name / "index.m3u8"))  # fmt: skip
    assert len(clip.offsets) == FRAMES
    return Recording(folder)


@pytest.fixture
def served(recording: Recording) -> Iterator[FolderServer]:
    server = FolderServer(recording.folder)
    yield server
    server.stop()


def read_all(source: StreamSource) -> list:
    source.open()
    try:
        return list(source.frames())
    finally:
        source.close()


def counters(images: list) -> list[int]:
    return [read_counter(image) for image in images]


# ---- live or finite ---------------------------------------------------------------------


def test_live_or_finite_is_read_from_the_input(served: FolderServer, recording: Recording) -> None:
    for name in ("clip.mp4", "vod/index.m3u8"):
        source = StreamSource(served.url(name))
        source.open()
        assert not source.live and source.expected_frames() == FRAMES  # the progress bar's
        source.close()
    growing = GrowingPlaylist(recording.folder / "live", seconds=1.0)
    try:
        source = StreamSource(growing.url("live.m3u8"))
        source.open()
        assert source.live and source.expected_frames() is None
        source.close()
    finally:
        growing.stop()
    assert StreamSource("rtsp://127.0.0.1:9/x").live  # known from the protocol, unopened
    assert StreamSource(served.url("clip.mp4"), live=True).live  # said, not learnt
    said = StreamSource(served.url("clip.mp4"), live=True)
    said.open()
    assert said.live
    said.close()


@pytest.mark.parametrize("name", ["clip.mp4", "vod/index.m3u8"])
def test_a_finite_input_gives_each_frame_once_with_its_timestamps(
    served: FolderServer, recording: Recording, name: str
) -> None:
    frames = read_all(StreamSource(served.url(name)))
    assert counters([f.image for f in frames]) == list(range(FRAMES))
    assert [float(f.pts * f.time_base) for f in frames] == recording.times(name)
    assert [f.index for f in frames] == list(range(FRAMES))


def test_the_edge_after_a_finite_stream_blocks_and_after_a_live_one_keeps_the_latest(
    served: FolderServer, recording: Recording, tmp_path: Path
) -> None:
    def policy_after(url: str) -> Policy:
        graph = build_graph(parse_config({"pipeline": {"max_frames": 5}, "stages": [
            {"name": "source", "kind": "stream", "url": url},
            {"name": "out", "kind": "video_file", "path": str(tmp_path / "o.mp4")},
        ]}))  # fmt: skip
        assert graph.run().error is None
        return graph.nodes["out"].inbound.policy

    assert policy_after(served.url("clip.mp4")) is Policy.BLOCK
    growing = GrowingPlaylist(recording.folder / "live", seconds=1.0)
    try:
        assert policy_after(growing.url("live.m3u8")) is Policy.LATEST
    finally:
        growing.stop()


# ---- run.py end to end --------------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "run.py"), str(ROOT / "configs" / "transcode.yaml"), *args,
         "--no-progress"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip


@pytest.fixture(scope="module")
def http_server(recording: Recording) -> Iterator[str]:
    """``python -m http.server`` on the recording's folder, as a user would start it (no
    range requests); yields its base URL."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
         "--directory", str(recording.folder)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}/"
    try:
        assert wait_until(lambda: port_open(port), 20)
        yield base
    finally:
        server.terminate()
        server.wait(10)


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize("name", ["clip.mp4", "vod/index.m3u8"])
def test_run_py_plays_a_recording_over_http_once_and_exits_0(
    http_server: str, recording: Recording, tmp_path: Path, name: str
) -> None:
    out, metrics = tmp_path / "out.mp4", tmp_path / "metrics.json"
    result = run_cli("--source", http_server + name, "--output", str(out),
                     "--metrics-json", str(metrics))  # fmt: skip
    assert result.returncode == 0, result.stderr
    times, images, _ = read_video(out)
    assert counters(images) == list(range(FRAMES))
    assert times == pytest.approx(recording.times(name), abs=1e-3)
    assert json.loads(metrics.read_text())["drops"] == 0


# ---- a connection lost part-way --------------------------------------------------------------


def test_a_cut_connection_resumes_where_it_stopped(recording: Recording) -> None:
    size = (recording.folder / "big.mp4").stat().st_size
    server = FolderServer(recording.folder, cut_at=size // 2)
    try:
        # One connection reads the frames (no short probe opened first and left, whose
        # response the socket buffers could carry past the cut before it was closed).
        source = StreamSource(server.url("big.mp4"), backoff_initial=0.1, low_latency=False)
        frames = read_all(source)
    finally:
        server.stop()
    assert server.cut_count == 1 and source.status()["reconnects"] == 1
    assert counters([f.image for f in frames]) == list(range(FRAMES))  # each once, in order
    assert [float(f.pts * f.time_base) for f in frames] == recording.times("big.mp4")
    # the new connection asked for the bytes from the keyframe before the cut (a range
    # request mid-file, at most a second = a sixth of the clip back), not for all again
    after_cut = [start for _, start, cuts in server.requests if cuts == 1]
    assert any(size // 2 - size // 4 < start < size // 2 for start in after_cut), after_cut


def test_a_recording_that_keeps_failing_gives_up_in_one_line(
    recording: Recording, tmp_path: Path
) -> None:
    size = (recording.folder / "big.mp4").stat().st_size
    server = FolderServer(recording.folder, cut_at=size // 2, cuts=-1)
    out = tmp_path / "out.mp4"
    try:
        result = run_cli("--source", server.url("big.mp4"), "--output", str(out),
                         "--set", "source.max_reconnects=2",
                         "--set", "source.backoff_initial=0.1")  # fmt: skip
    finally:
        server.stop()
    assert result.returncode == 4, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "not back after 2 attempts" in errors[0], result.stderr
    assert "Traceback" not in result.stderr and result.stderr.splitlines()[-1] == errors[0]
    assert result.stderr.count(" lost: ") == 3  # the first connection and both attempts
    kept = ffprobe_frame_count(out)  # what came before the cut is in a playable file
    assert 0 < kept < FRAMES
    assert counters(read_video(out)[1]) == list(range(kept))


def test_a_recording_ending_early_without_reconnect_keeps_what_arrived(
    recording: Recording,
) -> None:
    size = (recording.folder / "big.mp4").stat().st_size
    server = FolderServer(recording.folder, cut_at=size // 2)
    try:
        source = StreamSource(server.url("big.mp4"), reconnect=False, low_latency=False)
        frames = read_all(source)
    finally:
        server.stop()
    assert 0 < len(frames) < FRAMES
    assert counters([f.image for f in frames]) == list(range(len(frames)))


def test_a_finite_input_with_no_picture_is_an_error(tmp_path: Path) -> None:
    ffmpeg("-f", "lavfi", "-i", "anullsrc", "-t", "1", "-c:a", "aac", str(tmp_path / "a.mp4"))
    server = FolderServer(tmp_path)
    try:
        with pytest.raises(StreamError, match="no video"):
            read_all(StreamSource(server.url("a.mp4")))
    finally:
        server.stop()


# ---- live HLS ------------------------------------------------------------------------------


def test_a_growing_live_playlist_runs_on_and_reconnects(recording: Recording) -> None:
    folder = recording.folder / "live"
    growing = GrowingPlaylist(folder, seconds=1.0)
    source = StreamSource(growing.url("live.m3u8"), read_timeout=2.0, backoff_initial=0.2,
                          backoff_max=0.5)  # fmt: skip
    source.open()
    got: list = []

    def read() -> None:
        for frame in source.frames():
            got.append(frame)

    def got_so_far() -> int:
        return len(got)

    reader = threading.Thread(target=read, daemon=True)
    try:
        reader.start()
        assert source.live
        assert wait_until(lambda: got_so_far() >= 25, 15)
        time.sleep(1.5)
        # at most what the playlist lists so far: played as it grows, not to an end
        assert 25 <= got_so_far() <= 25 * growing.listed()
        port = growing.port
        growing.stop()  # an outage
        time.sleep(1.0)
        before = got_so_far()
        growing = GrowingPlaylist(folder, seconds=1.0, port=port)  # a restarted encoder
        assert wait_until(lambda: source.status()["reconnects"] >= 1, 20)
        assert wait_until(lambda: got_so_far() > before + 10, 15)
        assert reader.is_alive()  # a live input runs on
    finally:
        source.request_stop()
        reader.join(10)
        source.close()
        growing.stop()
    pts = [f.pts for f in got]
    assert all(b > a for a, b in pairwise(pts))  # rebased across the outage: never back

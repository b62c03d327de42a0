"""Crash-safe video files: a killed writer leaves a file that plays up to its last fragment,
and a restarted one writes a new file, never over the old one."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import signal
import struct
import subprocess
import sys
import threading
from fractions import Fraction
from pathlib import Path

import av
import pytest

from pipeline.config import build_graph, build_stage, parse_config
from pipeline.errors import ConfigError
from pipeline.frame import Frame
from stages.sinks.durable import claim, numbered
from stages.sinks.video_file import CRASH_SAFE_KEYFRAME_SECONDS, VideoFileSink
from stages.sources.synthetic import SyntheticSource, read_counter
from tests.conftest import ROOT, ffprobe_frame_count, needs_ffprobe, read_video, wait_until

WRITER = ROOT / "tests" / "stages" / "crash_safe_writer.py"
FPS = 25


def boxes(path: Path) -> list[str]:
    """The file's complete top-level MP4 boxes, in order (a box cut short by a kill is left out)."""
    data = path.read_bytes()
    found, offset = [], 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        if size == 1:
            size = struct.unpack(">Q", data[offset + 8 : offset + 16])[0]
        if size < 8 or offset + size > len(data):
            break
        found.append(kind.decode("latin-1"))
        offset += size
    return found


def counters(path: Path) -> tuple[list[int], list[float]]:
    """The burned-in frame counter of every frame PyAV decodes, and the frames' times (s)."""
    times, images, codec = read_video(path)
    assert codec == "h264"
    return [read_counter(image) for image in images], times


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write(sink: VideoFileSink, pts: list[int], time_base: Fraction = Fraction(1, FPS)) -> None:
    scene = SyntheticSource(width=160, height=120)
    for index, stamp in enumerate(pts):
        sink.write(Frame(scene.render(index), stamp, time_base, index, "test"))


class Writer:
    """tests/stages/crash_safe_writer.py in a child process, its JSON lines collected."""

    def __init__(self, path: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(WRITER), str(path), "--fps", str(FPS), *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        )  # fmt: skip
        self.reports: list[dict] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:  # type: ignore[union-attr]
            try:
                self.reports.append(json.loads(line))
            except json.JSONDecodeError:  # only the line the kill cut short
                continue

    def last(self, key: str) -> int:
        return self.reports[-1][key] if self.reports else 0

    def kill(self) -> str:
        """SIGKILL, then every line the child printed before it died; its stderr."""
        self.proc.send_signal(signal.SIGKILL)
        return self.finish()

    def finish(self) -> str:
        """Wait for the child to end (generous: only a hang fails); its stderr."""
        _, stderr = self.proc.communicate(timeout=300)
        self._reader.join(timeout=60)
        return stderr


@needs_ffprobe
def test_a_killed_writer_leaves_every_fragment_and_a_restart_writes_a_new_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "cam.mp4"
    keyframe = round(CRASH_SAFE_KEYFRAME_SECONDS * FPS)  # frames per fragment: 50
    child = Writer(path)
    try:  # killed halfway through its third fragment
        wait_until(
            lambda: child.last("muxed") >= 2.5 * keyframe or child.proc.poll() is not None, 300
        )
    finally:
        stderr = child.kill()
    assert child.proc.returncode == -signal.SIGKILL, stderr  # running until killed
    last = child.reports[-1]
    assert last["file"] == str(path) and last["flushed"] >= 2 * keyframe

    found, times = counters(path)
    held = len(found)
    # every frame up to the last complete fragment, in order, none missing
    assert found == list(range(held))
    assert ffprobe_frame_count(path) == held
    assert all(b > a for a, b in itertools.pairwise(times))
    # the source's spacing (FFmpeg's reader shifts the whole file by the B-frame delay)
    assert times[0] < 0.5
    assert times == pytest.approx([times[0] + i / FPS for i in range(held)], abs=1e-3)
    # nothing the writer had handed to the kernel is lost; at most the fragment being filled
    # (one keyframe interval) and what was still in the encoder are
    assert held >= last["flushed"]
    assert held >= last["muxed"] - keyframe
    assert held <= last["written"] + 1  # (a frame may be written after the last line)
    kinds = boxes(path)
    assert kinds[:2] == ["ftyp", "moov"] and "moof" in kinds and "mfra" not in kinds
    print(
        f"killed after writing {last['written']} frames ({last['muxed']} out of the encoder, "
        f"{last['flushed']} in complete fragments); the file holds {held}; keyframe every "
        f"{keyframe} frames"
    )

    # a restart with the same path: a new file beside it, the first one untouched
    before = sha256(path)
    again = Writer(path, "--frames", "30")
    stderr = again.finish()
    assert again.proc.returncode == 0, stderr
    second = tmp_path / "cam-1.mp4"
    assert again.reports[-1]["file"] == str(second)
    assert sha256(path) == before
    assert counters(second)[0] == list(range(30))


def test_fragments_reach_the_file_as_they_are_cut(tmp_path: Path) -> None:
    path = tmp_path / "cam.mp4"
    sink = VideoFileSink(str(path), fragmented=True, keyframe_seconds=1.0)
    sink.open()
    scene = SyntheticSource(width=160, height=120)
    seen = []
    try:  # until the third fragment is out (the encoder holds a few frames back)
        for index in itertools.takewhile(lambda _: sink.frames_flushed < 3 * FPS, range(1000)):
            before = sink.frames_flushed
            sink.write(Frame(scene.render(index), index, Fraction(1, FPS), index, "test"))
            if sink.frames_flushed != before:
                # read by another reader while the writer still has it open
                seen.append((sink.frames_flushed, counters(path)[0]))
    finally:
        sink.close()
    assert [flushed for flushed, _ in seen] == [FPS, 2 * FPS, 3 * FPS]
    assert all(found == list(range(flushed)) for flushed, found in seen)
    found, _ = counters(path)
    assert found == list(range(sink.frames_written)) and sink.frames_flushed == len(found)
    kinds = boxes(path)
    assert kinds[:2] == ["ftyp", "moov"] and kinds.count("moof") == 4  # appended, no faststart


def test_keyframes_follow_source_time_not_frame_count(tmp_path: Path) -> None:
    path = tmp_path / "vfr.mp4"
    # 10 fps for 3 s, a 2.5 s gap, then 25 fps: a keyframe every second of timestamps
    pts = [i * 100 for i in range(30)] + [5500 + i * 40 for i in range(50)]
    sink = VideoFileSink(str(path), fragmented=True, keyframe_seconds=1.0)
    sink.open()
    write(sink, pts, Fraction(1, 1000))
    sink.close()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        keys = sorted(
            round(float(p.pts * p.time_base) * 1000)
            for p in container.demux(stream)
            if p.pts is not None and p.is_keyframe
        )
    shift = keys[0]  # FFmpeg's reader shows the file later by the B-frame delay
    assert [k - shift for k in keys] == [0, 1000, 2000, 5500, 6500]


def test_an_existing_file_is_never_overwritten(tmp_path: Path, caplog) -> None:
    path = tmp_path / "cam.mp4"
    path.write_bytes(b"what the killed process left")
    (tmp_path / "cam-1.mp4").write_bytes(b"and the one before")
    sink = VideoFileSink(str(path), fragmented=True)
    sink.open()
    with caplog.at_level("WARNING", logger="framegraph"):
        write(sink, list(range(10)))
    sink.close()
    assert sink.files == [tmp_path / "cam-2.mp4"]
    assert f"{path} exists; writing {tmp_path / 'cam-2.mp4'}" in caplog.text
    assert path.read_bytes() == b"what the killed process left"
    assert (tmp_path / "cam-1.mp4").read_bytes() == b"and the one before"
    assert counters(tmp_path / "cam-2.mp4")[0] == list(range(10))


def test_racing_writers_never_share_a_name(tmp_path: Path) -> None:
    path = tmp_path / "cam.mp4"
    start = threading.Barrier(8)
    taken: list[Path] = []

    def race() -> None:
        start.wait()
        _, name, fd = claim(lambda n: numbered(path, n))
        os.close(fd)
        taken.append(name)

    threads = [threading.Thread(target=race) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(taken, key=str) == sorted([numbered(path, n) for n in range(8)], key=str)


def test_the_plain_mode_still_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "out.mp4"
    path.write_bytes(b"old")
    sink = VideoFileSink(str(path))
    sink.open()
    write(sink, list(range(5)))
    sink.close()
    assert sink.files == [path] and counters(path)[0] == list(range(5))
    assert 0 < path.read_bytes().find(b"moov") < path.read_bytes().find(b"mdat")  # faststart
    # and numbers on request
    sink = VideoFileSink(str(path), on_exists="number")
    sink.open()
    write(sink, list(range(5)))
    sink.close()
    assert sink.files == [tmp_path / "out-1.mp4"] and counters(sink.files[0])[0] == list(range(5))


def test_segments_of_a_set_length_continue_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "cam.mp4"
    for run in range(2):
        sink = VideoFileSink(str(path), segment_seconds=1.0)
        sink.open()
        write(sink, list(range(int(2.5 * FPS))))  # 2.5 s: three segments
        sink.close()
        indices = range(3 * run, 3 * run + 3)
        assert sink.files == [tmp_path / f"cam-{i:05d}.mp4" for i in indices]
        found = [counters(file) for file in sink.files]
        assert [c for c, _ in found] == [list(range(0, 25)), list(range(25, 50)),
                                         list(range(50, 62))]  # fmt: skip
        # each segment is a file of its own: its own timestamps from 0, a keyframe first
        for _, times in found:
            assert times == pytest.approx([i / FPS for i in range(len(times))], abs=1e-3)


def test_fragmented_segments_are_crash_safe_too(tmp_path: Path) -> None:
    path = tmp_path / "cam.mp4"
    sink = VideoFileSink(str(path), fragmented=True, keyframe_seconds=0.5, segment_seconds=2.0)
    sink.open()
    write(sink, list(range(3 * FPS)))
    sink.close()
    assert sink.files == [tmp_path / "cam-00000.mp4", tmp_path / "cam-00001.mp4"]
    assert [counters(f)[0] for f in sink.files] == [list(range(50)), list(range(50, 75))]
    assert boxes(sink.files[0]).count("moof") == 4


def test_per_source_outputs_never_overwrite_either(tmp_path: Path) -> None:
    (tmp_path / "a.mp4").write_bytes(b"a's last run")
    synthetic = {"kind": "synthetic", "width": 160, "height": 120, "frames": 12}
    graph = build_graph(parse_config({"stages": [
        {"name": "cams", "kind": "sources", "sources": {"a": synthetic, "b": dict(synthetic)}},
        {"name": "video", "kind": "video_file", "path": str(tmp_path / "{source}.mp4"),
         "fragmented": True},
    ]}))  # fmt: skip
    assert graph.run().error is None
    assert (tmp_path / "a.mp4").read_bytes() == b"a's last run"
    assert counters(tmp_path / "a-1.mp4")[0] == list(range(12))
    assert counters(tmp_path / "b.mp4")[0] == list(range(12))


def test_crash_safe_options_are_checked_when_the_stage_is_built() -> None:
    with pytest.raises(ConfigError, match="fragmented needs an MP4 file"):
        build_stage("video_file", {"path": "out.mkv", "fragmented": True})
    with pytest.raises(ConfigError, match="keyframe_seconds must be above 0"):
        build_stage("video_file", {"path": "out.mp4", "keyframe_seconds": 0})
    with pytest.raises(ConfigError, match="on_exists"):
        build_stage("video_file", {"path": "out.mp4", "on_exists": "append"})


def test_a_sink_without_frames_claims_no_name(tmp_path: Path) -> None:
    sink = VideoFileSink(str(tmp_path / "never.mp4"), fragmented=True)
    sink.open()
    sink.close()
    assert list(tmp_path.iterdir()) == []


@needs_ffprobe
def test_run_py_killed_leaves_a_playable_file_and_a_restart_a_new_one(tmp_path: Path) -> None:
    path = tmp_path / "cam.mp4"
    command = [sys.executable, str(ROOT / "run.py"), str(ROOT / "configs" / "transcode.yaml"),
               "--source", f"synthetic:320x240@{FPS}", "--set", f"out.path={path}",
               "--set", "out.fragmented=true", "--no-progress"]  # fmt: skip
    proc = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:  # two whole fragments in the file
        assert wait_until(
            lambda: (path.is_file() and boxes(path).count("moof") >= 2) or proc.poll() is not None,
            300,
            step=0.2,
        )
        assert proc.poll() is None, proc.communicate()[1]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=300)
    found, _ = counters(path)
    assert len(found) >= 2 * CRASH_SAFE_KEYFRAME_SECONDS * FPS
    assert found == list(range(len(found)))
    assert ffprobe_frame_count(path) == len(found)

    before = sha256(path)
    result = subprocess.run(
        [*command, "--max-frames", "20"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert f"{path} exists; writing {tmp_path / 'cam-1.mp4'}" in result.stderr
    assert sha256(path) == before
    assert counters(tmp_path / "cam-1.mp4")[0] == list(range(20))

"""Media limits on every input: frame sizes capped (``max_pixels``) when an input opens and
per frame, media bombs refused in one line by run.py without the memory they ask for, a
camera that stops delivering ends in an error, decode errors counted and skipped without a
reconnect, and ``loop`` that cannot spin on a file that yields nothing."""

from __future__ import annotations

import inspect
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np
import pytest

from pipeline.config import MAX_PIXELS, build_graph, parse_config
from pipeline.errors import SourceError, StreamError
from stages.sources import camera as camera_module
from stages.sources import images as images_module
from stages.sources.camera import CameraSource
from stages.sources.file import FileSource
from stages.sources.group import SourceGroup
from stages.sources.images import ImageFolderSource
from stages.sources.stream import StreamSource
from tests.conftest import ROOT, write_video
from tests.stages.http_server import FolderServer
from tests.stages.media_bombs import flat_jpeg, jpeg_bomb, png_bomb, write_mjpeg

TRANSCODE = str(ROOT / "configs" / "transcode.yaml")
RSS_LIMIT = 2**30
"""What a bomb run may take at its peak, all of the process (importing torch is ~0.5 GB)."""


def read_all(source: FileSource | StreamSource | ImageFolderSource) -> list:
    source.open()
    try:
        return list(source.frames())
    finally:
        source.close()


@pytest.fixture(scope="module")
def growing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MPEG-TS file whose picture grows part-way: 10 frames of 64x48, then 10 of
    320x240 (two files back to back; the second brings its own SPS)."""
    folder = tmp_path_factory.mktemp("growing")
    small = write_video(folder / "small.ts", count=10, size=(64, 48))
    large = write_video(folder / "large.ts", count=10, size=(320, 240))
    path = folder / "growing.ts"
    path.write_bytes(small.read_bytes() + large.read_bytes())
    return path


@pytest.fixture(scope="module")
def corrupt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MJPEG video of 5 frames whose 2nd packet is garbage (zeros)."""
    good = flat_jpeg(64, 48)
    packets = [good, bytes(len(good)), good, good, good]
    return write_mjpeg(tmp_path_factory.mktemp("corrupt") / "corrupt.mkv", packets, 64, 48)


# ---- max_pixels: files ------------------------------------------------------------------


def test_the_default_limit_is_4096_squared_on_every_input() -> None:
    assert MAX_PIXELS == 4096 * 4096
    for cls in (FileSource, StreamSource, ImageFolderSource, CameraSource, SourceGroup):
        default = inspect.signature(cls).parameters["max_pixels"].default
        assert default == MAX_PIXELS, cls.__name__


def test_a_file_declaring_more_than_max_pixels_fails_when_it_opens(clip: Path) -> None:
    source = FileSource(str(clip), max_pixels=100 * 100)  # the clip is 160x120
    with pytest.raises(SourceError) as info:
        source.open()
    message = str(info.value)
    assert "160x120" in message and "max_pixels=10000" in message and "\n" not in message
    assert source._container is None  # nothing left open
    assert len(read_all(FileSource(str(clip), max_pixels=160 * 120))) == 30  # at the limit


def test_a_file_growing_part_way_fails_at_its_first_large_frame(growing: Path) -> None:
    source = FileSource(str(growing), max_pixels=100 * 100)
    source.open()
    got = []
    with pytest.raises(SourceError, match="320x240"):
        for frame in source.frames():
            got.append(frame.image.shape)
    source.close()
    assert got == [(48, 64, 3)] * 10  # every small frame, none of the large ones
    assert len(read_all(FileSource(str(growing)))) == 20  # within the default: all of them


def test_max_pixels_is_a_pipeline_setting_and_a_source_key(clip: Path) -> None:
    def sources(pipeline: dict, **keys: object) -> tuple[FileSource, SourceGroup]:
        stages = [
            {"name": "file", "kind": "file", "path": str(clip), **keys},
            {"name": "group", "kind": "sources", "sources": {"a": str(clip),
             "b": {"kind": "file", "path": str(clip), "max_pixels": 7}}},
            {"name": "out", "kind": "discard", "inputs": ["file", "group"], "join": False},
        ]  # fmt: skip
        graph = build_graph(parse_config({"pipeline": pipeline, "stages": stages}))
        return graph.nodes["file"].stage, graph.nodes["group"].stage  # type: ignore[return-value]

    file, group = sources({})
    assert file.max_pixels == MAX_PIXELS == group.inputs["a"].source.max_pixels
    file, group = sources({"max_pixels": 1000})
    assert file.max_pixels == 1000 == group.max_pixels == group.inputs["a"].source.max_pixels
    assert group.inputs["b"].source.max_pixels == 7  # an input's own setting wins
    file, _ = sources({"max_pixels": 1000}, max_pixels=None)
    assert file.max_pixels is None  # no limit, asked for per source


# ---- media bombs through run.py ------------------------------------------------------------


PEAK_RSS = """
import atexit, runpy, sys
out, script, *rest = sys.argv[1:]
def report():  # VmHWM: this process's own peak since exec
    status = open("/proc/self/status").read()
    peak = next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))
    open(out, "w").write(peak)
atexit.register(report)
sys.argv = [script, *rest]
runpy.run_path(script, run_name="__main__")
"""
"""Runs a script and writes its peak resident KiB to a file at exit. Not ``wait4``'s
ru_maxrss: Linux counts there the memory of the (v)forked copy of the parent before exec,
so under a pytest process holding gigabytes of models every child looks gigabytes big."""


def run_measured(*args: str, tmp: Path, timeout: float = 120) -> tuple[int, str, int]:
    """run.py with ``args``: (exit code, stderr, the child's own peak resident bytes)."""
    report = tmp / "peak_kib"
    wrapper = [sys.executable, "-c", PEAK_RSS, str(report)]
    proc = subprocess.run([*wrapper, str(ROOT / "run.py"), *args], cwd=ROOT, timeout=timeout,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    return proc.returncode, proc.stderr, int(report.read_text()) * 1024


@pytest.mark.parametrize(
    ("side", "says"),
    [
        # The acceptance case. FFmpeg itself refuses pictures this large (the container's
        # size is dropped when it opens and every packet fails to decode): the error says so.
        (16384, "it declares no frame size that FFmpeg accepts"),
        # Just inside what FFmpeg decodes: a real 768 MB BGR frame per 1 MB packet, refused
        # from the size the file declares, before anything is decoded.
        (16000, "16000x16000 (256000000 pixels), over max_pixels=16777216"),
    ],
)
def test_a_media_bomb_is_one_line_input_error_within_1_gb(
    tmp_path: Path, side: int, says: str
) -> None:
    bomb = jpeg_bomb(tmp_path / "bomb.mkv", side, side)
    assert bomb.stat().st_size < 3 * 2**20
    code, stderr, peak = run_measured(
        TRANSCODE, "--source", str(bomb), "--output", str(tmp_path / "out.mp4"), tmp=tmp_path
    )
    lines = stderr.splitlines()
    assert code == 3, stderr
    assert len(lines) == 1 and lines[0].startswith("error:") and says in lines[0], stderr
    assert peak < RSS_LIMIT, f"peak RSS {peak / 2**20:.0f} MiB"
    assert not (tmp_path / "out.mp4").exists() or (tmp_path / "out.mp4").stat().st_size < 10**6


def test_the_16000_bomb_is_real(tmp_path: Path) -> None:
    """FFmpeg reports the crafted file's size at open, so it would decode it (what the
    limit stops; decoding one frame of it takes ~1.7 GB)."""
    with av.open(str(jpeg_bomb(tmp_path / "bomb.mkv", 16000, 16000))) as container:
        context = container.streams.video[0].codec_context
        assert (context.width, context.height) == (16000, 16000)


# ---- max_pixels: images -----------------------------------------------------------------


@pytest.fixture
def imread_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every path the image source hands OpenCV (which would allocate the whole picture)."""
    calls: list[str] = []
    real = images_module.cv2.imread

    def recording(path: str, *args: object) -> np.ndarray | None:
        calls.append(Path(path).name)
        return real(path, *args)

    monkeypatch.setattr(images_module.cv2, "imread", recording)
    return calls


def test_an_image_bomb_is_refused_from_its_header_before_decoding(
    tmp_path: Path, imread_calls: list[str]
) -> None:
    png_bomb(tmp_path / "a.png", 16384, 16384)  # Pillow refuses this size outright
    with pytest.raises(SourceError, match="268435456 pixels, over max_pixels=16777216"):
        ImageFolderSource(str(tmp_path)).open()
    (tmp_path / "a.png").unlink()
    png_bomb(tmp_path / "a.png", 5000, 5000)  # one Pillow opens: our own check
    with pytest.raises(SourceError, match="5000x5000"):
        ImageFolderSource(str(tmp_path)).open()
    assert imread_calls == []


def test_an_image_over_the_limit_later_in_the_folder_ends_the_source(
    tmp_path: Path, imread_calls: list[str]
) -> None:
    import cv2

    cv2.imwrite(str(tmp_path / "0.png"), np.zeros((48, 64, 3), np.uint8))
    png_bomb(tmp_path / "1.png", 8192, 8192)
    source = ImageFolderSource(str(tmp_path))
    source.open()
    frames = source.frames()
    assert next(frames).image.shape == (48, 64, 3)
    with pytest.raises(SourceError, match="8192x8192"):
        next(frames)
    assert imread_calls == ["0.png"]
    got = read_all(ImageFolderSource(str(tmp_path / "0.png"), max_pixels=64 * 48))
    assert len(got) == 1


# ---- the camera: read timeout and sizes -------------------------------------------------


class FakePacket:
    """A packet that decodes into one black frame of ``width`` x ``height``."""

    def __init__(self, width: int, height: int) -> None:
        self.frame = av.VideoFrame.from_ndarray(np.zeros((height, width, 3), np.uint8), "bgr24")

    def decode(self) -> list[av.VideoFrame]:
        return [self.frame]


class FakeCamera:
    """What ``av.open`` returns for a camera: a container whose video declares ``declared``
    (width, height) and delivers frames of the ``frames`` sizes, then stalls in its next
    read until ``release`` is set, as a V4L2 device does when its driver stops delivering."""

    def __init__(self, declared: tuple[int, int], frames: list[tuple[int, int]]) -> None:
        self.sizes = frames
        self.release = threading.Event()
        self.stalled = threading.Event()
        self.closed = False
        context = SimpleNamespace(width=declared[0], height=declared[1])
        self.streams = SimpleNamespace(video=[SimpleNamespace(codec_context=context)])

    def demux(self, stream: object) -> Iterator[FakePacket]:
        for width, height in self.sizes:
            yield FakePacket(width, height)
        self.stalled.set()
        self.release.wait(60)  # the read that never returns (until the test lets it)

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def fake_camera(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[dict]:
    """``fake_camera["make"](declared, frames)`` -> a CameraSource reading a FakeCamera."""
    device = tmp_path / "video9"
    device.touch()  # the source checks the device node exists
    made: list[FakeCamera] = []

    def make(declared=(64, 48), frames=((64, 48),) * 3, **keys) -> CameraSource:
        fake = FakeCamera(declared, list(frames))
        made.append(fake)
        monkeypatch.setattr(camera_module.av, "open", lambda *args, **kwargs: fake)
        return CameraSource(str(device), **keys)

    yield {"make": make, "made": made}
    for fake in made:
        fake.release.set()


def test_a_stalled_camera_ends_with_one_line_after_read_timeout(fake_camera: dict) -> None:
    source = fake_camera["make"](read_timeout=0.5)
    source.open()
    got, error = [], None
    started = time.monotonic()
    try:
        for frame in source.frames():
            got.append(frame)
    except SourceError as raised:
        error = raised
    waited = time.monotonic() - started
    assert len(got) == 3 and [f.index for f in got] == [0, 1, 2]
    assert error is not None and "no frame for 0.5 s (read_timeout)" in str(error)
    assert "\n" not in str(error)
    assert 0.5 <= waited < 30  # waited its timeout; the upper bound only catches a hang
    fake = fake_camera["made"][-1]
    source.close()  # the reading thread is stuck in the read: the device is left open
    assert not fake.closed
    fake.release.set()  # the read returns: the thread ends on its own
    assert source._reader is not None
    source._reader.thread.join(10)
    assert not source._reader.thread.is_alive()


def test_stopping_a_camera_waiting_for_a_frame_is_quick_and_no_error(
    fake_camera: dict,
) -> None:
    source = fake_camera["make"](read_timeout=60)
    source.open()
    got: list = []
    done = threading.Event()

    def read() -> None:
        got.extend(source.frames())
        done.set()

    threading.Thread(target=read, daemon=True).start()
    assert fake_camera["made"][-1].stalled.wait(20)
    source.request_stop()
    assert done.wait(20)  # long before read_timeout
    assert len(got) == 3


def test_camera_sizes_are_checked_as_asked_as_opened_and_per_frame(fake_camera: dict) -> None:
    with pytest.raises(SourceError, match="5000x5000"):  # asked for too much: a config error
        fake_camera["make"](width=5000, height=5000).open()
    with pytest.raises(SourceError, match="640x480"):  # what the driver agreed to
        fake_camera["make"](declared=(640, 480), max_pixels=320 * 240).open()
    assert fake_camera["made"][-1].closed
    source = fake_camera["make"](frames=[(64, 48), (640, 480)], max_pixels=320 * 240)
    source.open()
    frames = source.frames()
    assert next(frames).image.shape == (48, 64, 3)
    with pytest.raises(SourceError, match=r"camera .*640x480"):  # the camera changed size
        next(frames)
    source.close()


# ---- decode errors ----------------------------------------------------------------------


def test_a_file_skips_and_counts_packets_that_fail_to_decode(corrupt: Path) -> None:
    source = FileSource(str(corrupt))
    assert len(read_all(source)) == 4
    assert source.status() == {"decode_errors": 1}
    clean = FileSource(str(write_mjpeg(corrupt.with_name("clean.mkv"), [flat_jpeg(8, 8)], 8, 8)))
    read_all(clean)
    assert clean.status() == {}  # nothing to report on a clean file


@pytest.fixture
def served(growing: Path, corrupt: Path) -> Iterator[FolderServer]:
    """Both test videos over HTTP (byte ranges answered, as web servers do)."""
    folder = corrupt.parent
    (folder / "growing.ts").write_bytes(growing.read_bytes())
    server = FolderServer(folder)
    yield server
    server.stop()


def test_a_stream_counts_decode_errors_and_does_not_reconnect(served: FolderServer) -> None:
    source = StreamSource(served.url("corrupt.mkv"), open_timeout=10)
    frames = read_all(source)
    status = source.status()
    assert len(frames) == 4
    assert status["decode_errors"] == 1
    assert status["reconnect_attempts"] == 0 and status["reconnects"] == 0


def test_a_stream_over_max_pixels_ends_without_reconnecting(served: FolderServer) -> None:
    url = served.url("growing.ts")
    with pytest.raises(StreamError, match="64x48"):  # declared when it opens
        StreamSource(url, max_pixels=32 * 24).open()
    source = StreamSource(url, max_pixels=100 * 100, live=True, read_timeout=5)
    source.open()
    got = []
    with pytest.raises(StreamError, match=f"stream {url}: frames are 320x240"):
        for frame in source.frames():  # the same frame would come back after a reconnect
            got.append(frame.image.shape)
    source.close()
    assert got == [(48, 64, 3)] * 10
    assert source.status()["reconnect_attempts"] == 0


# ---- loop ---------------------------------------------------------------------------------


def test_loop_ends_with_one_line_when_a_pass_yields_no_frame(tmp_path: Path) -> None:
    path = tmp_path / "noise.mp4"  # bigger than FFmpeg's read buffer, so it reads again
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        noise = np.random.default_rng(0).integers(0, 256, (5, 240, 320, 3), np.uint8)
        for image in noise:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, "bgr24")))
        container.mux(stream.encode(None))
    assert path.stat().st_size > 64 * 1024
    source = FileSource(str(path), loop=True)
    source.open()
    got: list[int] = []
    errors: list[BaseException] = []

    def read() -> None:  # on a thread: spinning would hang the test, not fail it
        try:
            for frame in source.frames():
                got.append(frame.index)
                if frame.index == 4:  # the last frame of the first pass: the file goes away
                    with open(path, "r+b") as file:
                        file.truncate(0)
        except BaseException as error:
            errors.append(error)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(30)
    if reader.is_alive():
        source.request_stop()
        pytest.fail("loop: true spins on a file that yields no frame")
    source.close()
    assert got == [0, 1, 2, 3, 4]
    assert len(errors) == 1 and isinstance(errors[0], SourceError)
    assert "loop: a pass over" in str(errors[0]) and "yielded no frame" in str(errors[0])


def test_loop_still_loops(clip: Path) -> None:
    source = FileSource(str(clip), loop=True)
    source.open()
    got = []
    for frame in source.frames():
        got.append(frame.pts)
        if len(got) == 75:
            break
    source.close()
    assert len(got) == 75 and got == sorted(set(got))  # 2.5 passes, time keeps increasing

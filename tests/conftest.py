"""Shared fixtures: small real videos written with PyAV, and readers to check outputs."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

import stages  # noqa: F401  (registers the stage kinds)
from stages.sources.synthetic import SyntheticSource

ROOT = Path(__file__).resolve().parents[1]


def write_video(
    path: Path,
    count: int = 30,
    size: tuple[int, int] = (160, 120),
    pts: Sequence[int] | None = None,
    time_base: Fraction = Fraction(1, 30),
    codec: str = "libx264",
    faststart: bool = True,
) -> Path:
    """Write ``count`` synthetic frames (burned-in counter) with the given PTS."""
    width, height = size
    scene = SyntheticSource(width=width, height=height, frames=count, objects=3)
    options = {"movflags": "+faststart"} if faststart and path.suffix == ".mp4" else {}
    with av.open(str(path), "w", options=options) as container:
        stream = container.add_stream(codec, rate=30)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = time_base
        stream.time_base = time_base
        if codec == "libx264":
            stream.options = {"preset": "ultrafast", "bf": "0", "g": "10"}
        for i in range(count):
            frame = av.VideoFrame.from_ndarray(scene.render(i), format="bgr24")
            frame = frame.reformat(format="yuv420p")
            frame.pts = pts[i] if pts is not None else i
            frame.time_base = time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def read_video(path: Path) -> tuple[list[float], list[np.ndarray], str]:
    """Decode a whole file: frame times (s), BGR images, codec name."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        codec = stream.codec_context.name
        times, images = [], []
        for frame in container.decode(stream):
            times.append(float(frame.pts * frame.time_base))
            images.append(frame.to_ndarray(format="bgr24"))
    return times, images, codec


def ffprobe_frame_count(path: Path) -> int:
    """Frames ffprobe decodes from the file (decoding all of it)."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
         "-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", str(path)],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return int(out.stdout.strip().rstrip(","))


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A loopback port nothing uses right now (bound once, then released)."""
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(condition: Callable[[], object], timeout: float, step: float = 0.02) -> bool:
    """Poll ``condition()`` until it is true or ``timeout`` seconds passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return bool(condition())


needs_ffprobe = pytest.mark.skipif(shutil.which("ffprobe") is None, reason="ffprobe not installed")
needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    """A 30-frame 160x120 H.264 mp4 at 30 fps."""
    return write_video(tmp_path / "clip.mp4")


def _wanted_threads() -> int | None:
    """OMP_NUM_THREADS as asked, or None: torch caps the variable at the core count (3 on 2
    cores gives 2), so the golden runs under 1, 2 and 3 threads set it themselves."""
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else None


@pytest.fixture(autouse=True)
def _intra_op_threads() -> Iterator[None]:
    """Every test starts at the run's thread count and leaves it so: stages with a
    ``threads`` option set torch's process-wide count, which would leak into later tests."""
    import torch

    wanted = _wanted_threads()
    if wanted is not None:
        torch.set_num_threads(wanted)
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--golden-report",
        action="store_true",
        help="print every golden comparison's largest error beside its bound",
    )


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    from tests.golden import COMPARISONS, format_report

    if config.getoption("--golden-report") and COMPARISONS:
        import torch

        asked = os.environ.get("OMP_NUM_THREADS", "unset")
        threads = f"{torch.get_num_threads()} intra-op threads, OMP_NUM_THREADS={asked}"
        terminalreporter.section(f"golden comparisons ({threads})")
        terminalreporter.write_line(format_report(COMPARISONS))

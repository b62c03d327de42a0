"""The network stream source against a real live server on 127.0.0.1 (MPEG-TS over
HTTP, see ``stream_server``): first connection, losses, stalls, reconnection with
backoff, giving up, PTS across outages, and run.py end to end."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import pytest

from pipeline.errors import StreamError
from stages.sources.stream import TIME_BASE, StreamSource
from stages.sources.synthetic import read_counter
from tests.conftest import ROOT, free_port, read_video, wait_until
from tests.stages.stream_server import FPS, Clip, SilentServer, Station, encode_clip

FRAME_TICKS = round(1 / (FPS * TIME_BASE))  # 3600: one frame interval in the source's 1/90000
TRANSCODE = str(ROOT / "configs" / "transcode.yaml")


# ---- fixtures and helpers ------------------------------------------------------------


@pytest.fixture(scope="session")
def live_clip(tmp_path_factory: pytest.TempPathFactory) -> Clip:
    """10 s of H.264 in MPEG-TS (a keyframe every second), encoded once."""
    return encode_clip(tmp_path_factory.mktemp("stream") / "live.ts", seconds=10.0)


@pytest.fixture(scope="session")
def short_clip(tmp_path_factory: pytest.TempPathFactory) -> Clip:
    """1.2 s clip: a server looping it jumps back in PTS every 1.2 s."""
    return encode_clip(tmp_path_factory.mktemp("stream") / "short.ts", seconds=1.2)


@pytest.fixture
def stations(live_clip: Clip) -> Iterator[Callable[..., Station]]:
    """Start live servers (``stations(clip=..., **options)``); all stopped at teardown."""
    started: list[Station] = []

    def start(clip: Clip | None = None, **options: object) -> Station:
        station = Station(clip or live_clip, **options)
        started.append(station)
        return station

    yield start
    for station in started:
        station.stop()


@pytest.fixture
def station(stations: Callable[..., Station]) -> Station:
    return stations()


@dataclass(frozen=True)
class Got:
    """What the test keeps of one frame."""

    at: float  # time.monotonic() when it arrived
    pts: int
    index: int
    counter: int  # the clip's frame number, read back from the pixels


class Reader:
    """Runs ``source.frames()`` on its own thread, as the graph does."""

    def __init__(self, source: StreamSource) -> None:
        self.source = source
        self.error: BaseException | None = None
        self.ended_at: float | None = None
        self.done = threading.Event()
        self._frames: list[Got] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="stream-reader", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for frame in self.source.frames():
                assert frame.time_base == TIME_BASE
                got = Got(time.monotonic(), frame.pts, frame.index, read_counter(frame.image))
                with self._lock:
                    self._frames.append(got)
        except BaseException as error:
            self.error = error
        finally:
            self.ended_at = time.monotonic()
            self.done.set()

    def count(self) -> int:
        with self._lock:
            return len(self._frames)

    def frames(self) -> list[Got]:
        with self._lock:
            return list(self._frames)

    def finish(self, timeout: float = 10.0) -> float:
        """Ask the source to stop; seconds until ``frames()`` ended."""
        asked = time.monotonic()
        self.source.request_stop()
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "frames() did not end after request_stop()"
        assert self.ended_at is not None
        return self.ended_at - asked


@pytest.fixture
def readers() -> Iterator[Callable[[StreamSource], Reader]]:
    """Open a source and read it on a thread; stopped, joined and closed at teardown."""
    made: list[Reader] = []

    def start(source: StreamSource) -> Reader:
        source.open()
        reader = Reader(source)
        made.append(reader)
        return reader

    yield start
    for reader in made:
        try:
            reader.finish(reader.source.read_timeout + reader.source.open_timeout + 5)
        finally:
            reader.source.close()


def fast_source(url: str, **options: object) -> StreamSource:
    """Short timeouts and backoff, so outages play out in a few seconds."""
    settings: dict[str, object] = dict(
        open_timeout=5.0, read_timeout=1.0, backoff_initial=0.2, backoff_max=1.0
    )
    return StreamSource(url, **(settings | options))  # type: ignore[arg-type]


def assert_one_connection(frames: list[Got]) -> None:
    """Frames of one connection: every frame of the clip in order, server PTS spacing."""
    assert frames
    counters = [f.counter for f in frames]
    assert counters == list(range(counters[0], counters[0] + len(frames))), counters
    assert {b.pts - a.pts for a, b in pairwise(frames)} <= {FRAME_TICKS}


# ---- connection loss and reconnection ---------------------------------------------------


def test_reconnects_when_the_server_comes_back_and_keeps_the_time_line(
    station: Station, readers: Callable[[StreamSource], Reader]
) -> None:
    source = fast_source(station.url)
    reader = readers(source)
    assert wait_until(lambda: reader.count() >= 15, 10), "no frames from the live server"
    assert source.status() == {"connection": "streaming", "reconnects": 0, "reconnect_attempts": 0,
                               "decode_errors": 0}  # fmt: skip

    station.stop()  # listening socket closed and the client's connection cut
    stopped_at = time.monotonic()
    assert wait_until(lambda: source.status()["connection"] == "reconnecting", 5)
    noticed_at = time.monotonic()
    time.sleep(max(stopped_at + 1.5 - time.monotonic(), 0))
    before = reader.frames()
    station.restart()  # same port, same URL
    restarted_at = time.monotonic()
    assert source.status()["connection"] == "reconnecting"

    assert wait_until(lambda: reader.count() >= len(before) + 15, 10), "frames did not resume"
    assert source.status()["connection"] == "streaming"
    assert source.status()["reconnects"] == 1  # one outage, one reconnection
    assert source.status()["reconnect_attempts"] >= 1
    assert reader.finish() < 1.0  # streaming: it ends at the next frame
    assert reader.error is None
    source.close()
    assert source.status()["connection"] == "stopped"

    frames = reader.frames()
    assert [f.index for f in frames] == list(range(len(frames)))
    assert all(b.pts > a.pts for a, b in pairwise(frames))
    first, second = frames[: len(before)], frames[len(before) :]
    assert all(f.at <= noticed_at for f in first)  # nothing during the outage
    assert all(f.at > restarted_at for f in second)
    assert_one_connection(first)
    assert_one_connection(second)
    # The server's clock started again with the new connection; ours went on.
    assert second[0].counter < first[-1].counter
    gap = (second[0].pts - first[-1].pts) * TIME_BASE
    outage = restarted_at - stopped_at
    assert outage - 0.3 <= gap <= second[0].at - first[-1].at + 0.8


def test_a_stalled_stream_is_reopened_after_read_timeout(
    station: Station, readers: Callable[[StreamSource], Reader]
) -> None:
    source = fast_source(station.url, read_timeout=1.0)
    reader = readers(source)
    assert wait_until(lambda: reader.count() >= 10, 10)
    station.stall()  # connection stays open, no more data: only the watchdog can tell
    stalled_at = time.monotonic()
    assert wait_until(lambda: source.status()["connection"] == "reconnecting", 5)
    noticed = time.monotonic() - stalled_at
    assert 0.8 <= noticed <= 4.0
    count = reader.count()
    assert wait_until(lambda: reader.count() >= count + 10, 10), "frames did not resume"
    assert source.status() == {"connection": "streaming", "reconnects": 1, "reconnect_attempts": 1,
                               "decode_errors": 0}  # fmt: skip
    assert station.requests == 2
    frames = reader.frames()
    assert all(b.pts > a.pts for a, b in pairwise(frames))
    assert [f.index for f in frames] == list(range(len(frames)))


def test_gives_up_after_max_reconnects(
    station: Station, readers: Callable[[StreamSource], Reader]
) -> None:
    source = fast_source(station.url, max_reconnects=3)
    reader = readers(source)
    assert wait_until(lambda: reader.count() >= 5, 10)
    station.stop()  # for good
    stopped_at = time.monotonic()
    assert reader.done.wait(10), "still reconnecting after max_reconnects"
    assert isinstance(reader.error, StreamError)
    message = str(reader.error)
    assert station.url in message and "3 attempts" in message
    assert source.status()["reconnect_attempts"] == 3
    assert source.status()["reconnects"] == 0
    assert reader.ended_at is not None
    took = reader.ended_at - stopped_at
    assert 0.2 + 0.4 + 0.8 - 0.1 <= took < 6  # backoff doubles: 0.2, 0.4, 0.8 s
    assert reader.count() >= 5  # what came before the loss was delivered


def test_a_connection_that_brings_no_frame_is_a_failed_attempt(
    station: Station, readers: Callable[[StreamSource], Reader], live_clip: Clip
) -> None:
    source = fast_source(station.url, max_reconnects=2)
    reader = readers(source)
    assert wait_until(lambda: reader.count() >= 5, 10)
    # The server comes back broken: each connection opens (HTTP 200, the stream's
    # tables, most of the first frame) and is then closed, so no connection ever
    # delivers a frame. That is not "back": the attempts must count.
    first_frame = live_clip.chunks()[0][1]
    station.stop()
    station.options = {"bytes_per_connection": len(first_frame) - 200}
    station.restart()
    assert reader.done.wait(10), "reconnected forever to a server that sends no frames"
    assert isinstance(reader.error, StreamError)
    assert "2 attempts" in str(reader.error)
    assert source.status()["reconnects"] == 0
    assert station.requests == 3  # the first connection and two attempts


# ---- timestamps ------------------------------------------------------------------------


def test_a_server_clock_jumping_back_keeps_the_frame_spacing(
    stations: Callable[..., Station],
    readers: Callable[[StreamSource], Reader],
    short_clip: Clip,
) -> None:
    station = stations(short_clip)  # loops a 1.2 s file: its PTS go back every 1.2 s
    reader = readers(fast_source(station.url))
    assert wait_until(lambda: reader.count() >= 45, 10)
    frames = reader.frames()
    counters = [f.counter for f in frames]
    assert any(b < a for a, b in pairwise(counters)), "the server did not loop"
    assert {b.pts - a.pts for a, b in pairwise(frames)} == {FRAME_TICKS}


def test_reconnecting_after_a_burst_does_not_squeeze_frames(
    stations: Callable[..., Station], readers: Callable[[StreamSource], Reader]
) -> None:
    station = stations(speed=4.0)  # media time runs ahead of the clock
    source = fast_source(station.url)
    reader = readers(source)
    assert wait_until(lambda: reader.count() >= 120, 10)
    station.stop()
    # (the client may still be reading what the fast server had already sent)
    assert wait_until(lambda: source.status()["connection"] == "reconnecting", 10)
    count = reader.count()
    station.restart()
    assert wait_until(lambda: reader.count() >= count + 30, 10), "frames did not resume"
    frames = reader.frames()
    assert source.status()["reconnects"] >= 1
    # The new connection starts one frame after the last, not at the (earlier) clock time.
    assert {b.pts - a.pts for a, b in pairwise(frames)} == {FRAME_TICKS}


# ---- opening -------------------------------------------------------------------------


def test_unreachable_url_fails_fast_with_one_line_error() -> None:
    url = f"http://127.0.0.1:{free_port()}/x"
    source = StreamSource(url, open_timeout=2)
    started = time.monotonic()
    with pytest.raises(StreamError) as info:
        source.open()
    assert time.monotonic() - started < 5
    message = str(info.value)
    assert url in message
    assert "\n" not in message and "Traceback" not in message
    assert info.value.__suppress_context__  # raised "from None": no chained traceback
    assert source.status()["connection"] == "stopped"


def test_open_errors_name_the_problem_without_the_password(station: Station) -> None:
    missing = station.url.replace("/live.ts", "/missing.ts")
    with pytest.raises(StreamError, match="404"):
        StreamSource(missing, open_timeout=2).open()
    secret = station.url.replace("http://", "http://viewer:s3cret@").replace("live", "nope")
    with pytest.raises(StreamError) as info:
        StreamSource(secret, open_timeout=2).open()
    assert "s3cret" not in str(info.value) and "viewer" not in str(info.value)
    assert f"stream {station.url.replace('live', 'nope')}" in str(info.value)  # the rest shown


def test_a_server_that_never_answers_fails_after_open_timeout() -> None:
    silent = SilentServer()
    try:
        source = StreamSource(silent.url, open_timeout=1.0)
        started = time.monotonic()
        with pytest.raises(StreamError, match="waited up to 1 s"):
            source.open()
        assert 0.8 <= time.monotonic() - started < 4
    finally:
        silent.close()


# ---- run.py end to end -------------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "run.py"), TRANSCODE, *args, "--no-progress"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,  # only a hang: busy machines
    )  # fmt: skip


def test_cli_records_a_live_stream(station: Station, tmp_path: Path) -> None:
    out, metrics = tmp_path / "o.mp4", tmp_path / "metrics.json"
    result = run_cli("--source", station.url, "--output", str(out), "--max-frames", "40",
                     "--metrics-json", str(metrics))  # fmt: skip
    assert result.returncode == 0, result.stderr
    times, images, codec = read_video(out)
    assert codec == "h264"
    # A live source's edge keeps the latest frame: a frame may be dropped under load,
    # and then it is counted. Normally none is.
    drops = json.loads(metrics.read_text())["drops"]
    assert drops <= 2 and len(images) == 40 - drops
    counters = [read_counter(image) for image in images]
    assert all(b > a for a, b in pairwise(counters))
    steps = [round((b - a) * FPS, 3) for a, b in pairwise(times)]
    assert steps == [b - a for a, b in pairwise(counters)]  # server PTS kept


def test_cli_without_a_server_exits_4_with_one_line(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/live.ts"
    result = run_cli("--source", url, "--output", str(tmp_path / "o.mp4"), "--max-frames", "40")
    assert result.returncode == 4, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:") and url in lines[0]
    assert "Traceback" not in result.stderr

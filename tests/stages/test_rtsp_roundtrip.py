"""FrameGraph to FrameGraph over RTSP: the stream source reads the embedded
server, over TCP and UDP, and reconnects by itself when the server restarts."""

from __future__ import annotations

import itertools
import threading
import time

import pytest

from pipeline.frame import Frame
from pipeline.graph import Graph, NodeSpec
from pipeline.stage import Sink
from stages.sinks.rtsp_server import RtspServerSink
from stages.sources.stream import StreamSource
from stages.sources.synthetic import SyntheticSource, read_counter
from tests.conftest import free_port, wait_until


class Recorder(Sink):
    def __init__(self) -> None:
        self.frames: list[tuple[float, int, int]] = []  # (arrival, pts, counter)

    def write(self, frame: Frame) -> None:
        self.frames.append((time.monotonic(), frame.pts, read_counter(frame.image)))


class Running:
    """A graph on a background thread."""

    def __init__(self, *specs: NodeSpec) -> None:
        self.graph = Graph(list(specs))
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.report = None
        self.thread.start()

    def _run(self) -> None:
        self.report = self.graph.run()

    def stop(self) -> None:
        self.graph.stop()
        self.thread.join(15)
        assert not self.thread.is_alive()


def serve(url: str) -> Running:
    source = SyntheticSource(width=320, height=240, fps=30, frames=None, live=True)
    return Running(NodeSpec("camera", source), NodeSpec("rtsp", RtspServerSink(url), ["camera"]))


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_stream_source_reads_the_embedded_server(transport: str) -> None:
    url = f"rtsp://127.0.0.1:{free_port()}/live"
    server = serve(url)
    recorder = Recorder()
    client = None
    try:
        time.sleep(0.3)
        client = Running(
            NodeSpec("cam", StreamSource(url, transport=transport, open_timeout=5)),
            NodeSpec("rec", recorder, ["cam"]),
        )
        assert wait_until(lambda: len(recorder.frames) >= 45, 15)
    finally:
        if client is not None:
            client.stop()
        server.stop()
    counters = [c for _, _, c in recorder.frames]
    pts = [p for _, p, _ in recorder.frames]
    assert all(b > a for a, b in itertools.pairwise(pts))
    # consecutive frames of the sender (a live edge may drop one now and then)
    steps = [b - a for a, b in itertools.pairwise(counters)]
    assert steps.count(1) >= 0.9 * len(steps)
    assert client.report.error is None


def test_stream_source_reconnects_when_the_rtsp_server_comes_back() -> None:
    url = f"rtsp://127.0.0.1:{free_port()}/live"
    server = serve(url)
    recorder = Recorder()
    source = StreamSource(url, open_timeout=5, read_timeout=1.0, backoff_initial=0.2,
                          backoff_max=0.5)  # fmt: skip
    client = None
    try:
        time.sleep(0.3)
        client = Running(NodeSpec("cam", source), NodeSpec("rec", recorder, ["cam"]))
        assert wait_until(lambda: len(recorder.frames) >= 20, 15)
        server.stop()  # the server goes away
        assert wait_until(lambda: source.status()["connection"] == "reconnecting", 10)
        before = len(recorder.frames)
        time.sleep(1.0)
        server = serve(url)  # and comes back on the same port
        assert wait_until(lambda: len(recorder.frames) >= before + 20, 20), "did not resume"
        assert source.status()["connection"] == "streaming"
        assert source.status()["reconnects"] == 1
    finally:
        if client is not None:
            client.stop()
        server.stop()
    pts = [p for _, p, _ in recorder.frames]
    assert all(b > a for a, b in itertools.pairwise(pts))

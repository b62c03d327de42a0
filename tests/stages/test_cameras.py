"""Real RTSP cameras (GStreamer's RTSP server) and a paced file in one run: a camera that
dies for 10 s stalls nobody else, and comes back on its own with its time line going on."""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path

import av
import pytest

from pipeline.config import build_graph, parse_config
from tests.conftest import free_port, wait_until, write_video
from tests.stages.rtsp_camera import Camera, needs_gstreamer_rtsp


def camera_entry(camera: Camera) -> dict:
    return {"kind": "stream", "url": camera.url, "read_timeout": 2.0,
            "backoff_initial": 0.2, "backoff_max": 1.0}  # fmt: skip


def times(path: Path) -> list[float]:
    with av.open(str(path)) as container:
        return [float(f.time) for f in container.decode(video=0)]


@needs_gstreamer_rtsp
@pytest.mark.slow
def test_a_camera_down_for_10_s_leaves_the_others_at_full_rate(tmp_path: Path) -> None:
    lobby = write_video(tmp_path / "lobby.mp4", count=50, size=(160, 120))  # 30 fps
    cam1, cam2 = Camera(free_port()), Camera(free_port())
    try:
        graph = build_graph(parse_config({"stages": [
            {"name": "cams", "kind": "sources", "sources": {
                "cam1": camera_entry(cam1), "cam2": camera_entry(cam2),
                "lobby": {"kind": "file", "path": str(lobby), "realtime": True, "loop": True},
            }},
            {"name": "video", "kind": "video_file", "path": str(tmp_path / "{source}.mp4")},
        ]}))  # fmt: skip
        group = graph.nodes["cams"].stage
        runner = threading.Thread(target=lambda: setattr(graph, "report", graph.run()))
        runner.start()
        try:

            def frames(name: str) -> int:
                found = graph.metrics.sources.get(name)
                return found.frames if found is not None else 0

            assert wait_until(lambda: min(frames(n) for n in ("cam1", "cam2", "lobby")) > 25, 30)
            before = {n: frames(n) for n in ("cam1", "cam2", "lobby")}
            cam1.stop()
            start = time.monotonic()
            states = set()
            while time.monotonic() - start < 10:
                states.add(group.status()["inputs"]["cam1"]["state"])
                time.sleep(0.2)
            elapsed = time.monotonic() - start
            during = {n: (frames(n) - before[n]) / elapsed for n in ("cam1", "cam2", "lobby")}
            assert during["cam2"] > 0.9 * 25 and during["lobby"] > 0.9 * 30, during
            assert during["cam1"] < 2.5  # what it had in flight, then nothing
            assert "reconnecting" in states, states
            stalled = frames("cam1")
            cam1.start()
            assert wait_until(lambda: frames("cam1") > stalled + 25, 30)  # back on its own
        finally:
            graph.stop()
            runner.join(30)
        assert graph.report.error is None
    finally:
        cam1.stop()
        cam2.stop()
    seen = times(tmp_path / "cam1.mp4")
    assert all(b > a for a, b in itertools.pairwise(seen))  # never backwards
    assert seen[-1] - seen[0] > 10  # the outage is in its time line
    assert len(times(tmp_path / "cam2.mp4")) > 25 * 10

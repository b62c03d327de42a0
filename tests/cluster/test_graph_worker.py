"""The cluster's pieces that run without Ray: a worker's graph in this process (cameras
added, listed, removed, its errors), the cameras taken out of a service config, the
workers' metrics merged with their node and worker labels, and the one-line error when Ray
is missing."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from cluster.actors import connect
from cluster.config import split_cameras
from cluster.metrics import cluster_metrics_text
from cluster.worker import GraphWorker
from pipeline.errors import ConfigError, SourceError
from tests.conftest import read_video, wait_until

LIVE = "synthetic:64x48@10"


def worker_config(out: Path, **group: object) -> dict:
    return {"stages": [
        {"name": "cams", "kind": "sources", "keep_open": True, "sources": {}, **group},
        {"name": "video", "kind": "video_file", "path": str(out / "{source}.mp4")},
        {"name": "web", "kind": "web", "inputs": ["cams"]},
    ]}  # fmt: skip


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[GraphWorker]:
    one = GraphWorker(worker_config(tmp_path), "worker-t")
    try:
        yield one
    finally:
        assert one.stop()["error"] is None


def rows(worker: GraphWorker) -> dict[str, dict]:
    return {row["name"]: row for row in worker.streams()}


def test_a_worker_serves_cameras_added_and_removed(worker: GraphWorker, tmp_path: Path) -> None:
    where = worker.ready(60)
    assert where["node"] is None and where["pid"] > 0  # outside Ray: no node id
    assert worker.ping()["running"]
    worker.add_stream("a", LIVE)
    worker.add_stream("b", {"kind": "synthetic", "width": 64, "height": 48, "fps": 10.0,
                            "live": True, "frames": None})  # fmt: skip
    assert wait_until(lambda: all(r["frames"] > 3 for r in rows(worker).values()), 30)
    a = rows(worker)["a"]
    assert a["state"] == "live" and a["url"] == LIVE
    assert a["outputs"] == [str(tmp_path / "a.mp4")]
    with pytest.raises(ConfigError, match="is running"):
        worker.add_stream("a", LIVE)
    with pytest.raises(SourceError, match="not found"):
        worker.add_stream("c", str(tmp_path / "missing.mp4"))

    number, jpeg = worker.live_jpeg("a", after=0, timeout=5)
    assert number > 0 and jpeg.startswith(b"\xff\xd8")  # the page's view of it
    assert worker.live_jpeg("nobody") is None

    assert worker.remove_stream("a")  # its file is finalised when this returns
    assert rows(worker)["a"]["state"] == "ended" and rows(worker)["b"]["state"] == "live"
    _, images, _ = read_video(tmp_path / "a.mp4")
    assert len(images) > 3 and images[0].shape == (48, 64, 3)
    with pytest.raises(ConfigError, match="no input named"):
        worker.remove_stream("nobody")

    families = {f.name: f for f in text_string_to_metric_families(worker.metrics_text().decode())}
    sources = {s.labels["source"] for s in families["framegraph_source_frames"].samples}
    assert sources >= {"a", "b"}
    assert worker.stages()["video"]["frames"] > 3


def test_a_worker_reports_a_graph_it_cannot_build(tmp_path: Path) -> None:
    broken = GraphWorker(worker_config(tmp_path, keep_open=False, sources={"a": LIVE}))
    with pytest.raises(ConfigError, match="keep_open"):
        broken.ready(5)
    assert not broken.ping()["running"]
    assert "keep_open" in (broken.stop()["error"] or "")
    stages = [{"name": "x", "kind": "nope"}, {"name": "y", "kind": "discard"}]
    unknown = GraphWorker({"stages": stages})
    with pytest.raises(ConfigError, match="unknown stage kind 'nope'"):
        unknown.add_stream("a", LIVE)


def test_cameras_are_taken_out_of_the_service_config(tmp_path: Path) -> None:
    raw = worker_config(tmp_path, sources=["door=synthetic", "synthetic:64x48"], keep_open=False)
    raw["cluster"] = {"streams_per_worker": 3}
    workers, cameras = split_cameras(raw)
    assert cameras == {"door": "synthetic", "synthetic": "synthetic:64x48"}
    group = workers["stages"][0]
    assert group["sources"] == {} and group["keep_open"] is True
    assert raw["stages"][0]["sources"] == ["door=synthetic", "synthetic:64x48"]  # not changed
    assert workers["cluster"] == {"streams_per_worker": 3}
    single = {"stages": [{"name": "s", "kind": "synthetic"}, {"name": "o", "kind": "discard"}]}
    with pytest.raises(ConfigError, match="kind: sources"):
        split_cameras(single)


def test_worker_metrics_are_merged_with_node_and_worker_labels() -> None:
    text = (b"# HELP framegraph_source_frames_total Frames out\n"
            b"# TYPE framegraph_source_frames_total counter\n"
            b'framegraph_source_frames_total{source="a"} 5.0\n')  # fmt: skip
    merged = cluster_metrics_text([("n1", "worker-1", text), ("n2", "worker-2", text)],
                                  workers=2, wanted=3, pending=1, moves=4)  # fmt: skip
    families = {f.name: f for f in text_string_to_metric_families(merged.decode())}
    frames = families["framegraph_source_frames"].samples
    assert {(s.labels["node"], s.labels["worker"], s.labels["source"]) for s in frames} == {
        ("n1", "worker-1", "a"), ("n2", "worker-2", "a")}  # fmt: skip
    streams = {s.labels["state"]: s.value for s in families["framegraph_cluster_streams"].samples}
    assert streams == {"placed": 2.0, "pending": 1.0}
    assert families["framegraph_cluster_workers"].samples[0].value == 2.0
    assert families["framegraph_cluster_moves"].samples[0].value == 4.0


def test_without_ray_a_cluster_fails_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    with pytest.raises(ConfigError, match=r"needs Ray.*pip install") as error:
        connect("auto")
    assert "\n" not in str(error.value)


def test_a_worker_answers_webrtc_and_hangs_up_when_its_camera_ends(tmp_path: Path) -> None:
    from service.backend import NoLiveView, NoSuchStream
    from tests.service.webrtc_viewer import Viewer

    worker = GraphWorker(worker_config(tmp_path), "worker-v")
    try:
        worker.ready(60)
        worker.add_stream("a", LIVE)
        worker.add_stream("b", LIVE)
        views = {row["name"]: row["views"] for row in worker.streams()}
        assert views["a"] == {"webrtc": "/webrtc/a", "mjpeg": "/live/a.mjpg"}  # no RTSP sink
        first = Viewer(lambda sdp: worker.webrtc_answer("a", sdp))
        second = Viewer(lambda sdp: worker.webrtc_answer("b", sdp))
        try:
            assert first.wait_frames(3, 20) and second.wait_frames(3, 20)
            assert first.sizes[-1] == (64, 48)
            assert worker.remove_stream("a")
            assert first.ended.wait(10), first.states  # its camera ended: hung up
            assert second.wait_frames(2, 10) and not second.ended.is_set()  # b plays on
            with pytest.raises(NoSuchStream):
                worker.webrtc_answer("a", "v=0\r\n")
            assert worker.stop()["error"] is None
            assert second.ended.wait(10), second.states  # the graph stopped: hung up
            assert worker._views is not None and worker._views.webrtc.connections == 0
        finally:
            first.close()
            second.close()
    finally:
        worker.stop()
        worker.close_views()
    plain = GraphWorker({"stages": [
        {"name": "cams", "kind": "sources", "keep_open": True, "sources": {"a": LIVE}},
        {"name": "out", "kind": "discard"},
    ]})  # fmt: skip
    try:
        plain.ready(60)
        with pytest.raises(NoLiveView, match="web"):
            plain.webrtc_answer("a", "v=0\r\n")
    finally:
        plain.stop()


def test_a_workers_events_and_counts_and_the_clusters_merge(tmp_path: Path) -> None:
    from cluster.metrics import newest_events
    from tests.service.event_stage import EVERY  # registers the test_events stage kind

    stages = [
        {"name": "cams", "kind": "sources", "keep_open": True, "sources": {}},
        {"name": "zones", "kind": "test_events"},
        {"name": "web", "kind": "web"},
    ]
    worker = GraphWorker({"stages": stages}, "worker-e")
    try:
        worker.ready(30)
        worker.add_stream("a", LIVE)
        assert wait_until(lambda: len(worker.events()) >= 3, 20, step=0.1)
        found = worker.events(limit=1000)
        assert all(e["source"] == "a" and e["frame_index"] % EVERY == 0 for e in found)
        assert worker.events(limit=1) == found[-1:]
        assert "door" in worker.streams()[0]["counts"]["line_counts"]
    finally:
        assert worker.stop()["error"] is None
    other = [{**e, "source": "b", "wall_time": e["wall_time"] + 0.001} for e in found]
    merged = newest_events([found, other], 4)
    assert [e["wall_time"] for e in merged] == sorted(e["wall_time"] for e in found + other)[-4:]
    assert newest_events([found, other], 0) == []

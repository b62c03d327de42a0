"""The service's HTTP API on a real server (uvicorn on a free port) beside a running graph:
streams listed, added and removed, stages, Prometheus metrics, health, the token rule, and
the MJPEG live view."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pipeline.config import (
    build_graph,
    parse_config,
    register,
)
from pipeline.errors import ConfigError
from pipeline.graph import Graph
from pipeline.stage import Stage
from service.app import check_exposure, create_app, parse_bind
from service.server import ApiServer
from tests.conftest import free_port, wait_until


@register("test_gate")
class Gate(Stage):
    """Opens only when its event is set (a model still loading)."""

    event = threading.Event()

    def open(self) -> None:
        assert Gate.event.wait(20)


def live(fps: float = 25.0) -> dict:
    return {"kind": "synthetic", "width": 96, "height": 64, "frames": None, "live": True,
            "fps": fps}  # fmt: skip


def service_graph(tmp_path, gate: bool = False) -> Graph:
    stages = [
        {"name": "cams", "kind": "sources", "keep_open": True, "sources": {"cam1": live()}},
        *([{"name": "gate", "kind": "test_gate"}] if gate else []),
        {"name": "video", "kind": "video_file", "path": str(tmp_path / "{source}.mp4")},
        {"name": "web", "kind": "web", "inputs": ["gate" if gate else "cams"]},
    ]
    return build_graph(parse_config({"stages": stages}))


@pytest.fixture
def service(tmp_path) -> Iterator[tuple[Graph, httpx.Client]]:
    graph = service_graph(tmp_path)
    server = ApiServer(create_app(graph, token="s3cret"), "127.0.0.1", free_port())
    server.start()
    runner = threading.Thread(target=lambda: setattr(graph, "report", graph.run()))
    runner.start()
    client = httpx.Client(base_url=server.url, timeout=20)
    try:
        assert wait_until(lambda: client.get("/readyz").status_code == 200, 20)
        yield graph, client
    finally:
        graph.stop()
        runner.join(20)
        server.stop()
        client.close()
    assert graph.report.error is None


AUTH = {"Authorization": "Bearer s3cret"}


def streams(client: httpx.Client) -> dict[str, dict]:
    return {s["name"]: s for s in client.get("/api/streams").json()}


def test_streams_are_listed_added_and_removed(service, tmp_path) -> None:
    _, client = service
    assert wait_until(lambda: streams(client)["cam1"]["frames"] > 5, 20)
    cam1 = streams(client)["cam1"]
    assert cam1["state"] == "live" and cam1["url"] == "synthetic"
    assert cam1["outputs"] == [str(tmp_path / "cam1.mp4")]
    assert cam1["fps"] > 10 and cam1["e2e_p50_ms"] >= 0

    secret = {"name": "cam2", "url": "rtsp://admin:pw@127.0.0.1:9/live?token=x"}
    assert client.post("/api/streams", json={"name": "cam2", "url": "synthetic:64x48"},
                       headers=AUTH).status_code == 201  # fmt: skip
    assert wait_until(lambda: streams(client)["cam2"]["frames"] > 0, 20)
    assert streams(client)["cam2"]["url"] == "synthetic:64x48"  # as given
    taken = client.post("/api/streams", json={"name": "cam2", "url": "synthetic"}, headers=AUTH)
    assert taken.status_code == 409 and "cam2" in taken.json()["detail"]
    assert client.post("/api/streams", json={"name": "bad name!", "url": "x"},
                       headers=AUTH).status_code == 422  # fmt: skip
    assert client.post("/api/streams", json={"name": "x"}, headers=AUTH).status_code == 422
    missing = client.post("/api/streams", json={"name": "gone", "url": str(tmp_path / "no.mp4")},
                          headers=AUTH)  # fmt: skip
    assert missing.status_code == 400 and "not found" in missing.json()["detail"]
    down = client.post("/api/streams", json=secret | {"name": "door"}, headers=AUTH)
    assert down.status_code == 400 and "pw" not in down.text  # cannot connect, no password

    assert client.delete("/api/streams/cam1", headers=AUTH).status_code == 204
    assert (tmp_path / "cam1.mp4").stat().st_size > 0  # finalised when DELETE answers
    assert streams(client)["cam1"]["state"] == "ended"
    assert streams(client)["cam2"]["state"] == "live"  # the others go on
    assert client.delete("/api/streams/nobody", headers=AUTH).status_code == 404


def test_changing_calls_need_the_token(service) -> None:
    _, client = service
    assert client.post("/api/streams", json={"name": "a", "url": "synthetic"}).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert client.delete("/api/streams/cam1", headers=wrong).status_code == 401
    assert client.get("/api/streams").status_code == 200  # reading needs none
    assert "cam1" in streams(client)


def test_stages_and_prometheus_metrics(service) -> None:
    _, client = service
    assert wait_until(lambda: streams(client)["cam1"]["frames"] > 10, 20)
    stages = client.get("/api/stages").json()
    assert stages["video"]["kind"] == "video_file" and stages["video"]["frames"] > 10
    text = client.get("/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    frames = {s.labels["stage"]: s.value for s in families["framegraph_stage_frames"].samples
              if s.name.endswith("_total")}  # fmt: skip
    assert frames["video"] > 10
    buckets = [s for s in families["framegraph_stage_latency_seconds"].samples
               if s.name.endswith("_bucket") and s.labels["stage"] == "video"]  # fmt: skip
    assert buckets[-1].labels["le"] == "+Inf" and buckets[-1].value == frames["video"]
    assert [b.value for b in buckets] == sorted(b.value for b in buckets)  # cumulative
    states = {s.labels["state"]: s.value for s in families["framegraph_source_state"].samples
              if s.labels["source"] == "cam1"}  # fmt: skip
    assert states["live"] == 1.0 and states["failed"] == 0.0
    e2e = [s for s in families["framegraph_source_latency_seconds"].samples
           if s.name.endswith("_count")]  # fmt: skip
    assert e2e and e2e[0].value > 10
    assert "framegraph_stage_queue_depth" in families


def test_the_live_view_streams_jpegs(service) -> None:
    _, client = service
    frames = 0
    with client.stream("GET", "/live/cam1.mjpg") as response:
        assert response.headers["content-type"].startswith("multipart/x-mixed-replace")
        data = b""
        for chunk in response.iter_bytes():
            data += chunk
            frames = data.count(b"\xff\xd8")  # JPEG starts
            if frames >= 3:
                break
    assert frames >= 3
    assert client.get("/live/nobody.mjpg").status_code == 404
    assert client.get("/").text.count("<main") == 1
    assert "refresh" in client.get("/static/app.js").text


def test_ready_only_once_every_stage_opened(tmp_path) -> None:
    Gate.event.clear()
    graph = service_graph(tmp_path, gate=True)
    server = ApiServer(create_app(graph), "127.0.0.1", free_port())
    server.start()
    runner = threading.Thread(target=graph.run)
    runner.start()
    try:
        client = httpx.Client(base_url=server.url, timeout=10)
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 503  # a stage is still opening
        Gate.event.set()
        assert wait_until(lambda: client.get("/readyz").status_code == 200, 20)
    finally:
        Gate.event.set()
        graph.stop()
        runner.join(20)
        server.stop()


def test_serving_beyond_loopback_needs_a_token() -> None:
    assert parse_bind("0.0.0.0:8080") == ("0.0.0.0", 8080)
    assert parse_bind("[::1]:9") == ("::1", 9)
    with pytest.raises(ConfigError, match="expected HOST:PORT"):
        parse_bind("8080")
    check_exposure("127.0.0.1", None, False)
    check_exposure("0.0.0.0", "t", False)
    check_exposure("0.0.0.0", None, True)
    with pytest.raises(ConfigError, match="needs --api-token"):
        check_exposure("0.0.0.0", None, False)

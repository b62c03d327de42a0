"""The service's HTTP API over a real local Ray cluster (``ray_cluster`` in conftest.py: a
head without CPUs, two worker nodes of one CPU): the app of ``service.app`` backed by a
``ClusterController`` (``service.cluster_app.ClusterBackend``), served by uvicorn on a free
port. The tests run in order on one controller: cameras added over HTTP land on both nodes;
nodes, metrics and the live view answer; a removed camera is gone; a lost node's camera is
listed on the other node within 20 s.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.cluster.local_ray import timings
from tests.conftest import free_port, wait_until

pytest.importorskip("ray", reason="Ray is not installed (pip install 'ray>=2.9')")

from cluster.controller import ClusterController
from service.app import create_app
from service.cluster_app import ClusterBackend
from service.server import ApiServer

pytestmark = pytest.mark.slow
LIVE = "synthetic:160x120@10"
MOVE_WITHIN_S = 20.0


@pytest.fixture(scope="module")
def api(ray_cluster, tmp_path_factory) -> Iterator[httpx.Client]:
    """A client of the API over a controller with no cameras yet (one per worker)."""
    out: Path = tmp_path_factory.mktemp("cluster-api-out")
    config = {
        "cluster": {
            "streams_per_worker": 1,
            "num_cpus": 1,
            "health_interval": 0.5,
            "unresponsive_after": 4.0,
        },
        "stages": [
            {"name": "cams", "kind": "sources", "keep_open": True, "sources": {}},
            {"name": "video", "kind": "video_file", "path": str(out / "{source}.mp4")},
            {"name": "web", "kind": "web", "inputs": ["cams"]},
        ],
    }
    controller = ClusterController(config)
    server = ApiServer(create_app(ClusterBackend(controller)), "127.0.0.1", free_port())
    server.start()
    client = httpx.Client(base_url=server.url, timeout=90)
    try:
        assert client.get("/healthz").status_code == 200
        controller.start()
        assert client.get("/readyz").status_code == 200
        yield client
    finally:
        client.close()
        server.stop()
        controller.stop()


def streams(client: httpx.Client) -> dict[str, dict[str, Any]]:
    return {row["name"]: row for row in client.get("/api/streams").json()}


def producing(client: httpx.Client, names: list[str], more_than: int = 2) -> bool:
    rows = streams(client)
    return all(n in rows and rows[n]["state"] == "live" and rows[n]["frames"] > more_than
               for n in names)  # fmt: skip


def test_cameras_added_over_http_run_on_both_nodes(ray_cluster, api: httpx.Client) -> None:
    cluster, nodes = ray_cluster
    started = time.monotonic()
    for name in ("cam1", "cam2"):  # one per worker: a worker each, spread over the nodes
        added = api.post("/api/streams", json={"name": name, "url": LIVE})
        assert added.status_code == 201, added.text
    timings["two cameras added over HTTP s"] = time.monotonic() - started
    assert wait_until(lambda: producing(api, ["cam1", "cam2"]), 30, step=0.2), streams(api)

    rows = streams(api)
    worker_nodes = {n.node_id for n in nodes}
    assert {rows[n]["node_id"] for n in ("cam1", "cam2")} == worker_nodes
    for name in ("cam1", "cam2"):
        assert rows[name]["node"] == rows[name]["node_id"][:8] and rows[name]["address"]

    by_node = {n["node_id"]: n for n in api.get("/api/nodes").json()}
    assert by_node[cluster.head_node.node_id]["streams"] == []
    assert sorted(by_node[n]["streams"] for n in worker_nodes) == [["cam1"], ["cam2"]]

    text = api.get("/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    frames = families["framegraph_source_frames"].samples
    assert {s.labels["source"]: s.labels["node"] for s in frames} == {
        n: rows[n]["node_id"] for n in ("cam1", "cam2")
    }
    assert families["framegraph_cluster_workers"].samples[0].value == 2

    stages = api.get("/api/stages").json()
    assert {w["node"] for w in stages.values()} == worker_nodes
    assert all(w["stages"]["video"]["kind"] == "video_file" for w in stages.values())

    taken = api.post("/api/streams", json={"name": "cam1", "url": LIVE})
    assert taken.status_code == 409 and "cam1" in taken.json()["detail"]
    missing = api.post("/api/streams", json={"name": "gone", "url": "/no/such/file.mp4"})
    assert missing.status_code == 400, missing.text  # opened on a full worker: not found
    assert "not found" in missing.json()["detail"] and "\n" not in missing.json()["detail"]


def test_the_live_view_comes_from_the_worker(api: httpx.Client) -> None:
    assert api.post("/webrtc/cam1", content="v=0\r\n").status_code == 501  # page: MJPEG
    data = b""
    with api.stream("GET", "/live/cam1.mjpg") as response:
        assert response.headers["content-type"].startswith("multipart/x-mixed-replace")
        for chunk in response.iter_bytes():
            data += chunk
            if data.count(b"\xff\xd8") >= 2:
                break
    assert data.count(b"\xff\xd8") >= 2
    assert api.get("/live/nobody.mjpg").status_code == 404


def test_a_removed_camera_is_gone(api: httpx.Client) -> None:
    assert api.delete("/api/streams/cam2").status_code == 204
    assert streams(api)["cam2"]["state"] == "ended"
    assert api.delete("/api/streams/cam2").status_code == 404
    assert all("cam2" not in n["streams"] for n in api.get("/api/nodes").json())


def test_a_lost_nodes_camera_is_listed_on_the_other(ray_cluster, api: httpx.Client) -> None:
    cluster, nodes = ray_cluster
    assert api.post("/api/streams", json={"name": "cam2", "url": LIVE}).status_code == 201
    assert wait_until(lambda: producing(api, ["cam1", "cam2"]), 30, step=0.2), streams(api)
    rows = streams(api)
    lost = rows["cam1"]["node_id"]
    staying = next(n.node_id for n in nodes if n.node_id != lost)
    started = time.monotonic()
    cluster.remove_node(next(n for n in nodes if n.node_id == lost))

    def moved() -> bool:
        now = streams(api)
        return now["cam1"]["node_id"] == staying and producing(api, ["cam1", "cam2"])

    assert wait_until(moved, MOVE_WITHIN_S, step=0.2), streams(api)
    timings["API lists the camera on the other node s"] = time.monotonic() - started
    by_node = {n["node_id"]: n for n in api.get("/api/nodes").json()}
    assert not by_node[lost]["alive"]
    assert by_node[staying]["streams"] == ["cam1", "cam2"]

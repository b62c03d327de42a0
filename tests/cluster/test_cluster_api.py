"""The service's HTTP API over a real local Ray cluster (``ray_cluster`` in conftest.py: a
head without CPUs, two worker nodes of one CPU): the app of ``service.app`` backed by a
``ClusterController`` (``service.cluster_app.ClusterBackend``), served by uvicorn on a free
port. The tests run in order on one controller: cameras added over HTTP land on both nodes;
nodes, metrics and the live view answer (WebRTC answered by the camera's worker, for an
aiortc client as a browser); each worker serves its cameras' RTSP outputs at its node's
address, the second one on this machine on the next port, and the rows name the real URLs,
which a player opens; a removed camera is gone (its WebRTC viewer hung up on); a lost node's
camera is listed on the other node within 20 s, and is watched from there.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
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
from tests.service.test_page import CHROMIUM, PIXELS, PLAYING, chromium
from tests.service.webrtc_viewer import Viewer
from tests.stages.rtsp_clients import Player

pytestmark = pytest.mark.slow
LIVE = "synthetic:160x120@10"
MOVE_WITHIN_S = 20.0
RTSP_PORT = free_port()
RTSP_URL = f"rtsp://0.0.0.0:{RTSP_PORT}/live/{{source}}"
"""The config's RTSP sink: both workers run on this machine and ask for that port."""


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
            {"name": "rtsp", "kind": "rtsp_server", "url": RTSP_URL, "inputs": ["cams"]},
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


def post_offer(api: httpx.Client, name: str) -> Any:
    """A viewer's answer callable: its offer POSTed to the API for camera ``name``."""

    def answer(sdp: str) -> str:
        answered = api.post(f"/webrtc/{name}", content=sdp)
        assert answered.status_code == 201, answered.text
        return answered.text

    return answer


def port_of(url: str) -> int:
    return int(url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])


def udp_ports_of(pid: int) -> set[int]:
    """The local ports of the UDP sockets process ``pid`` holds (from /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    ports = set()
    for table in ("udp", "udp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def test_webrtc_is_answered_by_the_cameras_worker(api: httpx.Client) -> None:
    address = streams(api)["cam1"]["address"]
    started = time.monotonic()
    with Viewer(post_offer(api, "cam1")) as viewer:
        assert viewer.wait_frames(5, 30), viewer.states
        timings["WebRTC frames from a worker s"] = time.monotonic() - started
        assert viewer.sizes[-1] == (160, 120)
        candidates = [line.split() for line in viewer.answer_sdp.splitlines()
                      if line.startswith("a=candidate:")]  # fmt: skip
        assert any(c[4] == address for c in candidates), candidates  # the worker node's
        mine = udp_ports_of(os.getpid())  # the API's process (and the viewer's) ...
        assert not mine & {int(c[5]) for c in candidates}  # ... sends none of the media
    assert api.post("/webrtc/nobody", content="v=0\r\n").status_code == 404
    assert api.post("/webrtc/cam1", content="hello").status_code == 400


def test_each_worker_serves_rtsp_at_its_node_and_a_port_of_its_own(api: httpx.Client) -> None:
    assert wait_until(lambda: all("rtsp" in r["views"] for r in streams(api).values()), 20)
    rows = streams(api)
    urls = {name: rows[name]["views"]["rtsp"] for name in ("cam1", "cam2")}
    for name, url in urls.items():
        assert url == f"rtsp://{rows[name]['address']}:{port_of(url)}/live/{name}"
        assert rows[name]["views"]["webrtc"] == f"/webrtc/{name}"
        assert rows[name]["views"]["mjpeg"] == f"/live/{name}.mjpg"
    ports = sorted(port_of(url) for url in urls.values())  # two workers on this machine
    assert ports[0] != ports[1] and RTSP_PORT <= ports[0] < ports[1] < RTSP_PORT + 8
    players = [Player(url, frames=3) for url in urls.values()]
    for player in players:
        player.start()
    for player in players:
        player.join(30)
        assert player.error is None and len(player.received) >= 3, player.url
        assert player.size == (160, 120)


def test_the_mjpeg_view_comes_from_the_worker(api: httpx.Client) -> None:
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
    with Viewer(post_offer(api, "cam2")) as viewer:
        assert viewer.wait_frames(2, 30), viewer.states
        assert api.delete("/api/streams/cam2").status_code == 204
        assert viewer.ended.wait(10), viewer.states  # its worker hung up
    assert streams(api)["cam2"]["state"] == "ended"
    assert api.delete("/api/streams/cam2").status_code == 404
    assert all("cam2" not in n["streams"] for n in api.get("/api/nodes").json())


@contextlib.contextmanager
def page_of(api: httpx.Client) -> Iterator[Any]:
    """The API's page in headless Chromium, its ``cam1`` tile playing; None without
    Chromium or Playwright (the test then checks the API alone)."""
    if not Path(CHROMIUM).is_file() or importlib.util.find_spec("playwright") is None:
        yield None
        return
    with chromium() as browser:
        page = browser.new_page()
        page.goto(str(api.base_url))
        page.wait_for_function(f"({PLAYING})('cam1')[0] > 0", timeout=30000)
        assert page.query_selector("#tile-cam1 video") is not None  # WebRTC, from a worker
        yield page


def test_a_lost_nodes_camera_is_listed_on_the_other(ray_cluster, api: httpx.Client) -> None:
    cluster, nodes = ray_cluster
    assert api.post("/api/streams", json={"name": "cam2", "url": LIVE}).status_code == 201
    assert wait_until(lambda: producing(api, ["cam1", "cam2"]), 30, step=0.2), streams(api)
    rows = streams(api)
    lost = rows["cam1"]["node_id"]
    staying = next(n.node_id for n in nodes if n.node_id != lost)
    with page_of(api) as page:
        started = time.monotonic()
        cluster.remove_node(next(n for n in nodes if n.node_id == lost))

        def moved() -> bool:
            now = streams(api)
            return now["cam1"]["node_id"] == staying and producing(api, ["cam1", "cam2"])

        assert wait_until(moved, MOVE_WITHIN_S, step=0.2), streams(api)
        timings["API lists the camera on the other node s"] = time.monotonic() - started
        if page is not None:  # its tile connects again, to the new worker, and plays on
            _, before = page.evaluate(PLAYING, "cam1")
            page.wait_for_function(f"({PLAYING})('cam1')[1] > {before + 1}", timeout=20000)
            picture = page.evaluate(PIXELS, "cam1")
            assert wait_until(lambda: page.evaluate(PIXELS, "cam1") != picture, 10, step=0.2)
            assert page.query_selector("#tile-cam1 video") is not None  # still WebRTC
            timings["page plays the moved camera again s"] = time.monotonic() - started
    by_node = {n["node_id"]: n for n in api.get("/api/nodes").json()}
    assert not by_node[lost]["alive"]
    assert by_node[staying]["streams"] == ["cam1", "cam2"]

    # watched from its new worker: offered again, as the page does when its video stops
    with Viewer(post_offer(api, "cam1")) as viewer:
        assert viewer.wait_frames(3, 30), viewer.states
    # its RTSP output now on the staying worker's server, beside cam2's
    assert wait_until(lambda: "rtsp" in streams(api)["cam1"]["views"], 20), streams(api)
    views = {n: r["views"]["rtsp"] for n, r in streams(api).items() if n in ("cam1", "cam2")}
    assert port_of(views["cam1"]) == port_of(views["cam2"]), views

"""Cluster mode without a cluster: ``--ray`` on the command line, and the API's answers over
a stand-in controller (no Ray needed: these are fast)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cluster.config import WORKER_PORT_TRIES, split_cameras
from pipeline.errors import SourceError
from service.app import create_app
from service.backend import NoCapacity, NoSuchStream, NotRunningNow, StreamExists
from service.cluster_app import ClusterBackend
from service.server import ApiServer
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
NODE = "0123456789abcdef" * 3


def test_ray_without_api_is_a_one_line_config_error() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "run.py"), "--ray", "auto"],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        "error: --ray needs --api HOST:PORT (the cluster runs as a service)"
    ]


def test_an_unreachable_head_is_a_one_line_config_error() -> None:
    port = free_port()  # nothing listens there
    done = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), str(ROOT / "configs" / "motion.yaml"),
         "--api", f"127.0.0.1:{free_port()}", "--ray", f"127.0.0.1:{port}"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-2000:]
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith(f"error: --ray 127.0.0.1:{port}: cannot reach the Ray head: ")
    )


class FakeController:
    """Answers as ``ClusterController`` does, for one camera ``cam1`` on node ``NODE``."""

    def __init__(self) -> None:
        self.ready = type("Ready", (), {"is_set": staticmethod(lambda: True)})()

    def list_streams(self) -> list[dict[str, Any]]:
        views = {
            "webrtc": "/webrtc/cam1",
            "mjpeg": "/live/cam1.mjpg",
            "rtsp": "rtsp://10.0.0.7:8555/live/cam1",
        }  # as its worker lists it
        return [{"name": "cam1", "state": "live", "node": NODE, "address": "10.0.0.7",
                 "views": views},
                {"name": "cam 2", "state": "pending", "node": None, "address": None}]  # fmt: skip

    def webrtc_answer(self, name: str, offer_sdp: str) -> str:
        if name == "cam 2":
            raise NotRunningNow(f"{name} is not running now (being placed); offer again")
        return f"v=0\r\na=answer-for:{name}:{len(offer_sdp)}\r\n"

    def add(self, name: str, url: str) -> dict[str, Any]:
        errors = {"cam1": StreamExists(f"a stream named {name!r} is running"),
                  "full": NoCapacity("no worker can start"),
                  "gone": SourceError(f"{url}: not found")}  # fmt: skip
        if name in errors:
            raise errors[name]
        return {"name": name}

    def remove(self, name: str) -> None:
        if name != "cam1":
            raise NoSuchStream(f"no stream named {name!r}")

    def wanted(self) -> list[str]:
        return ["cam1", "cam 2"]

    def live_jpeg(self, name: str, after: int, timeout: float) -> tuple[int, bytes] | None:
        return (after + 1, b"\xff\xd8fake\xff\xd9")

    def nodes(self) -> list[dict[str, Any]]:
        return [{"node": NODE, "address": "10.0.0.7", "alive": True, "streams": ["cam1"]}]

    def stages(self) -> dict[str, Any]:
        return {}

    def events(self, since: float | None, limit: int, source: str | None) -> list[dict]:
        return [{"kind": "cross", "source": source or "cam1", "since": since, "limit": limit}]

    def metrics_text(self) -> bytes:
        return b""


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    server = ApiServer(create_app(ClusterBackend(FakeController())), "127.0.0.1", free_port())
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=10) as one:
            yield one
    finally:
        server.stop()


def test_the_controllers_errors_become_http_answers(client: httpx.Client) -> None:
    def post(name: str) -> httpx.Response:
        return client.post("/api/streams", json={"name": name, "url": "rtsp://x/y"})

    assert post("cam2").status_code == 201
    assert post("cam1").status_code == 409
    assert post("full").status_code == 503
    gone = post("gone")
    assert gone.status_code == 400 and gone.json()["detail"] == "rtsp://x/y: not found"
    assert client.delete("/api/streams/cam1").status_code == 204
    assert client.delete("/api/streams/nobody").status_code == 404


def test_rows_and_nodes_name_the_node_and_views(client: httpx.Client) -> None:
    row, pending = client.get("/api/streams").json()
    assert (row["node"], row["node_id"], row["address"]) == (NODE[:8], NODE, "10.0.0.7")
    assert row["views"] == {"webrtc": "/webrtc/cam1", "mjpeg": "/live/cam1.mjpg",
                            "rtsp": "rtsp://10.0.0.7:8555/live/cam1"}  # fmt: skip
    # not running now: only the API's own paths (its name quoted as a URL's path)
    assert pending["views"] == {"webrtc": "/webrtc/cam%202", "mjpeg": "/live/cam%202.mjpg"}
    asked = client.get("/api/events", params={"since": 5.5, "limit": 3, "source": "x"}).json()
    assert asked == [{"kind": "cross", "source": "x", "since": 5.5, "limit": 3}]  # passed on
    (node,) = client.get("/api/nodes").json()
    assert node["node"] == NODE[:8] and node["streams"] == ["cam1"]
    assert client.get("/readyz").status_code == 200
    with client.stream("GET", "/live/cam1.mjpg") as response:
        first = next(response.iter_bytes())
    assert b"\xff\xd8fake" in first
    assert client.get("/live/nobody.mjpg").status_code == 404


def test_webrtc_offers_go_to_the_controller(client: httpx.Client) -> None:
    offer = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\n"
    answered = client.post("/webrtc/cam1", content=offer)
    assert answered.status_code == 201, answered.text
    assert answered.headers["content-type"] == "application/sdp"
    assert answered.text == f"v=0\r\na=answer-for:cam1:{len(offer)}\r\n"
    placing = client.post("/webrtc/cam%202", content=offer)
    assert placing.status_code == 503 and "being placed" in placing.json()["detail"]
    assert client.post("/webrtc/nobody", content=offer).status_code == 404
    assert client.post("/webrtc/cam1", content="hello").status_code == 400


def test_workers_rtsp_sinks_try_further_ports() -> None:
    raw = {"stages": [
        {"name": "cams", "kind": "sources", "sources": {}},
        {"name": "rtsp", "kind": "rtsp_server", "url": "rtsp://0.0.0.0:8554/live/{source}"},
        {"name": "mine", "kind": "rtsp_server", "url": "rtsp://0.0.0.0:9554/x", "port_tries": 1},
    ]}  # fmt: skip
    stages = split_cameras(raw)[0]["stages"]
    assert stages[1]["port_tries"] == WORKER_PORT_TRIES > 1
    assert stages[2]["port_tries"] == 1  # what a config says stays
    assert "port_tries" not in raw["stages"][1]  # the service's config is not changed

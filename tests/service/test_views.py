"""A stream's views in the one-process service: the rows' ``views`` (the API's WebRTC and
MJPEG paths, the per-source RTSP output's real URL, which a player opens), and WebRTC from a
browser-like client (aiortc) through ``POST /webrtc/{name}``: frames come, the connection
closes when the stream is removed, and the refusals (404, 400, 501)."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

import httpx
import pytest

from service.views import views_of, with_host
from tests.conftest import free_port, wait_until
from tests.service.serving import serving
from tests.service.webrtc_viewer import Viewer
from tests.stages.rtsp_clients import Player

LIVE = {"kind": "synthetic", "width": 96, "height": 64, "frames": None, "live": True,
        "fps": 25.0}  # fmt: skip


@contextlib.contextmanager
def serving_client(*sinks: dict) -> Iterator[tuple[httpx.Client, object]]:
    """The API over a running graph: camera ``cam1`` and ``sinks``; (a client, the app)."""
    with (
        serving(*sinks, camera=LIVE) as (url, app),
        httpx.Client(base_url=url, timeout=20) as client,
    ):
        yield client, app


def rows(client: httpx.Client) -> dict[str, dict]:
    return {row["name"]: row for row in client.get("/api/streams").json()}


def test_views_name_the_api_paths_and_a_reachable_host() -> None:
    assert views_of("a b") == {"webrtc": "/webrtc/a%20b", "mjpeg": "/live/a%20b.mjpg"}
    assert views_of("cam1", "rtsp://h:1/x")["rtsp"] == "rtsp://h:1/x"
    assert with_host("rtsp://0.0.0.0:8554/live/a", "10.0.0.7") == "rtsp://10.0.0.7:8554/live/a"
    assert with_host("rtsp://[::]:8554/live/a", "fd00::2") == "rtsp://[fd00::2]:8554/live/a"
    assert with_host("rtsp://127.0.0.1:8554/a", "10.0.0.7") == "rtsp://127.0.0.1:8554/a"
    assert with_host("rtsp://0.0.0.0:8554/a", None) == "rtsp://0.0.0.0:8554/a"


@pytest.mark.slow
def test_rows_carry_the_rtsp_url_really_served(tmp_path) -> None:
    port = free_port()
    rtsp = {"name": "rtsp", "kind": "rtsp_server", "url": f"rtsp://0.0.0.0:{port}/live/{{source}}",
            "port_tries": 4, "inputs": ["cams"]}  # fmt: skip
    with socket.socket() as other:  # another process's server on the port asked for
        other.bind(("0.0.0.0", port))
        other.listen()
        web = {"name": "web", "kind": "web", "inputs": ["cams"]}
        with serving_client(rtsp, web) as (client, _):
            assert wait_until(lambda: "rtsp" in rows(client)["cam1"]["views"], 20), rows(client)
            views = rows(client)["cam1"]["views"]
            assert views["webrtc"] == "/webrtc/cam1" and views["mjpeg"] == "/live/cam1.mjpg"
            served = views["rtsp"]  # 0.0.0.0 -> the host this client reached the API at
            assert served.startswith("rtsp://127.0.0.1:") and served.endswith("/live/cam1")
            assert port < int(served.split(":")[2].split("/")[0]) < port + 4
            player = Player(served, frames=3)
            player.start()
            player.join(20)
            assert player.error is None and len(player.received) >= 3
            assert player.size == (96, 64)


@pytest.mark.slow
def test_webrtc_through_the_api(tmp_path) -> None:
    web = {"name": "web", "kind": "web", "inputs": ["cams"]}
    with serving_client(web) as (client, app):

        def post(sdp: str) -> str:
            answered = client.post("/webrtc/cam1", content=sdp)
            assert answered.status_code == 201, answered.text
            return answered.text

        viewer = Viewer(post)
        try:
            assert viewer.wait_frames(5, 20), viewer.states
            assert viewer.sizes[-1] == (96, 64)
            assert app.state.backend.views.webrtc.connections == 1
            assert client.delete("/api/streams/cam1").status_code == 204
            assert viewer.ended.wait(10), viewer.states  # the server hung up: stream gone
            assert wait_until(lambda: app.state.backend.views.webrtc.connections == 0, 5)
        finally:
            viewer.close()
        assert client.post("/webrtc/cam1", content="v=0\r\n").status_code == 404  # ended
        assert client.post("/webrtc/nobody", content="v=0\r\n").status_code == 404
        assert client.post("/api/streams", json={"name": "cam2", "url": "synthetic:64x48"}
                           ).status_code == 201  # fmt: skip
        assert client.post("/webrtc/cam2", content="hello").status_code == 400
        bad = client.post("/webrtc/cam2", content="v=0\r\nm=nonsense\r\n")
        assert bad.status_code == 400 and "offer" in bad.json()["detail"]


def test_webrtc_without_a_web_sink_is_not_offered(tmp_path) -> None:
    video = {"name": "video", "kind": "video_file", "path": str(tmp_path / "{source}.mp4")}
    with serving_client(video) as (client, _):
        assert wait_until(lambda: rows(client)["cam1"]["frames"] > 0, 20)
        refused = client.post("/webrtc/cam1", content="v=0\r\n")
        assert refused.status_code == 501 and "web" in refused.json()["detail"]
        assert "rtsp" not in rows(client)["cam1"]["views"]  # no RTSP output in this config


def _offer() -> str:
    """A browser-like offer: receive one video track."""
    import asyncio

    from aiortc import RTCPeerConnection

    async def make() -> str:
        client = RTCPeerConnection()
        client.addTransceiver("video", direction="recvonly")
        await client.setLocalDescription(await client.createOffer())
        sdp = client.localDescription.sdp
        await client.close()
        return sdp

    return asyncio.run(make())


def test_an_answer_given_up_on_and_offers_past_the_cap_leave_no_connection(monkeypatch) -> None:
    import asyncio

    from aiortc import RTCPeerConnection

    from service import webrtc
    from stages.sinks.web import LiveHub

    views = webrtc.ThreadedViews(LiveHub())
    real = RTCPeerConnection.setLocalDescription

    async def slow(self, description):  # ICE gathering that waits on an unreachable server
        await asyncio.sleep(2)
        return await real(self, description)

    monkeypatch.setattr(RTCPeerConnection, "setLocalDescription", slow)
    try:
        with pytest.raises(TimeoutError, match=r"in 0\.3 s"):
            views.answer("cam1", _offer(), timeout=0.3)
        assert wait_until(lambda: views.connections == 0, 5), views.connections  # closed
        encoder = views.views.encoders["cam1"]
        assert wait_until(lambda: not encoder.viewers, 5)  # nobody left subscribed
        monkeypatch.setattr(webrtc, "MAX_VIEWERS", 0)
        with pytest.raises(webrtc.TooManyViewers):
            views.answer("cam1", _offer(), timeout=5)
        assert views.connections == 0
    finally:
        views.close()

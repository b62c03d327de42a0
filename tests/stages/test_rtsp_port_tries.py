"""``rtsp_server``'s ``port_tries``: a port taken by another process (another cluster worker
on the node) moves the server to the next free one, which ``served_url`` names; the server
is still shared under the port asked for; 1 (the default) keeps a taken port an error."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from pipeline.errors import ConfigError, SinkError
from stages.sinks.rtsp import server as rtsp_server
from stages.sinks.rtsp.server import acquire_server, release_server
from stages.sinks.rtsp_server import RtspServerSink
from tests.conftest import free_port

HOST = "127.0.0.1"


@pytest.fixture
def taken() -> Iterator[int]:
    """A port another process listens on (a socket of this test, outside the registry)."""
    port = free_port()
    with socket.socket() as other:
        other.bind((HOST, port))
        other.listen()
        yield port


def test_a_taken_port_moves_to_the_next_free_one(taken: int) -> None:
    with pytest.raises(OSError):
        acquire_server(HOST, taken, None)  # one try: taken is an error, as before
    server = acquire_server(HOST, taken, None, tries=4)
    try:
        assert taken < server.port < taken + 4
        assert acquire_server(HOST, taken, None, tries=4) is server  # found by the port asked
        release_server(server, HOST, taken)
        assert (HOST, taken) in rtsp_server._servers  # one user left
    finally:
        release_server(server, HOST, taken)
    assert (HOST, taken) not in rtsp_server._servers


def test_the_sink_serves_and_names_the_port_it_got(taken: int) -> None:
    sink = RtspServerSink(f"rtsp://{HOST}:{taken}/live/a", port_tries=3)
    sink.open()
    try:
        assert sink.served_url != f"rtsp://{HOST}:{taken}/live/a"
        assert sink.served_url.startswith(f"rtsp://{HOST}:") and sink.served_url.endswith("/live/a")
    finally:
        sink.close()
    refused = RtspServerSink(f"rtsp://{HOST}:{taken}/live/a")
    with pytest.raises(SinkError, match=f"cannot serve RTSP on {HOST}:{taken}: "):
        refused.open()
    with pytest.raises(ConfigError, match="port_tries"):
        RtspServerSink(f"rtsp://{HOST}:{taken}/live/a", port_tries=0)

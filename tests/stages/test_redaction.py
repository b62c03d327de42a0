"""One URL redaction, used wherever a URL is shown: no user info (a password may hold '@',
'/' or '?'), credential parameters masked, everything else kept; in errors, logs, source
ids and the API's stream listing."""

from __future__ import annotations

import logging

import pytest

from pipeline.config import build_graph, parse_config
from pipeline.errors import StreamError
from stages.sources import named_sources, readable_id
from stages.sources.group import SourceGroup
from stages.sources.stream import StreamSource
from stages.sources.urls import redact
from tests.conftest import free_port

SECRETS = ("s3cret", "p@ss", "pa/ss", "abc123", "ff00", "AKIA", "viewer", "admin")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("rtsp://viewer:s3cret@10.0.0.5:554/live/1", "rtsp://10.0.0.5:554/live/1"),
        # a password holding '@': the host follows the last one
        ("rtsp://admin:p@ss@cam:554/live?channel=1", "rtsp://cam:554/live?channel=1"),
        # pasted unencoded: '/' or '?' in the password
        ("rtsp://admin:pa/ss@cam/live", "rtsp://cam/live"),
        ("rtsp://admin:pa?ss@cam/live?x=1", "rtsp://cam/live?x=1"),
        ("rtsp://viewer@cam/live", "rtsp://cam/live"),
        ("http://cam/live.m3u8?token=abc123&quality=hd", "http://cam/live.m3u8?token=***&quality=hd"),
        ("http://cam/x?Access_Token=abc123;channel=2", "http://cam/x?Access_Token=***;channel=2"),
        ("http://cam/x?api_key=abc123&AUTH=abc123&sig=ff00&key=abc123&pass=abc123",
         "http://cam/x?api_key=***&AUTH=***&sig=***&key=***&pass=***"),
        ("http://cam/x?my_session_token=abc123&secret=abc123&password=abc123",
         "http://cam/x?my_session_token=***&secret=***&password=***"),
        ("https://b.s3.amazonaws.com/v.mp4?X-Amz-Credential=AKIA%2F1&X-Amz-Signature=ff00"
         "&X-Amz-Security-Token=abc123&X-Amz-Expires=60",
         "https://b.s3.amazonaws.com/v.mp4?X-Amz-Credential=***&X-Amz-Signature=***"
         "&X-Amz-Security-Token=***&X-Amz-Expires=60"),
        ("https://cam/x#access_token=abc123&state=1", "https://cam/x#access_token=***&state=1"),
        # kept as they are: no secrets, an '@' in the path, IPv6, paths, camera indices
        ("rtsp://cam/x?channel=1", "rtsp://cam/x?channel=1"),
        ("http://cam/users/a@b/live", "http://cam/users/a@b/live"),
        ("http://[::1]:8080/live@2", "http://[::1]:8080/live@2"),
        ("udp://@:5000", "udp://:5000"),
        ("media/clip.mp4", "media/clip.mp4"),
        ("0", "0"),
    ],
)  # fmt: skip
def test_redact(url: str, shown: str) -> None:
    assert redact(url) == shown
    assert redact(shown) == shown  # applying it again changes nothing


def test_the_old_helpers_are_gone() -> None:
    import stages.sources.group as group
    import stages.sources.stream as stream

    assert not hasattr(group, "public")
    assert stream.redact is redact  # imported, not a second copy


SECRET_URL = "rtsp://admin:p@ss@127.0.0.1:{port}/live?channel=1&token=abc123"


def test_a_stream_source_id_and_its_errors_show_no_secret(caplog) -> None:
    port = free_port()  # nothing listens there
    source = StreamSource(SECRET_URL.format(port=port), open_timeout=2)
    assert source.source_id == f"rtsp://127.0.0.1:{port}/live?channel=1&token=***"
    with caplog.at_level(logging.DEBUG, logger="framegraph"), pytest.raises(StreamError) as info:
        source.open()
    shown = str(info.value) + caplog.text
    assert "127.0.0.1" in str(info.value)
    assert not any(secret in shown for secret in SECRETS)


def test_a_named_stream_in_a_group_is_listed_redacted_with_its_query() -> None:
    group = SourceGroup({"door": SECRET_URL.format(port=554)})
    assert group.status()["inputs"]["door"]["url"] == (
        "rtsp://127.0.0.1:554/live?channel=1&token=***"
    )
    assert group.inputs["door"].source.source_id == "door"


def test_unnamed_sources_get_readable_ids_without_any_secret() -> None:
    assert readable_id("rtsp://admin:pa/ss@cam:554/live/1?token=abc123") == "cam-live-1"
    named = named_sources(["rtsp://admin:p@ss@cam/a", "rtsp://viewer:s3cret@cam/b"])
    assert list(named) == ["cam-a", "cam-b"]
    with pytest.raises(ValueError) as info:
        named_sources(["x=rtsp://admin:s3cret@cam/a", "x=rtsp://cam/b?token=abc123"])
    assert not any(secret in str(info.value) for secret in SECRETS)


def test_the_api_lists_streams_redacted() -> None:
    import httpx

    from service.app import create_app
    from service.server import ApiServer

    stages = [
        {"name": "cams", "kind": "sources", "keep_open": True,
         "sources": {"door": SECRET_URL.format(port=554)}},
        {"name": "out", "kind": "discard"},
    ]  # fmt: skip
    graph = build_graph(parse_config({"stages": stages}))
    group = graph.source_group()
    # Whatever the group holds, the listing redacts what it shows.
    group.inputs["door"].origin = "rtsp://admin:s3cret@cam/live?sig=ff00&channel=2"
    server = ApiServer(create_app(graph), "127.0.0.1", free_port())
    server.start()
    try:
        listed = httpx.get(f"{server.url}/api/streams", timeout=20).json()
    finally:
        server.stop()
    assert [row["url"] for row in listed] == ["rtsp://cam/live?sig=***&channel=2"]
    assert not any(secret in str(listed) for secret in SECRETS)

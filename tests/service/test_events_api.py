"""Events and counts in the service: ``GET /api/events`` lists the newest events of zones and
lines as the graph's ``web`` sink saw them (oldest first; ``since``, ``limit`` and
``source`` narrow it), each stream's row carries its newest ``counts``, and the page shows
both (a tile's counts, the events table)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import wait_until
from tests.service.event_stage import EVERY  # registers the test_events stage kind
from tests.service.serving import serving
from tests.service.test_page import chromium, needs_chromium


@pytest.fixture
def service() -> Iterator[tuple[str, httpx.Client]]:
    stages = ({"name": "zones", "kind": "test_events"}, {"name": "web", "kind": "web"})
    with serving(*stages) as (url, _), httpx.Client(base_url=url, timeout=20) as client:
        yield url, client


def events(client: httpx.Client, **query: Any) -> list[dict[str, Any]]:
    answer = client.get("/api/events", params=query)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_events_are_listed_newest_last_and_narrowed(service) -> None:
    _, client = service
    assert wait_until(lambda: len(events(client)) >= 6, 20, step=0.1), events(client)
    found = events(client, limit=1000)
    assert [e["track_id"] for e in found] == list(range(1, len(found) + 1))  # none lost
    assert all(e["kind"] == "cross" and e["where"] == "door" and e["source"] == "cam1"
               and e["frame_index"] % EVERY == 0 for e in found)  # fmt: skip
    assert [e["direction"] for e in found[:2]] == ["in", "out"] and "dwell_s" not in found[0]
    assert [e["track_id"] for e in events(client, limit=2)] == [e["track_id"] for e in found[-2:]]
    later = events(client, since=found[2]["wall_time"], limit=1000)
    assert later[0]["track_id"] == 4 and all(e["wall_time"] > found[2]["wall_time"] for e in later)
    assert events(client, source="nobody") == [] and events(client, limit=0) == []
    assert client.get("/api/events", params={"limit": -1}).status_code == 422

    (row,) = client.get("/api/streams").json()
    crossed = row["counts"]["line_counts"]["door"]
    assert crossed["in"]["person"] + crossed["out"]["person"] >= len(found)  # counted up to now
    assert row["counts"]["occupancy"]["lot"] in (0, 1, 2)


@needs_chromium
@pytest.mark.slow
def test_the_page_shows_counts_and_recent_events(service) -> None:
    url, _ = service
    with chromium() as browser:
        page = browser.new_page()
        page.goto(url)
        page.wait_for_function(
            "document.querySelector('#tile-cam1 .counts')?.textContent.includes('door:')",
            timeout=15000,
        )  # fmt: skip
        text = page.text_content("#tile-cam1 .counts")
        assert "lot:" in text and "inside" in text and " in, " in text and " out" in text
        page.wait_for_function("document.querySelectorAll('#events tbody tr').length >= 3")
        first = page.text_content("#events tbody tr")  # the newest first
        assert "cam1" in first and "cross" in first and "door" in first and "person #" in first

"""The web page in a real browser (Debian's chromium, driven by Playwright; nothing
downloaded): a tile's <video> plays the stream over WebRTC, a stream added through the form
gets a playing tile, removing it takes the tile away."""

from __future__ import annotations

import contextlib
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.service.serving import serving

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
needs_chromium = pytest.mark.skipif(
    not Path(CHROMIUM).is_file(), reason="needs Debian's chromium (apt-get install chromium)"
)
WEB = {"name": "web", "kind": "web"}
PLAYING = """(name) => {
  const video = document.querySelector(`#tile-${name} video`);
  return video ? [video.videoWidth, video.currentTime] : [0, 0];
}"""
PIXELS = """(name) => {
  const video = document.querySelector(`#tile-${name} video`);
  const canvas = document.createElement("canvas");
  canvas.width = video.videoWidth; canvas.height = video.videoHeight;
  const context = canvas.getContext("2d");
  context.drawImage(video, 0, 0);
  return Array.from(context.getImageData(0, 0, canvas.width, canvas.height / 4).data
    .filter((_, i) => i % 97 === 0));
}"""


@pytest.fixture
def page_url() -> Iterator[str]:
    with serving(WEB) as (url, _):
        yield url


@contextlib.contextmanager
def chromium() -> Iterator:
    """Headless Debian chromium through Playwright."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-features=WebRtcHideLocalIpsWithMdns"],
        )  # fmt: skip
        try:
            yield browser
        finally:
            browser.close()


@needs_chromium
@pytest.mark.slow
def test_the_page_plays_adds_and_removes_streams(page_url: str) -> None:
    with chromium() as browser:
        page = browser.new_page()
        page.goto(page_url)
        page.wait_for_function(f"({PLAYING})('cam1')[0] > 0", timeout=15000)
        width, start = page.evaluate(PLAYING, "cam1")
        first = page.evaluate(PIXELS, "cam1")
        page.wait_for_timeout(1000)
        assert width == 320 and page.evaluate(PLAYING, "cam1")[1] > start + 0.5
        assert page.evaluate(PIXELS, "cam1") != first  # the picture moves

        page.fill("input[name=name]", "cam2")
        page.fill("input[name=url]", "synthetic:160x120@25")
        page.click("button[type=submit]")
        page.wait_for_function(f"({PLAYING})('cam2')[0] > 0", timeout=15000)
        assert page.evaluate(PLAYING, "cam2")[0] == 160

        page.click("#tile-cam2 button.remove")
        page.wait_for_selector("#tile-cam2", state="detached", timeout=10000)
        assert page.evaluate(PLAYING, "cam1")[0] == 320  # the other one plays on


@needs_chromium
@pytest.mark.slow
def test_the_page_asks_for_the_token_of_a_server_that_has_one() -> None:
    with serving(WEB, token="s3cret") as (url, _), chromium() as browser:
        page = browser.new_page()
        page.goto(url)
        assert not page.is_visible("#token")
        page.fill("input[name=name]", "cam2")
        page.fill("input[name=url]", "synthetic:160x120@25")
        page.click("button[type=submit]")
        page.wait_for_selector("#token", state="visible", timeout=5000)
        assert "token" in page.text_content("#message")
        assert page.query_selector("#tile-cam2") is None  # refused: nothing added

        page.fill("#token", "wrong")
        page.click("button[type=submit]")
        page.wait_for_function("document.querySelector('#message').textContent.includes('wrong')")
        page.fill("#token", "s3cret")
        page.click("button[type=submit]")
        page.wait_for_function(f"({PLAYING})('cam2')[0] > 0", timeout=15000)
        assert page.input_value("input[name=name]") == ""
        page.click("#tile-cam2 button.remove")  # the token is remembered
        page.wait_for_selector("#tile-cam2", state="detached", timeout=10000)


def descendants(root: int, name: str) -> list[int]:
    """Processes below ``root`` whose command name starts with ``name`` (from /proc)."""
    parents: dict[int, int] = {}
    names: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                parents[int(entry.name)] = int(fields[1])
                names[int(entry.name)] = (entry / "comm").read_text().strip()
    found, frontier = [], [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent]
        frontier += children
        found += [pid for pid in children if names.get(pid, "").startswith(name)]
    return found


@needs_chromium
@pytest.mark.slow
def test_a_killed_viewer_leaves_no_connection_or_encoder(tmp_path) -> None:
    import os
    import signal
    import time

    from playwright.sync_api import sync_playwright

    with serving(WEB) as (url, app):
        views = app.state.backend.views.webrtc.views  # the WebRTCViews behind /webrtc

        def encoders() -> list[threading.Thread]:  # this app's encoder threads still running
            found = [e.thread for e in views.encoders.values()]
            return [t for t in found if t is not None and t.is_alive()]

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True,
                args=["--no-sandbox", "--disable-features=WebRtcHideLocalIpsWithMdns"],
            )  # fmt: skip
            page = browser.new_page()
            page.goto(url)
            page.wait_for_function(f"({PLAYING})('cam1')[0] > 0", timeout=15000)
            assert len(views.connections) == 1 and len(encoders()) == 1
            for pid in descendants(os.getpid(), "chrom"):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)  # no goodbye: the connection just goes quiet
            deadline = time.monotonic() + 60  # ICE consent checks notice within ~30 s
            while (views.connections or encoders()) and time.monotonic() < deadline:
                time.sleep(0.5)
            assert not views.connections and not encoders()
            with contextlib.suppress(Exception):
                browser.close()


@needs_chromium
@pytest.mark.slow
@pytest.mark.parametrize("how", ["hangs up", "goes silent"])
def test_a_dropped_connection_is_replaced_within_seconds(how: str) -> None:
    """The server's end of the page's WebRTC connection hangs up (a camera's worker does when
    the camera is removed or its worker stops) or goes silent (a worker killed with its
    node): the tile connects again within seconds and plays over WebRTC, not MJPEG."""
    import time

    with serving(WEB) as (url, app):
        webrtc = app.state.backend.views.webrtc
        with chromium() as browser:
            page = browser.new_page()
            page.goto(url)
            page.wait_for_function(f"({PLAYING})('cam1')[0] > 0", timeout=15000)
            assert webrtc.connections == 1
            dropped = time.monotonic()
            if how == "hangs up":
                webrtc.close()  # every viewer's connection closed from the server's side
                wanted = 1
            else:  # its event loop stops answering anything, as in a killed process; the
                # next offer gets a loop of its own (the old connection stays counted)
                loop, thread = webrtc._loop, webrtc._thread
                loop.call_soon_threadsafe(loop.stop)
                thread.join(5)
                webrtc._loop = webrtc._thread = None
                wanted = 2
            deadline = dropped + 20
            while webrtc.connections < wanted and time.monotonic() < deadline:
                time.sleep(0.1)
            again = time.monotonic() - dropped
            assert webrtc.connections == wanted, "the page did not connect again"
            _, start = page.evaluate(PLAYING, "cam1")
            page.wait_for_function(f"({PLAYING})('cam1')[1] > {start + 0.5}", timeout=10000)
            assert page.query_selector("#tile-cam1 video") is not None  # still WebRTC
            print(f"\nconnected again {again:.1f} s after the server {how}")
            assert again < (3 if how == "hangs up" else 8)

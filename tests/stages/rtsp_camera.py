"""Real RTSP cameras for the tests: GStreamer's RTSP server (Debian's
gir1.2-gst-rtsp-server-1.0, x264enc from gstreamer1.0-plugins-ugly) serving a live test
pattern, run by Debian's own python3 (its python3-gi), one process per camera.

``Camera(port)`` starts one on ``rtsp://127.0.0.1:PORT/cam``; ``stop()`` kills it (every
client loses its connection at once, as when a camera loses power) and ``start()`` brings it
back on the same port.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SYSTEM_PYTHON = "/usr/bin/python3"
SERVER = textwrap.dedent("""
    import sys
    import gi
    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    port, path, fps = sys.argv[1], sys.argv[2], int(sys.argv[3])
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        f"( videotestsrc is-live=true pattern=ball ! video/x-raw,width=160,height=120,"
        f"framerate={fps}/1 ! x264enc tune=zerolatency speed-preset=ultrafast "
        f"key-int-max={fps} ! rtph264pay name=pay0 pt=96 )"
    )
    factory.set_shared(True)
    server.get_mount_points().add_factory(path, factory)
    if server.attach(None) == 0:
        sys.exit("cannot listen on port " + port)
    print("ready", flush=True)
    GLib.MainLoop().run()
""")


def system_gstreamer_has(*elements: str, rtsp_server: bool = False) -> bool:
    """Debian's python3 with python3-gi has GStreamer with these ``elements`` (and, with
    ``rtsp_server``, the RTSP server bindings)."""
    if not Path(SYSTEM_PYTHON).is_file():
        return False
    server = "gi.require_version('GstRtspServer', '1.0'); " if rtsp_server else ""
    check = (
        f"import gi; gi.require_version('Gst', '1.0'); {server}from gi.repository import Gst;"
        f" Gst.init(None); assert all(Gst.ElementFactory.find(e) for e in {elements!r})"
    )
    return subprocess.run([SYSTEM_PYTHON, "-c", check], capture_output=True).returncode == 0


def gstreamer_rtsp_available() -> bool:
    """GStreamer's RTSP server bindings and x264enc are here (for the camera)."""
    return system_gstreamer_has("x264enc", rtsp_server=True)


needs_gstreamer_rtsp = pytest.mark.skipif(
    sys.platform != "linux" or not gstreamer_rtsp_available(),
    reason="needs Debian's python3-gi, gir1.2-gst-rtsp-server-1.0, gstreamer1.0-plugins-ugly",
)


class Camera:
    """A GStreamer RTSP camera on 127.0.0.1:``port`` at ``fps`` (started at once)."""

    def __init__(self, port: int, fps: int = 25, path: str = "/cam") -> None:
        self.port, self.fps, self.path = port, fps, path
        self.url = f"rtsp://127.0.0.1:{port}{path}"
        self.process: subprocess.Popen[str] | None = None
        self.start()

    def start(self) -> None:
        self.process = subprocess.Popen(
            [SYSTEM_PYTHON, "-c", SERVER, str(self.port), self.path, str(self.fps)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        line = self.process.stdout.readline()  # type: ignore[union-attr]
        if line.strip() != "ready":
            self.stop()
            raise RuntimeError(f"the RTSP camera did not start: {line!r}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None

"""Frame sources, and the mapping from a ``--source`` string to a source stage."""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Any

from stages.sources import camera, file, images, scene, stream, synthetic  # noqa: F401  (registers)

STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt", "rtp")


def source_args_for(uri: str) -> dict[str, Any]:
    """Config entry (``kind`` + arguments) for a ``--source`` value.

    ``0`` or ``/dev/video0`` -> camera; ``scheme://...`` -> stream; a folder or a
    glob -> images; ``synthetic`` or ``synthetic:WxH`` -> test pattern; anything
    else -> file.
    """
    if uri.isdigit() or uri.startswith("/dev/video"):
        return {"kind": "camera", "device": uri}
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
    if scheme in STREAM_SCHEMES:
        return {"kind": "stream", "url": uri}
    if uri == "synthetic" or uri.startswith("synthetic:"):
        args: dict[str, Any] = {"kind": "synthetic"}
        if ":" in uri:
            width, height = uri.split(":", 1)[1].lower().split("x")
            args.update(width=int(width), height=int(height))
        return args
    if Path(uri).is_dir() or (glob.has_magic(uri) and not Path(uri).exists()):
        return {"kind": "images", "path": uri}
    return {"kind": "file", "path": uri}

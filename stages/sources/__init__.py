"""Frame sources, and the mapping from a ``--source`` string to a source stage."""

from __future__ import annotations

import glob
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from stages.sources import camera, file, group, images, scene, stream, synthetic  # noqa: F401
from stages.sources.urls import redact

STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt", "rtp")


def source_args_for(uri: str) -> dict[str, Any]:
    """Config entry (``kind`` + arguments) for a ``--source`` value.

    ``0`` or ``/dev/video0`` -> camera; ``scheme://...`` -> stream; a folder or a
    glob -> images; ``synthetic`` or ``synthetic:WxH`` -> test pattern (``synthetic:WxH@FPS``:
    live at FPS, endless, like a camera); anything else -> file.
    """
    if uri.isdigit() or uri.startswith("/dev/video"):
        return {"kind": "camera", "device": uri}
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
    if scheme in STREAM_SCHEMES:
        return {"kind": "stream", "url": uri}
    if uri == "synthetic" or uri.startswith("synthetic:"):
        args: dict[str, Any] = {"kind": "synthetic"}
        if ":" in uri:
            size, at, fps = uri.split(":", 1)[1].lower().partition("@")
            width, height = size.split("x")
            args.update(width=int(width), height=int(height))
            if at:  # a live camera: paced, endless
                args.update(fps=float(fps), live=True, frames=None)
        return args
    if Path(uri).is_dir() or (glob.has_magic(uri) and not Path(uri).exists()):
        return {"kind": "images", "path": uri}
    return {"kind": "file", "path": uri}


NAMED = re.compile(r"^([A-Za-z0-9_][A-Za-z0-9_-]*)=(.+)$")
"""``NAME=INPUT``: a plain word before the first ``=`` (so ``rtsp://cam/x?channel=1`` is a URL)."""


def split_name(value: str) -> tuple[str | None, str]:
    """A ``--source`` value -> (its name, or None; the input)."""
    match = NAMED.match(value)
    return (match.group(1), match.group(2)) if match else (None, value)


def readable_id(uri: str) -> str:
    """A source id for an unnamed input: the file's or folder's name without suffix, the
    camera's (``camera0``), or the stream's host and path with any user, password, port,
    query or token left out (``rtsp://u:pw@10.0.0.5:554/live/1?token=x`` -> ``10.0.0.5-live-1``)."""
    if uri.isdigit():
        return f"camera{uri}"
    if "://" in uri:
        parts = urlsplit(redact(uri))  # as shown anywhere else: no user info to misparse
        words = [parts.hostname or "", *parts.path.split("/")]
        return "-".join(w for w in words if w) or parts.scheme
    if uri.startswith("synthetic"):
        return "synthetic"
    name = Path(uri.split("*")[0].rstrip("/")).name
    return Path(name).stem or name or "source"


def input_of(entry: str | dict[str, Any]) -> str:
    """What a source entry reads, as written (not redacted): a ``--source`` string as it
    is, else the entry's url, path or device, else its kind (``synthetic``)."""
    if isinstance(entry, str):
        return entry
    return str(next((entry[k] for k in ("url", "path", "device", "kind") if entry.get(k)), ""))


def named_sources(values: list[str]) -> dict[str, str]:
    """``--source`` values -> {source id: input}: given names, else readable ids made
    unique with ``-2``, ``-3``, ...

    Raises:
        ValueError: two inputs given the same name.
    """
    named: dict[str, str] = {}
    for value in values:
        name, uri = split_name(value)
        if name is not None and name in named:
            raise ValueError(f"--source {redact(value)}: the name {name!r} is given twice")
        if name is None:
            base = name = readable_id(uri)
            count = 1
            while name in named or any(split_name(v)[0] == name for v in values):
                count += 1
                name = f"{base}-{count}"
        named[name] = uri
    return named

"""The workers' config, made from the service's: cameras taken out of it, and outputs made
safe for processes that may be killed or share a folder.

A worker runs the service's graph with an empty source group kept open (the controller adds
cameras where it places them); a file for all cameras becomes a file per worker, and its
``video_file`` sinks write so that a worker killed with its node still leaves playable files
and a camera placed again never overwrites them.
"""

from __future__ import annotations

import copy
import logging
import os
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError
from stages.sources import named_sources

log = logging.getLogger("framegraph")
ROOT = Path(__file__).resolve().parents[1]
"""The repository: on every node it is expected at this same path."""
WORKER_PORT_TRIES = 8
"""Ports a worker's ``rtsp_server`` sink tries, from its url's upward (see :func:`worker_ports`)."""
WORKER = "{worker}"
"""In a workers' config path: the name of the worker writing it."""


def split_cameras(raw: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str | dict[str, Any]]]:
    """A service config -> (the workers' config, the cameras in it).

    The first source must be a source group (``kind: sources``); its inputs become the
    controller's cameras, and the workers get the config with that group empty and kept
    open (cameras are added to them one by one where they are placed) and their
    ``video_file`` sinks crash-safe (:func:`crash_safe_outputs`). ``raw`` is not changed.

    Raises:
        ConfigError: the first source is not a source group, or its inputs are wrong.
    """
    from pipeline.config import STAGE_KINDS
    from pipeline.stage import Source

    stages = copy.deepcopy(raw.get("stages") or [])
    first = next((e for e in stages if isinstance(e, dict)
                  and isinstance(STAGE_KINDS.get(e.get("kind", "")), type)
                  and issubclass(STAGE_KINDS[e["kind"]], Source)), None)  # fmt: skip
    if first is None or first.get("kind") != "sources":
        raise ConfigError("a cluster config's first source must be a source group (kind: sources)")
    given = first.get("sources") or {}
    if isinstance(given, list):
        try:
            cameras: dict[str, str | dict[str, Any]] = dict(named_sources(given))
        except ValueError as error:
            raise ConfigError(f"sources: {error}") from None
    elif isinstance(given, dict):
        cameras = dict(given)
    else:
        raise ConfigError("sources: expected a list of inputs or a mapping name -> input")
    first["sources"], first["keep_open"] = {}, True
    per_worker_paths(stages)
    crash_safe_outputs(stages)
    worker_ports(stages)
    return {**raw, "stages": stages}, cameras


def worker_ports(stages: list[Any]) -> None:
    """Gives every ``rtsp_server`` stage that leaves it unset ``port_tries:
    WORKER_PORT_TRIES``: every worker of a node asks for the same port, and a second one
    then serves its cameras' RTSP outputs on the next free port (its rows name the real
    URL) instead of failing. ``stages`` (config entries) are changed in place."""
    for entry in stages:
        if isinstance(entry, dict) and entry.get("kind") == "rtsp_server":
            entry.setdefault("port_tries", WORKER_PORT_TRIES)


def per_worker_paths(stages: list[Any]) -> None:
    """Gives each worker files of its own where a sink writes one file for all cameras:
    a sink ``path`` without ``{source}`` gets ``-{worker}`` before its suffix
    (``out/events.jsonl`` -> ``out/events-worker-1.jsonl``, filled in by
    :func:`for_worker`), as two workers on one node, or nodes sharing a folder, would
    otherwise write the same file (``-``, standard output, stays). Likewise an ``mqtt``
    sink's ``client_id`` (a broker drops a session whose id another client takes), and an
    ``event_log`` appends unless told otherwise (a camera placed again on a worker writing
    the same file keeps what was logged). ``stages`` (config entries) are changed in
    place."""
    from pipeline.config import STAGE_KINDS
    from pipeline.per_source import PLACEHOLDER
    from pipeline.stage import Sink

    for entry in stages:
        if not isinstance(entry, dict):
            continue  # the config's check reports it
        kind = STAGE_KINDS.get(entry.get("kind", ""))
        path = entry.get("path") if isinstance(kind, type) and issubclass(kind, Sink) else None
        if entry.get("kind") == "mqtt" and entry.get("client_id"):
            # a broker drops a session when another client takes its id: one per worker
            entry["client_id"] = f"{entry['client_id']}-{WORKER}"
        if entry.get("kind") == "event_log":
            entry.setdefault("append", True)  # a camera placed again keeps what was logged
        if isinstance(path, str) and path != "-" and PLACEHOLDER not in path:
            given = Path(path)
            entry["path"] = str(given.with_name(f"{given.stem}-{WORKER}{given.suffix}"))
            log.info("cluster: %s writes %s per worker", entry.get("name", entry["kind"]),
                     entry["path"])  # fmt: skip


def for_worker(config: dict[str, Any], name: str) -> dict[str, Any]:
    """The workers' config for the worker called ``name``: ``{worker}`` in its sinks'
    paths and MQTT client ids filled in (see :func:`per_worker_paths`). ``config`` is not
    changed."""
    stages = [{**entry, **{key: entry[key].replace(WORKER, name) for key in ("path", "client_id")
                           if isinstance(entry.get(key), str)}}
              if isinstance(entry, dict) else entry
              for entry in config.get("stages") or []]  # fmt: skip
    return {**config, "stages": stages}


def crash_safe_outputs(stages: list[Any]) -> None:
    """Makes the ``video_file`` sinks among ``stages`` (config entries, changed in place)
    safe on a worker that may die with its node.

    An MP4 sink that sets neither ``fragmented`` nor ``segment_seconds`` gets
    ``fragmented: true``: its file plays up to the last complete fragment after a kill,
    and (its default ``on_exists: number``) a camera placed again writes ``cam-1.mp4``
    next to ``cam.mp4`` instead of replacing it, which matters wherever nodes share the
    output folder. A sink of another container gets ``on_exists: number`` only (its file
    is lost with a killed worker: a warning says to use .mp4). What a config sets itself
    is kept, with a warning where it overwrites.
    """
    from stages.sinks.video_file import MP4_SUFFIXES

    for entry in stages:
        if not isinstance(entry, dict) or entry.get("kind") != "video_file":
            continue
        name = entry.get("name", "video_file")
        mp4 = Path(str(entry.get("path", ""))).suffix.lower() in MP4_SUFFIXES
        chosen = "fragmented" in entry or "segment_seconds" in entry
        if not chosen and mp4:
            entry["fragmented"] = True
        elif not chosen:
            entry.setdefault("on_exists", "number")
            log.warning(
                "cluster: %s: a worker killed while writing %s leaves it unplayable; "
                "an .mp4 path is written crash-safe", name, entry.get("path"),
            )  # fmt: skip
        if entry.get("on_exists") == "overwrite":
            log.warning(
                "cluster: %s: on_exists: overwrite: a camera placed again on another worker "
                "replaces its earlier file where nodes share a folder", name,
            )  # fmt: skip


def worker_pythonpath() -> str:
    """The workers' ``PYTHONPATH``: this repository first (a worker unpickles
    ``cluster.worker.GraphWorker`` by importing it, and Ray passes on only the driver's
    script folder), then whatever this process was given."""
    given = os.environ.get("PYTHONPATH")
    return os.pathsep.join([str(ROOT), *([given] if given else [])])

"""Helpers for tests on a real local Ray cluster: every process it started is found (from
/proc, no ``ps`` needed), so a test can end one and the fixture can check none is left."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple

timings: dict[str, float] = {}
"""Seconds measured by the cluster tests (printed when a cluster shuts down)."""
RAYLETS: set[int] = set()
"""Process ids of every raylet the tests started."""


class _Process(NamedTuple):
    parent: int
    args: bytes  # the command line, NUL-separated
    env: set[bytes]  # NAME=VALUE entries (empty for another user's process)


def processes() -> dict[int, _Process]:
    """Every running process (zombies left out), read from /proc (no ``ps`` needed)."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            state, parent = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:2]
            args = (entry / "cmdline").read_bytes()
        except OSError:  # ended meanwhile
            continue
        try:
            env = set((entry / "environ").read_bytes().split(b"\0"))
        except OSError:
            env = set()
        if state != "Z":
            out[int(entry.name)] = _Process(int(parent), args, env)
    return out


def raylet_pid(node: Any) -> int:
    """The node's raylet process id, remembered: its workers are found by it at the end."""
    pid = node.all_processes["raylet"][0].process.pid
    RAYLETS.add(pid)
    return pid


def ray_processes(session: str) -> set[int]:
    """Processes of this module's cluster: those naming its session (GCS, raylets, agents'
    command lines), the workers of its raylets (Ray sets ``RAY_RAYLET_PID`` in them, which
    outlives their raylet), and Ray processes below this one."""
    table = processes()
    children: dict[int, list[int]] = {}
    for pid, process in table.items():
        children.setdefault(process.parent, []).append(pid)
    below, todo = set(), [os.getpid()]
    while todo:
        for child in children.get(todo.pop(), []):
            below.add(child)
            todo.append(child)
    workers_of = {f"RAY_RAYLET_PID={pid}".encode() for pid in RAYLETS}
    return {pid for pid, process in table.items()
            if session.encode() in process.args or process.env & workers_of
            or (pid in below and b"ray" in process.args)}  # fmt: skip

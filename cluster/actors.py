"""The controller's side of its worker actors: joining Ray, calling workers and reading
their answers and errors, and checking their health.

Ray's errors are turned into the few the controller acts on: :class:`WorkerLost` (the actor
is dead: drop it and place its cameras again), ``TimeoutError`` (no answer in time), and
the ``FrameGraphError`` a worker raised (its one line, for the API).
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field
from typing import Any

from pipeline.errors import ConfigError, FrameGraphError, StageError

HEAD_TIMEOUT_S = 5.0
"""How long joining a cluster waits for its head to take a connection."""
HEALTH_GROUP = "health"
"""The workers' concurrency group for health checks: a thread of its own, so that a ping is
answered at once while every other thread waits on slow calls (WebRTC answers wait up to
15 s on ICE gathering) and a busy worker is not taken for dead."""


class WorkerLost(Exception):
    """A call found its worker dead (the controller drops it and places its cameras
    again)."""


def require_ray() -> Any:
    """The ``ray`` module.

    Raises:
        ConfigError: Ray is not installed (one line saying how to install it).
    """
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "--ray needs Ray, which is not installed: pip install 'ray>=2.9'"
        ) from None
    return ray


def connect(address: str) -> None:
    """Joins a Ray cluster: ``auto`` joins the one this machine belongs to (``RAY_ADDRESS``,
    or the last one started here) or starts one in this process; else ``HOST:PORT`` of the
    head node (or a ``ray://`` client address).

    Raises:
        ConfigError: no Ray, or the cluster cannot be reached.
    """
    ray = require_ray()
    if address != "auto" and "://" not in address:
        _reachable(address)  # Ray itself keeps retrying a dead head for minutes
    try:
        ray.init(address=None if address == "auto" else address, log_to_driver=True)
    except (ConnectionError, ValueError, RuntimeError) as error:
        raise ConfigError(f"--ray {address}: cannot join the cluster: {error}") from None


def _reachable(address: str, timeout: float = HEAD_TIMEOUT_S) -> None:
    """Checks that the head's ``HOST:PORT`` takes a TCP connection.

    Raises:
        ConfigError: it is not ``HOST:PORT``, or nothing answers there (one line).
    """
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--ray {address}: expected auto or the head's HOST:PORT")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout):
            pass
    except OSError as error:
        why = error.strerror or type(error).__name__
        raise ConfigError(f"--ray {address}: cannot reach the Ray head: {why}") from None


@dataclass
class Worker:
    """A worker actor as the controller knows it."""

    name: str
    handle: Any  # a ray ActorHandle of GraphWorker
    node: str = ""
    address: str = ""
    cameras: set[str] = field(default_factory=set)
    """Its cameras: running, and being opened there (so that placing counts them)."""
    question: Any = None  # the health check in flight (an ObjectRef), if any
    asked_at: float = 0.0
    load: float | None = None


def result_of(ray: Any, ref: Any, call: str, timeout: float) -> Any:
    """The result of a worker's call already made.

    Args:
        ray: the ``ray`` module.
        ref: the call's ObjectRef.
        call: ``worker: method``, for the errors.
        timeout: seconds to wait for it.

    Raises:
        WorkerLost: the actor is dead.
        TimeoutError: no answer in ``timeout`` seconds.
        FrameGraphError: what the worker raised (a StageError for anything else).
    """
    try:
        return ray.get(ref, timeout=timeout)
    except ray.exceptions.RayActorError as error:
        raise WorkerLost(str(error)) from None
    except ray.exceptions.GetTimeoutError:
        worker, _, method = call.partition(": ")
        raise TimeoutError(f"{worker} did not answer {method} in {timeout:.0f} s") from None
    except ray.exceptions.RayTaskError as error:
        cause = getattr(error, "cause", None)
        if isinstance(cause, (FrameGraphError, TimeoutError)):
            raise cause from None
        raise StageError(f"{call}: {one_line(error)}") from None


def gather(ray: Any, calls: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Waits for several calls at once (name -> ObjectRef): name -> answer, or the exception
    it raised (a TimeoutError for one not answered in ``timeout`` seconds)."""
    if not calls:
        return {}
    ray.wait(list(calls.values()), num_returns=len(calls), timeout=timeout)
    out: dict[str, Any] = {}
    for name, ref in calls.items():
        try:
            out[name] = ray.get(ref, timeout=0)
        except ray.exceptions.GetTimeoutError:
            out[name] = TimeoutError(f"{name} did not answer in {timeout:.0f} s")
        except ray.exceptions.RayError as error:
            out[name] = error
    return out


def check_workers(
    ray: Any, workers: list[Worker], unresponsive_after: float
) -> list[tuple[Worker, str]]:
    """One round of health checks: each worker's answer to the last question (its load
    noted), or how long it is overdue; a new question to each that answered.

    Returns:
        The workers found dead, and why: their node is gone (Ray's node table), their
        actor died, their graph ended, or no answer for ``unresponsive_after`` seconds (a
        node cut off is seen by Ray only after its own health checks, ~15 s and more).
    """
    alive = {n["NodeID"] for n in ray.nodes() if n.get("Alive")}
    dead = []
    now = time.monotonic()
    for worker in workers:
        if worker.node not in alive:
            dead.append((worker, "its node is gone"))
            continue
        if worker.question is not None:
            done, _ = ray.wait([worker.question], timeout=0)
            if not done:
                if now - worker.asked_at > unresponsive_after:
                    dead.append((worker, f"no answer for {now - worker.asked_at:.0f} s"))
                continue
            try:
                answer = ray.get(worker.question)
            except ray.exceptions.RayActorError:
                dead.append((worker, "its actor died"))
                continue
            except ray.exceptions.RayError as error:
                dead.append((worker, one_line(error)))
                continue
            worker.load = answer["load"]
            if not answer["running"]:
                dead.append((worker, "its graph ended"))
                continue
        worker.question = worker.handle.ping.options(concurrency_group=HEALTH_GROUP).remote()
        worker.asked_at = now
    return dead


def one_line(error: BaseException) -> str:
    """An error's first line (a Ray error's string carries the remote traceback)."""
    cause = getattr(error, "cause", None)
    if isinstance(cause, BaseException):
        error = cause
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")

"""The cluster's controller, in the API process: the cameras wanted, and workers running them.

The controller holds the WANTED set of cameras (name -> input) and reconciles it against
what runs. A camera is placed on the worker with the most room (``streams_per_worker``);
when every worker is full and the cluster can fit another (``num_cpus`` / ``num_gpus`` per
worker), a new worker actor is started, and when it cannot, the camera goes to the least
loaded worker anyway: a camera running on a busy worker beats one not running.

Failures: every ``health_interval`` seconds each worker is asked whether its graph runs
(without waiting for the answer: the question is checked at the next round). A worker is
dropped when a call says its actor died (``RayActorError``, which covers ``ActorDiedError``
and ``ActorUnavailableError``), when Ray reports its node dead, when its graph has ended, or
when it has left a question unanswered for ``unresponsive_after`` seconds (a node that
vanished is seen by Ray only after its own health checks, ~15 s and more). Its cameras are
then placed again like new ones, on the workers left or on new workers. Workers are started
without ``max_restarts``: Ray does not restart an actor whose resources fit nowhere, and a
restarted one would come back without its cameras anyway, so the controller re-places
cameras itself.

The calls to workers and their health checks are ``cluster.actors``'.

Locks: ``_lock`` guards the state and is held only briefly; ``_placing`` serialises the
changes that call workers (adding, placing again, dropping), so two of them never pick the
same room. Listing and metrics take neither for a worker's call.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

from cluster.actors import (
    HEALTH_GROUP,
    Worker,
    WorkerLost,
    check_workers,
    gather,
    one_line,
    require_ray,
    result_of,
)
from cluster.config import split_cameras, worker_pythonpath
from cluster.metrics import cluster_metrics_text, cluster_table, newest_events
from pipeline.config import ClusterSettings, parse_config
from pipeline.errors import FrameGraphError, StageError
from service.backend import (  # the API's 503, 404, 503, 409
    NoCapacity,
    NoSuchStream,
    NotRunningNow,
    StreamExists,
)
from service.webrtc import ANSWER_TIMEOUT_S
from stages.sources import input_of
from stages.sources.urls import redact

__all__ = ["ClusterController", "NoCapacity", "NoSuchStream", "StreamExists"]

log = logging.getLogger("framegraph")
ADD_TIMEOUT_S = 60.0
"""How long a worker may take to open a new camera (a stream's connection attempts)."""
REMOVE_TIMEOUT_S = 30.0
"""How long a worker may take to end a camera and finalise its outputs."""
ASK_TIMEOUT_S = 5.0
"""How long listing and metrics wait for each worker's answer."""
RETRY_S = 5.0
"""After a camera could not be placed again, the wait before the next try."""


@dataclass
class _Attempt:
    """A camera being opened on a worker: its ``add_stream`` call in flight."""

    name: str
    entry: str | dict[str, Any]
    worker: Worker
    answer: Any  # the call's ObjectRef
    started: float
    background: bool  # placed again by the loop (which settles it), not by add()


class ClusterController:
    """Places cameras on worker actors of a Ray cluster and keeps them running.

    Ray must be initialised (:func:`connect`) before the controller is made.

    Args:
        config: the service's raw config (as loaded from YAML, overrides applied): the
            workers' graph, its first source a source group whose inputs are the cameras
            to start with, and the ``cluster:`` section (``ClusterSettings``).
        workdir: the folder workers work in where it exists on their node (default: this
            process's), so relative output paths mean the same on every node.

    Raises:
        ConfigError: the config is invalid, or has no source group first, or no Ray.
    """

    def __init__(self, config: dict[str, Any], workdir: str | None = None) -> None:
        self.ray = require_ray()
        from cluster.worker import GraphWorker

        self.settings: ClusterSettings = parse_config(config, "cluster config").cluster
        self.worker_config, self.initial = split_cameras(config)
        self.workdir = workdir or os.getcwd()
        # the health group: a thread of its own, so pings never wait behind slow calls
        self._actor = self.ray.remote(concurrency_groups={HEALTH_GROUP: 1})(GraphWorker)
        self._wanted: dict[str, str | dict[str, Any]] = {}
        self._placed: dict[str, str] = {}  # camera -> the worker running it
        self._attempts: dict[str, _Attempt] = {}  # camera -> its opening in flight
        self._workers: dict[str, Worker] = {}
        self._moves: dict[str, int] = {}  # camera -> times it was placed again
        self._moves_total = 0  # the same over every camera ever (a counter: never goes down)
        self._problems: dict[str, str] = {}  # camera -> why it is not running (one line)
        self._retry_at: dict[str, float] = {}
        self._removing: set[str] = set()
        self._started_workers = 0
        self._lost: list[dict[str, str]] = []  # workers lost: worker, node, address, why
        self._lock = threading.Lock()
        self._placing = threading.Lock()
        self._stopping = threading.Event()
        self._loop: threading.Thread | None = None
        self.ready = threading.Event()
        """Set once the config's cameras are placed and the health checks run."""

    # ---- life cycle ---------------------------------------------------
    def start(self) -> None:
        """Places the config's cameras, then starts the reconcile loop.

        Raises:
            FrameGraphError: a camera cannot be opened, or the workers cannot start (the
                cameras placed so far keep running: call :meth:`stop`).
        """
        for name, entry in self.initial.items():
            self.add(name, entry)
        self._loop = threading.Thread(target=self._reconcile_loop, name="cluster", daemon=True)
        self._loop.start()
        self.ready.set()

    def stop(self, timeout: float = 30.0) -> str:
        """Stops the loop and every worker: their graphs drain and finalise their outputs,
        then the actors are ended.

        Returns:
            The end-of-run summary (``cluster.metrics.cluster_table``): each worker's stage
            table, the workers lost during the run, and a row per camera.
        """
        self._stopping.set()
        if self._loop is not None:
            self._loop.join(timeout)
        with self._placing, self._lock:
            workers, self._workers = list(self._workers.values()), {}
            self._placed.clear()
            self._attempts.clear()
            moves, lost = dict(self._moves), list(self._lost)
        calls = {w.name: w.handle.stop.remote(timeout) for w in workers}
        answers = self._gather(calls, timeout + 5)
        reports = []
        for worker in workers:
            answer = answers.get(worker.name)
            if isinstance(answer, Exception):
                log.warning("cluster: %s did not stop cleanly: %s", worker.name,
                            one_line(answer))  # fmt: skip
                answer = {"error": one_line(answer), "metrics": None}
            elif answer["error"]:
                log.warning("cluster: %s stopped with an error: %s", worker.name, answer["error"])
            reports.append({"worker": worker.name, "node": worker.node,
                            "address": worker.address, **answer})  # fmt: skip
        for worker in workers:
            self._kill(worker)
        return cluster_table(reports, lost, moves)

    # ---- cameras ------------------------------------------------------
    def add(self, name: str, url: str | dict[str, Any]) -> dict[str, Any]:
        """Starts a camera on the worker with the most room (a new worker if needed).

        Args:
            name: the camera's name (its source id).
            url: any ``--source`` value, or a source entry (``kind`` and its keys).

        Returns:
            Where it runs: ``name``, ``worker``, ``node``, ``address``.

        Raises:
            StreamExists: the name is taken.
            NoCapacity: no worker runs and none can start.
            FrameGraphError: the input cannot be opened (ConfigError for a wrong entry), in
                one line as the worker reported it.
        """
        with self._placing:
            with self._lock:
                if name in self._wanted or name in self._attempts or name in self._removing:
                    raise StreamExists(f"a stream named {name!r} is running")
            if self._stopping.is_set():
                raise NoCapacity("the cluster's controller has stopped")
            attempt = self._claim(name, url, background=False)
        try:
            while True:  # the camera opens outside _placing: a slow one holds up no failover
                try:
                    self._settle(attempt, ADD_TIMEOUT_S)
                    break
                except WorkerLost:
                    with self._placing:
                        self._drop(attempt.worker, "it died")
                        attempt = self._claim(name, url, background=False)
        except BaseException:
            with self._lock:
                self._attempts.pop(name, None)
            raise
        worker = attempt.worker
        with self._lock:
            self._attempts.pop(name, None)
            self._wanted[name] = url
            if worker.name in self._workers:  # else lost meanwhile: the loop places it again
                self._placed[name] = worker.name
        log.info("cluster: %s runs on %s (node %s)", name, worker.name, worker.address)
        return {"name": name, "worker": worker.name, "node": worker.node,
                "address": worker.address}  # fmt: skip

    def remove(self, name: str) -> None:
        """Ends a camera wherever it runs; returns once its outputs are finalised (or its
        worker is gone).

        Raises:
            NoSuchStream: no camera of that name is wanted.
        """
        with self._placing, self._lock:  # _placing: not while the loop decides about it
            if name not in self._wanted:
                raise NoSuchStream(f"no stream named {name!r}")
            del self._wanted[name]  # one being placed again is ended by the loop once open
            for state in (self._problems, self._retry_at, self._moves):
                state.pop(name, None)
            worker = self._workers.get(self._placed.pop(name, ""))
            if worker is None:
                return  # not running now: nothing to end
            worker.cameras.discard(name)
            self._removing.add(name)  # a new camera of that name waits for this one's end
        try:  # outside _placing: finalising a file must not hold up a failover
            self._call(worker, "remove_stream", name, timeout=REMOVE_TIMEOUT_S)
        except WorkerLost:
            pass  # its worker died: the camera ended with it (the loop drops the worker)
        except (FrameGraphError, TimeoutError) as error:
            log.warning("cluster: removing %s from %s: %s", name, worker.name, error)
        finally:
            with self._lock:
                self._removing.discard(name)

    def list_streams(self) -> list[dict[str, Any]]:
        """Every camera as ``service.streams.stream_rows`` lists it, plus where it runs:
        ``worker``, ``node`` (Ray's node id), ``address``, ``moves`` (times it was placed
        again after losing its worker). A wanted camera not running now is listed with state
        ``pending`` (and ``problem``: why, when known); a worker that does not answer in time
        leaves its cameras listed as ``unknown``. Ended cameras stay listed as their worker
        reports them, as in the one-process service."""
        with self._lock:
            workers = list(self._workers.values())
            wanted, placed, moves = dict(self._wanted), dict(self._placed), dict(self._moves)
            problems = dict(self._problems)
        answers = self._gather({w.name: w.handle.streams.remote() for w in workers})
        rows: dict[str, dict[str, Any]] = {}
        for worker in workers:
            answer = answers.get(worker.name)
            for row in answer if isinstance(answer, list) else []:
                name = row["name"]
                if name in wanted and placed.get(name) != worker.name:
                    continue  # an earlier run of a camera now placed elsewhere, or opening
                rows[name] = {**row, "worker": worker.name, "node": worker.node,
                              "address": worker.address, "moves": moves.get(name, 0)}  # fmt: skip
        by_name = {w.name: w for w in workers}
        for name, entry in wanted.items():
            if name in rows:
                continue
            worker = by_name.get(placed.get(name, ""))
            rows[name] = {
                "name": name, "url": redact(input_of(entry)),
                "state": "pending" if worker is None else "unknown",
                "fps": None, "e2e_p50_ms": None, "e2e_p95_ms": None, "drops": 0, "frames": 0,
                "outputs": [], "worker": worker.name if worker else None,
                "node": worker.node if worker else None,
                "address": worker.address if worker else None, "moves": moves.get(name, 0),
                **({"problem": problems[name]} if name in problems else {}),
            }  # fmt: skip
        order = [*wanted, *(n for n in rows if n not in wanted)]
        return [rows[n] for n in order]

    def live_jpeg(
        self, name: str, after: int = 0, timeout: float = 1.0
    ) -> tuple[int, bytes] | None:
        """Camera ``name``'s newest frame from its worker's ``web`` sink, as
        ``GraphWorker.live_jpeg`` gives it (numbers start again when the camera moves); None
        when it is not running now, its worker has no ``web`` sink or does not answer."""
        with self._lock:
            worker = self._workers.get(self._placed.get(name, ""))
        if worker is None:
            return None
        try:
            return self._call(worker, "live_jpeg", name, after, timeout,
                              timeout=timeout + ASK_TIMEOUT_S)  # fmt: skip
        except (WorkerLost, TimeoutError, FrameGraphError):
            return None

    def webrtc_answer(self, name: str, offer_sdp: str) -> str:
        """The SDP answer to a viewer's WebRTC offer for camera ``name``, from the worker
        running it (``GraphWorker.webrtc_answer``): the media then flows from that worker's
        node to the viewer, and ends when the camera moves (the viewer offers again).

        Raises:
            NoSuchStream: no camera of that name is wanted (or it has ended there).
            NotRunningNow: it is waiting to be placed (again), its worker died or did not
                answer in time.
            FrameGraphError: what the worker raised (NoLiveView: no ``web`` sink;
                ConfigError: an offer it cannot answer).
        """
        with self._lock:
            wanted = name in self._wanted
            worker = self._workers.get(self._placed.get(name, ""))
        if not wanted:
            raise NoSuchStream(f"no stream named {name!r}")
        if worker is None:
            raise NotRunningNow(f"{name} is not running now (being placed); offer again")
        try:
            return self._call(worker, "webrtc_answer", name, offer_sdp,
                              timeout=ANSWER_TIMEOUT_S + ASK_TIMEOUT_S)  # fmt: skip
        except WorkerLost:
            raise NotRunningNow(f"{name}: its worker is gone; offer again") from None
        except TimeoutError as error:
            raise NotRunningNow(str(error)) from None

    def events(
        self, since: float | None = None, limit: int = 100, source: str | None = None
    ) -> list[dict[str, Any]]:
        """The newest ``limit`` events of every worker's cameras (``GraphWorker.events``),
        oldest first by capture time; a worker that does not answer in time is left out."""
        with self._lock:
            workers = list(self._workers.values())
        answers = self._gather({w.name: w.handle.events.remote(since, limit, source)
                                for w in workers})  # fmt: skip
        return newest_events([a for a in answers.values() if isinstance(a, list)], limit)

    def wanted(self) -> list[str]:
        """The cameras wanted now: running, being opened, or waiting to be placed again."""
        with self._lock:
            return list(self._wanted)

    # ---- cluster ------------------------------------------------------
    def nodes(self) -> list[dict[str, Any]]:
        """Every node Ray knows (dead ones too): ``node`` (id), ``address``, ``alive``,
        ``cpus`` and ``gpus`` (its total), ``workers``, ``streams`` (the cameras placed
        there) and ``load`` (its 1-minute load average, from a worker there; None without
        one)."""
        with self._lock:  # the cameras as a copy: placing changes them meanwhile
            workers = [(w, sorted(w.cameras)) for w in self._workers.values()]
        out = []
        for node in self.ray.nodes():
            node_id = node["NodeID"]
            here = [(w, cameras) for w, cameras in workers if w.node == node_id]
            loads = [w.load for w, _ in here if w.load is not None]
            out.append({
                "node": node_id, "address": node.get("NodeManagerAddress"),
                "alive": bool(node.get("Alive")),
                "cpus": node.get("Resources", {}).get("CPU", 0.0),
                "gpus": node.get("Resources", {}).get("GPU", 0.0),
                "workers": len(here),
                "streams": sorted(c for _, cameras in here for c in cameras),
                "load": loads[0] if loads else None,
            })  # fmt: skip
        return out

    def stages(self) -> dict[str, Any]:
        """Per worker: its ``node`` and its stages' metrics (as ``GET /api/stages`` has
        them in one process); a worker that does not answer in time is left out."""
        with self._lock:
            workers = list(self._workers.values())
        answers = self._gather({w.name: w.handle.stages.remote() for w in workers})
        return {w.name: {"node": w.node, "address": w.address, "stages": answers[w.name]}
                for w in workers if isinstance(answers.get(w.name), dict)}  # fmt: skip

    def metrics_text(self) -> bytes:
        """Every worker's metrics in Prometheus' text format, each series labelled with the
        ``node`` and ``worker`` it comes from, plus the controller's own: workers, cameras
        wanted and pending, and moves."""
        with self._lock:
            workers = list(self._workers.values())
            wanted = len(self._wanted)
            pending = sum(1 for name in self._wanted if name not in self._placed)
            moves = self._moves_total
        answers = self._gather({w.name: w.handle.metrics_text.remote() for w in workers})
        texts = [(w.node, w.name, answers[w.name]) for w in workers
                 if isinstance(answers.get(w.name), bytes)]  # fmt: skip
        return cluster_metrics_text(texts, len(workers), wanted, pending, moves)

    # ---- placement ----------------------------------------------------
    def _claim(self, name: str, entry: str | dict[str, Any], background: bool) -> _Attempt:
        """Picks the worker for ``name`` (under ``_placing``), counts the camera there and
        asks the worker to open it; the answer is awaited by :meth:`_settle`.

        Raises:
            NoCapacity: no worker runs and none can start.
            FrameGraphError: a new worker could not start (the config's fault).
        """
        worker = self._choose()
        answer = worker.handle.add_stream.remote(name, entry)
        attempt = _Attempt(name, entry, worker, answer, time.monotonic(), background)
        with self._lock:
            worker.cameras.add(name)
            self._attempts[name] = attempt
        return attempt

    def _settle(self, attempt: _Attempt, timeout: float) -> None:
        """Waits up to ``timeout`` seconds for the worker to open the camera; on any failure
        the camera no longer counts on that worker.

        Raises:
            WorkerLost: the worker died.
            FrameGraphError: the camera cannot be opened (StageError: no answer in time).
        """
        worker = attempt.worker
        try:
            result_of(self.ray, attempt.answer, f"{worker.name}: add_stream", timeout)
        except BaseException as error:
            with self._lock:
                worker.cameras.discard(attempt.name)
            if isinstance(error, TimeoutError):  # should it open after all: not unwanted
                worker.handle.remove_stream.remote(attempt.name)
                raise StageError(str(error)) from None
            raise

    def _choose(self) -> Worker:
        """The worker with the most room; a new one when all are full and one fits; else
        the least loaded (past ``streams_per_worker``)."""
        limit = self.settings.streams_per_worker
        with self._lock:
            workers = [(w, len(w.cameras)) for w in self._workers.values()]
        per_node: dict[str, int] = {}
        for w, count in workers:
            per_node[w.node] = per_node.get(w.node, 0) + count
        with_room = [(w, count) for w, count in workers if count < limit]
        if with_room:  # most room first; between equals, the node running fewer cameras
            return min(with_room, key=lambda wc: (wc[1], per_node[wc[0].node]))[0]
        started = self._start_worker()
        if started is not None:
            return started
        if not workers:
            raise NoCapacity(
                f"no worker can start: no live node has {self.settings.num_cpus:g} CPUs and "
                f"{self.settings.num_gpus:g} GPUs free"
            )
        least, count = min(workers, key=lambda wc: (wc[1], per_node[wc[0].node]))
        log.warning(
            "cluster: every worker is full and no other fits: %s takes %d cameras "
            "(streams_per_worker: %d)", least.name, count + 1, limit,
        )  # fmt: skip
        return least

    def _fits(self) -> bool:
        """The cluster has room for one more worker (by Ray's current accounting)."""
        most = self.settings.max_workers
        if most is not None and len(self._workers) >= most:
            return False
        free = self.ray.available_resources()
        need_cpu, need_gpu = self.settings.num_cpus, self.settings.num_gpus
        if free.get("CPU", 0.0) + 1e-6 < need_cpu or free.get("GPU", 0.0) + 1e-6 < need_gpu:
            return False
        return any(n.get("Alive") and n.get("Resources", {}).get("CPU", 0.0) + 1e-6 >= need_cpu
                   and n.get("Resources", {}).get("GPU", 0.0) + 1e-6 >= need_gpu
                   for n in self.ray.nodes())  # fmt: skip

    def _start_worker(self) -> Worker | None:
        """A new worker, started and ready; None when none fits or it did not start in
        ``start_timeout`` (waiting for room Ray had promised, or too slow).

        Raises:
            FrameGraphError: the worker's graph cannot be built or opened (the config's
                fault: another worker would fail the same way), or it died while starting.
        """
        if not self._fits():
            return None
        self._started_workers += 1
        name = f"worker-{self._started_workers}"
        timeout = self.settings.start_timeout
        handle = self._actor.options(
            num_cpus=self.settings.num_cpus, num_gpus=self.settings.num_gpus,
            max_restarts=0,  # the controller re-places cameras itself (see the module doc)
            max_concurrency=4,  # calls are answered while a camera is being opened
            scheduling_strategy="SPREAD",
            runtime_env={"env_vars": {"PYTHONPATH": worker_pythonpath()}},
        ).remote(self.worker_config, name, self.workdir)  # fmt: skip
        worker = Worker(name, handle)
        try:
            where = self._call(worker, "ready", timeout, timeout=timeout + 10)
        except WorkerLost as error:  # its last line names why (an import error, ...)
            lines = [line for line in str(error).splitlines() if line.strip()]
            raise StageError(f"{name} died while starting: {lines[-1] if lines else ''}") from None
        except FrameGraphError:
            self._kill(worker)
            raise
        except TimeoutError:  # still waiting for a node, or too slow to start
            log.warning("cluster: %s did not start in %.0f s; given up", name, timeout)
            self._kill(worker)
            return None
        worker.node, worker.address = where["node"], where["address"]
        worker.asked_at = time.monotonic()
        with self._lock:
            self._workers[name] = worker
        log.info("cluster: %s started on node %s (%s)", name, worker.node, worker.address)
        return worker

    def _drop(self, worker: Worker, why: str) -> None:
        """Forgets a dead worker (under ``_placing``); its cameras wait to be placed again."""
        with self._lock:
            if self._workers.pop(worker.name, None) is None:
                return
            self._lost.append({"worker": worker.name, "node": worker.node,
                               "address": worker.address, "why": why})  # fmt: skip
            orphans = sorted(c for c, w in self._placed.items() if w == worker.name)
            for camera in orphans:
                del self._placed[camera]
                self._moves[camera] = self._moves.get(camera, 0) + 1
                self._moves_total += 1
                self._retry_at.pop(camera, None)
        log.warning("cluster: %s on %s lost (%s); placing again: %s", worker.name,
                    worker.address, why, ", ".join(orphans) or "no cameras")  # fmt: skip
        self._kill(worker)  # if it is only cut off, its cameras must not run twice

    def _kill(self, worker: Worker) -> None:
        try:
            self.ray.kill(worker.handle, no_restart=True)
        except Exception as error:  # already gone: nothing to end
            log.debug("cluster: killing %s: %s", worker.name, error)

    # ---- reconcile ----------------------------------------------------
    def _reconcile_loop(self) -> None:
        while not self._stopping.wait(self.settings.health_interval):
            try:
                self.reconcile()
            except Exception:  # the loop must outlive one bad round (a GCS hiccup)
                log.exception("cluster: reconciling failed; trying again")

    def reconcile(self) -> None:
        """One round, every ``health_interval`` seconds on the controller's thread: drop the
        workers found dead, ask workers to open every wanted camera not running (all at
        once), and take in their answers (waiting at most ``health_interval`` for them;
        later answers are taken in at the next round)."""
        with self._lock:
            workers = list(self._workers.values())
        dead = check_workers(self.ray, workers, self.settings.unresponsive_after)
        with self._placing:
            for worker, why in dead:
                self._drop(worker, why)
            now = time.monotonic()
            with self._lock:
                waiting = [
                    (n, e) for n, e in self._wanted.items()
                    if n not in self._placed and n not in self._attempts
                    and self._retry_at.get(n, 0.0) <= now
                ]  # fmt: skip
            for name, entry in waiting:
                if self._stopping.is_set():
                    return
                try:
                    self._claim(name, entry, background=True)
                except FrameGraphError as error:
                    self._not_placed(name, error)
            self._take_answers(wait=self.settings.health_interval)

    def _take_answers(self, wait: float) -> None:
        """Settles the loop's attempts that have an answer (under ``_placing``)."""
        with self._lock:
            attempts = [a for a in self._attempts.values() if a.background]
        if not attempts:
            return
        refs = [a.answer for a in attempts]
        done = set(self.ray.wait(refs, num_returns=len(refs), timeout=wait)[0])
        now = time.monotonic()
        for attempt in attempts:
            if attempt.answer not in done and now - attempt.started < ADD_TIMEOUT_S:
                continue
            name, worker = attempt.name, attempt.worker
            try:
                self._settle(attempt, 0.0)
            except WorkerLost:
                with self._lock:
                    self._attempts.pop(name, None)
                self._drop(worker, "it died")
                continue
            except FrameGraphError as error:
                with self._lock:
                    self._attempts.pop(name, None)
                self._not_placed(name, error)
                continue
            with self._lock:
                self._attempts.pop(name, None)
                running = name in self._wanted and worker.name in self._workers
                if running:
                    self._placed[name] = worker.name
                    self._problems.pop(name, None)
                else:
                    worker.cameras.discard(name)
            if running:
                log.info("cluster: %s runs on %s (node %s)", name, worker.name, worker.address)
            elif worker.name in self._workers:  # removed while it was opening
                worker.handle.remove_stream.remote(name)

    def _not_placed(self, name: str, error: FrameGraphError) -> None:
        """Notes why ``name`` could not be placed, and when to try again."""
        # no room: asking Ray again is cheap, and room may come any moment (a killed
        # worker's CPUs freed); a camera that failed to open waits a little longer
        wait = 0.0 if isinstance(error, NoCapacity) else RETRY_S
        with self._lock:
            if name not in self._wanted:  # removed meanwhile: nothing to try again
                return
            known = self._problems.get(name) == str(error)
            self._problems[name] = str(error)
            self._retry_at[name] = time.monotonic() + wait
        if not known:
            log.warning("cluster: %s cannot be placed again yet: %s", name, error)

    # ---- calls --------------------------------------------------------
    def _call(self, worker: Worker, method: str, *args: Any, timeout: float) -> Any:
        """``worker.method(*args)``: its answer, or its error as the worker raised it (see
        ``cluster.actors.result_of``)."""
        ref = getattr(worker.handle, method).remote(*args)
        return result_of(self.ray, ref, f"{worker.name}: {method}", timeout)

    def _gather(self, calls: dict[str, Any], timeout: float = ASK_TIMEOUT_S) -> dict[str, Any]:
        return gather(self.ray, calls, timeout)

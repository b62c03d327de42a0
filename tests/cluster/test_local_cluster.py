"""Cameras on a real local Ray cluster: a head without CPUs and two worker nodes of one CPU
each, all on this machine (``ray_cluster`` in conftest.py), started once for the module.

The tests run in order on one controller: cameras spread over both nodes; a removed camera
is gone and its file finalised; a node removed takes its worker with it, and its cameras
are running on the other node within 20 s; a camera added after that runs too; a worker
killed is replaced by a new one, and a node that crashes (killed without notice) loses its
camera to the other node. At the end no Ray process of the cluster is left running.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pipeline.errors import SourceError
from tests.cluster.local_ray import processes, raylet_pid, timings
from tests.conftest import read_video, wait_until

pytest.importorskip("ray", reason="Ray is not installed (pip install 'ray>=2.9')")

from cluster.controller import (
    ClusterController,
    NoSuchStream,
    StreamExists,
)

pytestmark = pytest.mark.slow
LIVE = "synthetic:160x120@10"
MOVE_WITHIN_S = 20.0


def _worker_actor(node: Any) -> int:
    """The process of the GraphWorker actor on ``node``."""
    raylet = f"RAY_RAYLET_PID={raylet_pid(node)}".encode()
    (pid,) = [pid for pid, p in processes().items()
              if raylet in p.env and p.args.startswith(b"ray::GraphWorker")]  # fmt: skip
    return pid


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    """Where the cameras' files go (every node is on this machine: one folder)."""
    return tmp_path_factory.mktemp("cluster-out")


@pytest.fixture(scope="module")
def controller(ray_cluster, out: Path) -> Iterator[ClusterController]:
    config = {
        "cluster": {
            "streams_per_worker": 2,
            "num_cpus": 1,
            "health_interval": 0.5,
            "unresponsive_after": 4.0,
        },
        "stages": [
            {"name": "cams", "kind": "sources", "keep_open": True, "sources": {"cam1": LIVE}},
            {"name": "video", "kind": "video_file", "path": str(out / "{source}.mp4")},
            {"name": "web", "kind": "web", "inputs": ["cams"]},
        ],
    }
    one = ClusterController(config)
    try:
        started = time.monotonic()
        one.start()
        timings["first worker s"] = time.monotonic() - started
        yield one
    finally:
        one.stop()


def streams(controller: ClusterController) -> dict[str, dict]:
    return {row["name"]: row for row in controller.list_streams()}


def producing(controller: ClusterController, names: list[str], more_than: int = 3) -> bool:
    rows = streams(controller)
    return all(rows[n]["state"] == "live" and rows[n]["frames"] > more_than for n in names)


def test_cameras_spread_over_both_worker_nodes(ray_cluster, controller, out: Path) -> None:
    cluster, nodes = ray_cluster
    started = time.monotonic()
    with ThreadPoolExecutor(4) as pool:  # at once, as API calls come: one of the cam3 fails
        names = ("cam2", "cam3", "cam4", "cam3")
        calls = [pool.submit(controller.add, name, LIVE) for name in names]
        wait(calls)
    timings["three cameras added s"] = time.monotonic() - started
    failed = [call.exception() for call in calls if call.exception() is not None]
    assert len(failed) == 1 and isinstance(failed[0], StreamExists), failed
    cams = ["cam1", "cam2", "cam3", "cam4"]
    assert wait_until(lambda: producing(controller, cams), 30, step=0.2), streams(controller)
    rows = streams(controller)
    worker_nodes = {n.node_id for n in nodes}
    placed = {name: rows[name]["node"] for name in cams}
    assert set(placed.values()) == worker_nodes  # two per node, one worker each
    assert sorted(list(placed.values()).count(n) for n in worker_nodes) == [2, 2]
    assert rows["cam1"]["outputs"] == [str(out / "cam1.mp4")]

    by_node = {n["node"]: n for n in controller.nodes()}
    head = by_node[cluster.head_node.node_id]
    assert head["alive"] and head["workers"] == 0 and head["streams"] == []
    for node_id in worker_nodes:
        assert by_node[node_id]["workers"] == 1 and len(by_node[node_id]["streams"]) == 2

    with pytest.raises(StreamExists, match="cam2"):
        controller.add("cam2", LIVE)
    with pytest.raises(SourceError, match="not found") as missing:
        controller.add("gone", "/no/such/file.mp4")
    assert "\n" not in str(missing.value)  # one line, carried back from the worker
    assert "gone" not in streams(controller)

    number, jpeg = controller.live_jpeg("cam4", timeout=5) or (0, b"")
    assert number > 0 and jpeg.startswith(b"\xff\xd8")  # from the worker running it

    text = controller.metrics_text().decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    frames = families["framegraph_source_frames"].samples
    assert {s.labels["source"]: s.labels["node"] for s in frames} == placed
    assert families["framegraph_cluster_workers"].samples[0].value == 2


def test_a_removed_camera_is_gone_and_its_file_finalised(controller, out: Path) -> None:
    node = streams(controller)["cam1"]["node"]
    controller.remove("cam1")
    rows = streams(controller)
    assert rows["cam1"]["state"] == "ended"  # as the one-process service lists it
    assert all(rows[n]["state"] == "live" for n in ("cam2", "cam3", "cam4"))
    assert "cam1" not in next(n for n in controller.nodes() if n["node"] == node)["streams"]
    _, images, _ = read_video(out / "cam1.mp4")
    assert len(images) > 3 and images[0].shape == (120, 160, 3)
    with pytest.raises(NoSuchStream):
        controller.remove("cam1")


def test_a_lost_node_moves_its_cameras_to_the_other(ray_cluster, controller) -> None:
    cluster, nodes = ray_cluster
    rows = streams(controller)
    lost = rows["cam3"]["node"]
    moving = sorted(n for n, r in rows.items() if r["node"] == lost and r["state"] == "live")
    staying = next(n.node_id for n in nodes if n.node_id != lost)
    victim = next(n for n in nodes if n.node_id == lost)

    started = time.monotonic()
    cluster.remove_node(victim)

    def moved() -> bool:
        now = streams(controller)
        return all(now[n]["node"] == staying and now[n]["moves"] == 1 for n in moving) and (
            producing(controller, ["cam2", "cam3", "cam4"], more_than=2)
        )

    assert wait_until(moved, MOVE_WITHIN_S, step=0.2), streams(controller)
    timings["cameras moved s"] = time.monotonic() - started
    by_node = {n["node"]: n for n in controller.nodes()}
    assert not by_node[lost]["alive"] and by_node[lost]["workers"] == 0
    assert by_node[staying]["streams"] == ["cam2", "cam3", "cam4"]

    assert controller.add("cam5", LIVE)["node"] == staying  # past streams_per_worker: no room
    assert wait_until(lambda: producing(controller, ["cam5"]), 30, step=0.2), streams(controller)
    controller.remove("cam3")
    assert streams(controller)["cam3"]["state"] == "ended"


def test_a_killed_worker_and_a_crashed_node_are_replaced(ray_cluster, controller) -> None:
    cluster, nodes = ray_cluster
    staying = next(n for n in nodes if n in cluster.worker_nodes)
    fresh = cluster.add_node(num_cpus=1)  # room again: the next camera gets a worker there
    cluster.wait_for_nodes()
    assert controller.add("cam6", LIVE)["node"] == fresh.node_id
    assert wait_until(lambda: producing(controller, ["cam6"]), 30, step=0.2)

    actor = _worker_actor(fresh)
    started = time.monotonic()
    os.kill(actor, signal.SIGKILL)  # the worker dies, its node stays: a new worker there

    def back_on(node_id: str) -> Callable[[], bool]:
        def check() -> bool:
            row = streams(controller)["cam6"]
            return row["node"] == node_id and row["state"] == "live" and row["frames"] > 2

        return check

    assert wait_until(back_on(fresh.node_id), MOVE_WITHIN_S, step=0.2), streams(controller)
    timings["killed worker replaced s"] = time.monotonic() - started
    assert streams(controller)["cam6"]["moves"] == 1

    started = time.monotonic()
    cluster.remove_node(fresh, allow_graceful=False)  # a crash: nothing is announced
    assert wait_until(back_on(staying.node_id), MOVE_WITHIN_S, step=0.2), streams(controller)
    timings["crashed node's camera moved s"] = time.monotonic() - started
    assert producing(controller, ["cam2", "cam4", "cam5", "cam6"], more_than=2)


def test_a_worker_that_stops_answering_is_replaced(ray_cluster, controller) -> None:
    cluster, _ = ray_cluster
    (node,) = cluster.worker_nodes
    actor = _worker_actor(node)
    cams = ["cam2", "cam4", "cam5", "cam6"]
    moves = {n: streams(controller)[n]["moves"] for n in cams}
    started = time.monotonic()
    os.kill(actor, signal.SIGSTOP)  # alive to Ray, silent to the controller (a cut-off node)
    try:

        def replaced() -> bool:
            rows = streams(controller)
            return all(rows[n]["moves"] == moves[n] + 1 for n in cams) and producing(
                controller, cams, more_than=2
            )

        assert wait_until(replaced, MOVE_WITHIN_S, step=0.2), streams(controller)
        timings["silent worker replaced s"] = time.monotonic() - started
    finally:
        if actor in processes():
            os.kill(actor, signal.SIGCONT)  # so that it can be ended
    assert wait_until(lambda: actor not in processes(), 20, step=0.2)  # ended, not left

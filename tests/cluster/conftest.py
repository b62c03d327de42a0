"""A real local Ray cluster for the cluster tests: a head without CPUs and two worker nodes
of one CPU each, all on this machine (``ray.cluster_utils.Cluster``), started once per test
module that asks for it; at its end no Ray process of it may be left running."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.cluster.local_ray import ray_processes, raylet_pid, timings
from tests.conftest import wait_until


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[tuple[Any, list[Any]]]:
    """(the cluster, its two worker nodes), this process connected to it."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'ray>=2.9')")
    from ray.cluster_utils import Cluster

    from cluster.actors import connect

    started = time.monotonic()
    cluster = Cluster(initialize_head=True,
                      head_node_args={"num_cpus": 0, "include_dashboard": False})  # fmt: skip
    try:
        nodes = [cluster.add_node(num_cpus=1), cluster.add_node(num_cpus=1)]
        for node in nodes:
            raylet_pid(node)
        connect(cluster.address)
        cluster.wait_for_nodes()
        timings["cluster start s"] = time.monotonic() - started
        yield cluster, nodes
    finally:
        session = cluster.head_node.session_name
        running = ray_processes(session)
        ray.shutdown()
        cluster.shutdown()
        assert running, "the check below does not see the cluster's processes"
        assert wait_until(lambda: not ray_processes(session), 30, step=0.2), (
            f"Ray processes left running: {sorted(ray_processes(session))}"
        )
        print("\ncluster timings:", {k: round(v, 1) for k, v in timings.items()})

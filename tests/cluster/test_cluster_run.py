"""``python run.py CONFIG --api HOST:PORT --ray auto`` end to end, as a user runs it: the
process starts its own local Ray, serves the API, runs the camera on a worker, and on
SIGINT finalises the camera's file, ends its workers and stops Ray (exit 130)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.cluster.local_ray import processes
from tests.conftest import free_port, read_video, wait_until

pytest.importorskip("ray", reason="Ray is not installed (pip install 'ray>=2.9')")
pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def _ray_daemons(parent: int) -> set[int]:
    """The Ray daemons (GCS server, raylet) that process ``parent`` started."""
    daemons = (b"gcs_server", b"raylet")
    return {pid for pid, p in processes().items() if p.parent == parent
            and any(name in p.args.split(b"\0")[0] for name in daemons)}  # fmt: skip


def test_run_py_serves_a_camera_on_its_own_ray_and_stops_cleanly(tmp_path: Path) -> None:
    config = tmp_path / "cams.yaml"
    config.write_text(
        "cluster: {streams_per_worker: 2, health_interval: 0.5}\n"
        "stages:\n"
        "  - {name: cams, kind: synthetic, width: 96, height: 64, live: true, frames: null}\n"
        "  - {name: web, kind: web}\n"
    )
    port = free_port()
    command = [sys.executable, str(ROOT / "run.py"), str(config), "--api", f"127.0.0.1:{port}",
               "--ray", "auto", "--source", "cam1=synthetic:160x120@10",
               "--output", str(tmp_path / "{source}.mp4"), "--no-progress"]  # fmt: skip
    # ``auto`` would join the newest cluster on this machine (another test's, even): a Ray
    # of its own here, as on a machine without one
    env = {**os.environ, "RAY_ADDRESS": "local"}
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    try:
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)

        def ready() -> bool:
            try:
                return client.get("/readyz").status_code == 200
            except httpx.TransportError:
                return process.poll() is not None  # ended: no use waiting

        assert wait_until(ready, 90, step=0.5) and process.poll() is None, process.poll()
        daemons = _ray_daemons(process.pid)
        assert daemons, "no Ray of its own started"

        def producing() -> bool:
            rows = {r["name"]: r for r in client.get("/api/streams").json()}
            return rows.get("cam1", {}).get("frames", 0) > 3

        assert wait_until(producing, 30, step=0.3), client.get("/api/streams").json()
        (row,) = client.get("/api/streams").json()
        assert row["node"] and row["node"] == row["node_id"][:8]
        assert [n["streams"] for n in client.get("/api/nodes").json()] == [["cam1"]]
        client.close()
        process.send_signal(signal.SIGINT)
        _, errors = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, errors[-2000:]
    # the end-of-run table: the worker's stages, then the camera and where it ran
    assert "worker-1 on node" in errors and "frames out in" in errors
    cameras = errors.split("\ncamera ", 1)[1].splitlines()  # the table after the worker's
    (camera_row,) = [line for line in cameras if line.startswith("cam1 ")]
    assert camera_row.split()[1] == row["node"] and int(camera_row.split()[3]) > 3
    assert "1 cameras on 1 workers at the end; 0 workers lost, 0 moves" in errors
    _, images, _ = read_video(tmp_path / "cam1.mp4")  # finalised by its worker
    assert len(images) > 3 and images[0].shape == (120, 160, 3)
    assert wait_until(lambda: not daemons & set(processes()), 30, step=0.5), "Ray left running"

"""What a cluster's workers write: their ``video_file`` sinks made crash-safe, a camera
placed again on another worker continuing in a new file next to the first one (never over
it), and the end-of-run table built from the workers' reports. The workers run in this
process here (``GraphWorker`` needs no Ray); tests/cluster/test_cluster_page.py kills one
on a real cluster."""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import pytest

from cluster.config import crash_safe_outputs, split_cameras
from cluster.metrics import cluster_table
from cluster.worker import GraphWorker
from tests.conftest import read_video, wait_until

LIVE = "synthetic:64x48@10"


def service_config(out: Path) -> dict:
    return {"stages": [
        {"name": "cams", "kind": "sources", "sources": {"cam": LIVE}},
        {"name": "video", "kind": "video_file", "path": str(out / "{source}.mp4")},
        {"name": "web", "kind": "web", "inputs": ["cams"]},
    ]}  # fmt: skip


def test_mp4_outputs_become_fragmented_and_others_numbered(caplog) -> None:
    stages = [
        {"name": "a", "kind": "video_file", "path": "out/{source}.mp4"},
        {"name": "b", "kind": "video_file", "path": "out/{source}.mkv"},
        {"name": "c", "kind": "video_file", "path": "out/{source}.mp4", "segment_seconds": 60},
        {"name": "d", "kind": "video_file", "path": "x.mp4", "fragmented": False,
         "on_exists": "overwrite"},
        {"name": "e", "kind": "discard"},
    ]  # fmt: skip
    given = copy.deepcopy(stages)
    with caplog.at_level(logging.WARNING, logger="framegraph"):
        crash_safe_outputs(stages)
    a, b, c, d, e = stages
    assert a == {**given[0], "fragmented": True}  # on_exists: number is its default then
    assert b == {**given[1], "on_exists": "number"}
    assert c == given[2] and d == given[3] and e == given[4]  # the config's own choices
    warned = caplog.text
    assert "b: a worker killed while writing out/{source}.mkv leaves it unplayable" in warned
    assert "d: on_exists: overwrite" in warned


def test_a_file_for_every_camera_becomes_a_file_per_worker(tmp_path: Path) -> None:
    raw = service_config(tmp_path)
    raw["stages"].append({"name": "events", "kind": "jsonl", "path": str(tmp_path / "ev.jsonl"),
                          "inputs": ["cams"]})  # fmt: skip
    workers_config, cameras = split_cameras(raw)
    assert workers_config["stages"][1]["path"] == str(tmp_path / "{source}.mp4")  # per camera
    for name in ("worker-1", "worker-2"):  # as two workers on one node
        worker = GraphWorker(workers_config, name)
        worker.ready(30)
        worker.add_stream(f"cam-{name}", cameras["cam"])
        assert wait_until(lambda w=worker: w.streams()[0]["frames"] > 3, 30, step=0.1)
        assert worker.stop()["error"] is None
    for name in ("worker-1", "worker-2"):
        lines = (tmp_path / f"ev-{name}.jsonl").read_text().splitlines()
        assert len(lines) > 3 and all(f'"cam-{name}"' in line for line in lines)
    assert not (tmp_path / "ev.jsonl").exists()


def test_a_camera_placed_again_continues_in_a_new_file(tmp_path: Path) -> None:
    raw = service_config(tmp_path)
    workers_config, cameras = split_cameras(raw)
    assert workers_config["stages"][1]["fragmented"] is True
    assert "fragmented" not in raw["stages"][1]  # the service's config is not changed

    def run_once(name: str) -> dict:
        worker = GraphWorker(workers_config, name)
        worker.ready(30)
        worker.add_stream("cam", cameras["cam"])
        assert wait_until(lambda: worker.streams()[0]["frames"] > 5, 30, step=0.1)
        listed = worker.streams()[0]["outputs"]  # the file being written, by its real name
        assert worker.remove_stream("cam")
        assert worker.streams()[0]["outputs"] == listed  # and still once it is finished
        return {**worker.stop(), "listed": listed}

    first, second = run_once("worker-1"), run_once("worker-2")  # as on two nodes sharing out/
    assert first["error"] is None and second["error"] is None
    for path, report in ((tmp_path / "cam.mp4", first), (tmp_path / "cam-1.mp4", second)):
        _, images, _ = read_video(path)
        assert len(images) == report["metrics"]["sources"]["cam"]["frames"] > 5
        assert report["listed"] == [str(path)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cam-1.mp4", "cam.mp4"]

    node = "ab12cd34" + "0" * 48
    reports = [{"worker": "worker-2", "node": node, "address": "10.0.0.2", **second}]
    lost = [{"worker": "worker-1", "node": "ffee0011" + "0" * 48, "address": "10.0.0.1",
             "why": "its node is gone"}]  # fmt: skip
    table = cluster_table(reports, lost, {"cam": 1})
    assert "worker-2 on node ab12cd34 (10.0.0.2)" in table and "frames out in" in table
    assert "worker-1 on node ffee0011 (10.0.0.1) lost: its node is gone" in table
    cameras = table.split("\ncamera ", 1)[1].splitlines()  # the table after the workers'
    (row,) = [line.split() for line in cameras if line.startswith("cam ")]
    frames = second["metrics"]["sources"]["cam"]["frames"]
    assert row[1:4] == ["ab12cd34", "worker-2", str(frames)] and row[-1] == "1"
    assert table.endswith("1 cameras on 1 workers at the end; 1 workers lost, 1 moves")


@pytest.mark.parametrize("error", [None, "worker-3: the graph did not stop in 30 s"])
def test_the_table_names_a_worker_that_sent_no_metrics(error: str | None) -> None:
    report = {"worker": "worker-3", "node": "0" * 56, "address": "10.0.0.3", "error": error,
              "metrics": None}  # fmt: skip
    table = cluster_table([report], [], {})
    first = table.splitlines()[0]
    assert first == "worker-3 on node 00000000 (10.0.0.3)" + (f": {error}" if error else "")
    assert table.endswith("0 cameras on 1 workers at the end; 0 workers lost, 0 moves")


def test_worker_configs_keep_stdout_number_client_ids_and_append_event_logs() -> None:
    from cluster.config import for_worker

    raw = {"stages": [
        {"name": "cams", "kind": "sources", "sources": {"cam": LIVE}},
        {"name": "print", "kind": "jsonl", "path": "-"},
        {"name": "bus", "kind": "mqtt", "host": "h", "client_id": "fg"},
        {"name": "anon", "kind": "mqtt", "host": "h"},
        {"name": "log", "kind": "event_log", "path": "out/{source}.jsonl"},
        {"name": "mine", "kind": "event_log", "path": "out/all.jsonl", "append": False},
    ]}  # fmt: skip
    stages = for_worker(split_cameras(raw)[0], "worker-3")["stages"]
    assert stages[1]["path"] == "-"  # standard output stays standard output
    assert stages[2]["client_id"] == "fg-worker-3" and "client_id" not in stages[3]
    assert stages[4] == {**raw["stages"][4], "append": True}  # a camera back keeps its log
    assert stages[5]["append"] is False and stages[5]["path"] == "out/all-worker-3.jsonl"

"""metrics: percentiles, throughput, end-to-end latency, table, JSON; progress status."""

from __future__ import annotations

import json
import math

import pytest

from pipeline.edges import Edge, Policy
from pipeline.metrics import Metrics, write_json
from pipeline.progress import ProgressDisplay


class FakeClock:
    def __init__(self, t: float = 0.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(100.0)


def filled_metrics(clock: FakeClock, make_frame) -> Metrics:
    """Two stages with known latencies; 10 s run; some drops."""
    metrics = Metrics(clock=clock)
    metrics.add_stage("src", "file", None)
    edge = Edge("detector", capacity=2, policy=Policy.LATEST)
    for i in range(4):
        edge.put("src", make_frame(i))  # 3 drops, depth 1
    det = metrics.add_stage("detector", "retinaface", edge)
    for ms in range(1, 101):  # 1..100 ms
        det.record(ms / 1000)
    det.errors = 2
    clock.t = 110.0
    return metrics


def test_percentiles_and_throughput(clock, make_frame):
    metrics = filled_metrics(clock, make_frame)
    snap = metrics.snapshot()
    det = snap["stages"]["detector"]
    assert det["p50_ms"] == pytest.approx(50.5)
    assert det["p95_ms"] == pytest.approx(95.05)
    assert det["frames"] == 100
    assert snap["elapsed_s"] == pytest.approx(10.0)
    assert det["fps"] == pytest.approx(10.0)
    assert det["busy"] == pytest.approx(sum(range(1, 101)) / 1000 / 10.0)
    assert det["errors"] == 2
    assert det["queue"] == {
        "depth": 1,
        "max_depth": 1,
        "capacity": 1,
        "policy": "latest",
        "drops": 3,
        "bytes": 8 * 8 * 3,
        "peak_bytes": 8 * 8 * 3,
        "max_bytes": None,
    }
    assert snap["drops"] == 3 == metrics.total_drops()
    assert math.isnan(snap["stages"]["src"]["p50_ms"])  # no samples
    assert snap["stages"]["src"]["queue"] is None


def test_latency_window_is_bounded(monkeypatch, clock):
    import pipeline.metrics as metrics_module

    monkeypatch.setattr(metrics_module, "WINDOW", 10)
    stage = Metrics(clock=clock).add_stage("det", "x", None)
    for ms in range(100):
        stage.record(ms / 1000)
    assert list(stage.latencies) == [ms / 1000 for ms in range(90, 100)]
    assert stage.processed == 100


def test_elapsed_uses_finished_time(clock):
    metrics = Metrics(clock=clock)
    clock.t = 103.0
    assert metrics.elapsed == pytest.approx(3.0)
    metrics.finished = 101.5
    clock.t = 200.0
    assert metrics.elapsed == pytest.approx(1.5)


def test_end_to_end_latency_and_frames_out(clock):
    metrics = Metrics(clock=clock)
    for i in range(10):
        clock.t = 100.0 + i
        metrics.record_output("file", capture_time=clock.t - 0.020)  # 20 ms each
    metrics.record_output("rtsp", capture_time=clock.t - 0.020)
    snap = metrics.snapshot()
    assert snap["e2e_p50_ms"] == pytest.approx(20.0)
    assert snap["e2e_p95_ms"] == pytest.approx(20.0)
    assert metrics.frames_out == 10  # the busiest terminal stage
    assert snap["fps"] == pytest.approx(10 / 9)


def test_recent_e2e_uses_only_recent_samples(clock):
    metrics = Metrics(clock=clock)
    clock.t = 100.0
    for _ in range(50):
        metrics.record_output("out", capture_time=99.0)  # 1000 ms, long ago
    clock.t = 110.0
    for ms in (10, 20, 30):
        metrics.record_output("out", capture_time=110.0 - ms / 1000)
    clock.t = 112.0
    p50, p95 = metrics.recent_e2e_ms(seconds=5.0)
    assert p50 == pytest.approx(20.0)
    assert p95 == pytest.approx(29.0)
    # The whole-run figure still includes the old samples.
    assert metrics.snapshot()["e2e_p50_ms"] == pytest.approx(1000.0)
    clock.t = 120.0
    p50, p95 = metrics.recent_e2e_ms(seconds=5.0)
    assert math.isnan(p50) and math.isnan(p95)


def test_table_has_every_stage_and_totals(clock, make_frame):
    metrics = filled_metrics(clock, make_frame)
    metrics.record_output("detector", capture_time=clock.t - 0.040)
    lines = metrics.table().splitlines()
    assert lines[0].split()[:3] == ["stage", "kind", "frames"]
    rows = {line.split()[0]: line.split() for line in lines[2:-2]}
    assert set(rows) == {"src", "detector"}
    det = rows["detector"]
    assert det[1] == "retinaface" and det[2] == "100"
    p95 = metrics.snapshot()["stages"]["detector"]["p95_ms"]
    assert det[4:6] == ["50.5", f"{p95:.1f}"]
    assert "1/1" in det  # queue max / capacity
    assert det[-2:] == ["3", "2"]  # drops, errors
    assert rows["src"][2] == "0" and rows["src"][4:6] == ["-", "-"]  # no samples
    totals = lines[-1]
    assert totals.startswith("1 frames out in 10.0 s")
    assert "p50 40.0 ms" in totals and "3 frames dropped" in totals


def test_to_json_is_valid_json(clock, make_frame):
    metrics = Metrics(clock=clock)
    stage = metrics.add_stage("det", "x", Edge("det"))
    stage.record(0.01)
    metrics.record_output("det", capture_time=clock.t - 0.005)
    clock.t += 2.0
    data = json.loads(metrics.to_json())
    assert data["stages"]["det"]["p50_ms"] == pytest.approx(10.0)
    assert data["frames_out"] == 1
    assert data["e2e_p50_ms"] == pytest.approx(5.0)


def test_to_json_writes_null_for_nan(clock, make_frame):
    metrics = filled_metrics(clock, make_frame)  # "src" has no latency samples, no e2e yet
    data = json.loads(metrics.to_json())
    assert data["stages"]["src"]["p50_ms"] is None
    assert data["stages"]["src"]["p95_ms"] is None
    assert data["e2e_p50_ms"] is None and data["e2e_p95_ms"] is None
    assert data["stages"]["detector"]["p50_ms"] == pytest.approx(50.5)


def test_write_json(tmp_path, clock):
    metrics = Metrics(clock=clock)
    metrics.record_output("out", capture_time=clock.t - 0.001)
    path = tmp_path / "metrics.json"
    write_json(metrics, str(path))
    assert json.loads(path.read_text(encoding="utf-8"))["frames_out"] == 1


def test_stage_status_appears_in_snapshot(clock):
    metrics = Metrics(clock=clock)
    metrics.add_stage("cam", "stream", None, status=lambda: {"connection": "reconnecting"})
    metrics.add_stage("det", "x", None)
    snap = metrics.snapshot()
    assert snap["stages"]["cam"]["state"] == {"connection": "reconnecting"}
    assert "state" not in snap["stages"]["det"]


def test_progress_status_line(clock, make_frame):
    metrics = Metrics(clock=clock)
    edge = Edge("det", capacity=1, policy=Policy.LATEST)
    edge.put("cam", make_frame(0))
    edge.put("cam", make_frame(1))
    metrics.add_stage("cam", "stream", None, status=lambda: {"connection": "reconnecting"})
    metrics.add_stage("det", "x", edge)
    display = ProgressDisplay(metrics, total=lambda: None, enabled=False)
    assert display._status() == "latency -, drops 1, cam: reconnecting"
    metrics.record_output("det", capture_time=clock.t - 0.030)
    assert display._status().startswith("latency 30 ms, ")
    display.close()


def test_progress_bar_follows_frames_out(clock, capsys):
    metrics = Metrics(clock=clock)
    for _ in range(7):
        metrics.record_output("out", capture_time=clock.t)
    display = ProgressDisplay(metrics, total=lambda: 10, enabled=True, interval=0.01)
    display.close()
    assert display.bar.n == 7
    assert "7/10" in capsys.readouterr().err

"""bench/gpu.py, the GPU check: its CPU smoke run end to end (every model family measured,
parity finite and small, the tables name every case), its time box, the pipeline section with
and without PyAV, and a real CUDA run where there is a GPU."""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench.gpu import (
    Clock,
    Settings,
    TimeBox,
    job_config,
    merge_section,
    models_section,
    parity,
    sweep,
    time_call,
    video_mode,
)
from tests.conftest import ROOT

FAMILIES = {"retinaface", "yolact_edge", "vpsnet", "densepose", "translation"}


def run_bench(
    *args: str, out: Path, env: dict[str, str] | None = None, timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    """bench/gpu.py with ``args``; the timeout only catches a hang (the smoke run's own budget
    is --budget-s, 540 s by default)."""
    return subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu.py"), *args, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=env,
    )


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str, str]:
    """One CPU smoke run of the models section: (gpu.json, gpu.md, stdout)."""
    out = tmp_path_factory.mktemp("gpu")
    result = run_bench("--device", "cpu", "--smoke", "--section", "models", out=out)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((out / "gpu.json").read_text()), (out / "gpu.md").read_text(), result.stdout


@pytest.mark.slow
def test_smoke_measures_every_family_with_small_finite_parity(smoke: tuple) -> None:
    results, _, _ = smoke
    assert results["header"]["half"] == "bf16" and results["header"]["tensorrt"]
    cases = results["sections"]["models"]["cases"]
    assert {case["family"] for case in cases} == FAMILIES
    for case in cases:
        assert "error" not in case and case["graphs"], case
        for graph in case["graphs"]:
            where = f"{case['key']}/{graph['name']}"
            same = graph["parity"]["fp32_vs_cpu"]  # the device is the CPU here: identical
            assert same["finite"] and same["max_abs"] == 0.0, where
            half = graph["parity"]["half_vs_fp32"]
            assert half["finite"] and 0 < half["rel_l2"] < 0.1, (where, half)
            for key in ("fp32", "half", "half_cl"):
                assert graph["timings"][key]["ms"] > 0, (where, key)
            assert "CUDA" in graph["timings"]["half_graph"]["skipped"]
            assert "TensorRT" in graph["timings"]["trt_half"]["skipped"]
            sweep = graph["sweep"]
            assert set(sweep["batches"]) == {"1", "2"} and sweep["best_batch"] in (1, 2), where


@pytest.mark.slow
def test_smoke_yolact_video_mode_and_full_tests(smoke: tuple) -> None:
    results, _, stdout = smoke
    cases = {case["key"]: case for case in results["sections"]["models"]["cases"]}
    r50 = cases["yolact_edge_r50"]
    assert [g["name"] for g in r50["graphs"]] == ["keyframe", "non-keyframe"]
    row = r50["video"]["rows"]["half"]
    assert row["fps"] == pytest.approx(5e3 / (row["key_ms"] + 4 * row["nonkey_ms"]))
    assert r50["video"]["published"] == {"tensorrt_rtx2080ti": 177.6, "no_tensorrt": 67.0}
    assert "published 177.6 FPS (TensorRT, RTX 2080 Ti), 67.0 FPS without TensorRT" in stdout
    for key in ("vpsnet", "densepose"):
        full = cases[key]["full"]
        assert full["ms"] > 0, full
        detections = full["cpu_vs_device"]["instances"]
        assert detections[0] == detections[1] > 0  # the demo weights find the scene's objects


@pytest.mark.slow
def test_smoke_tables_name_every_case(smoke: tuple) -> None:
    results, md, stdout = smoke
    cases = results["sections"]["models"]["cases"]
    assert md.startswith("### GPU check: ")
    assert "torch " in md and "| TensorRT fp16 |" in md and "177.6" in md
    tail = stdout[-12000:]  # what the device tool returns
    assert "== none: CPU run" in tail
    for case in cases:
        assert case["label"] in md
        for graph in case["graphs"]:
            assert f"| {case['label']} | {graph['name']} |" in md
            assert f"{case['key']}/{graph['name']}"[:30] in tail
    assert "CUDA graphs need a CUDA device" in md  # the notes say why cells say skip


@pytest.mark.slow
def test_a_case_past_its_share_is_stopped_and_the_rest_skipped_with_a_note(tmp_path: Path) -> None:
    # overrun_test (test only) sleeps far past any box, so however fast this machine is it is
    # stopped at its share (5 s, the least a case gets in a smoke run) + 5 s grace; that spends
    # the 8 s budget, so the two cases after it are skipped with a note.
    result = run_bench(
        "--device", "cpu", "--smoke", "--section", "models", "--budget-s", "8",
        "--cases", "overrun_test", "retinaface", "translation", out=tmp_path, timeout=240,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    cases = json.loads((tmp_path / "gpu.json").read_text())["sections"]["models"]["cases"]
    assert [case["key"] for case in cases] == ["overrun_test", "retinaface", "translation"]
    overrun, *rest = cases
    stopped = "stopped 5 s past its share of the budget; what it measured is kept"
    assert overrun["notes"] == [stopped]
    assert "error" not in overrun, overrun  # stopped, not left to fail on its own
    for case in rest:
        assert case["skipped"].startswith("skipped: 0 s of the budget left, a case needs 5"), case
    tail = result.stdout[-12000:]
    assert "overrun_test: stopped 5 s past its share" in tail
    assert "of the budget left" in tail
    assert "of the budget left" in (tmp_path / "gpu.md").read_text()


class FakeClock:
    """Seconds that pass only when the test says so."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_models_section_gives_each_case_its_share_and_skips_what_does_not_fit() -> None:
    clock, launched = FakeClock(), []

    def launch(command: list[str], timeout: float) -> int:  # instead of the case's process
        key = command[command.index("--case") + 1]
        share = float(command[command.index("--deadline") + 1]) - clock.now
        launched.append((key, round(share, 3), round(timeout, 3)))
        if key == "yolact_edge_r50":  # never finishes: killed at its timeout
            clock.now += timeout
            return -9
        clock.now += 10.0
        return 0

    args = argparse.Namespace(smoke=False, cases=["retinaface", "translation"])
    section = models_section(args, torch.device("cpu"), clock.now + 100, clock, launch)
    # equal weights: half the budget, then all that is left (+ 15 s grace to exit)
    assert launched == [("retinaface", 50.0, 65.0), ("translation", 90.0, 105.0)]
    assert [case["key"] for case in section["cases"]] == ["retinaface", "translation"]
    assert section["budget_s"] == 100 and section["elapsed_s"] == 20.0

    launched.clear()
    args = argparse.Namespace(smoke=False, cases=None)  # all six; a case needs 25 s
    section = models_section(args, torch.device("cpu"), clock.now + 60, clock, launch)
    assert launched == [("yolact_edge_r50", 25.0, 40.0)]  # 3/10 of 60 s is less than 25 s
    first, *rest = section["cases"]
    assert first["notes"] == ["stopped 15 s past its share of the budget; what it measured is kept"]
    assert len(rest) == 5
    assert all(c["skipped"] == "skipped: 20 s of the budget left, a case needs 25" for c in rest)


def test_a_step_that_does_not_fit_the_time_box_is_skipped() -> None:
    clock = FakeClock()
    box = Clock(clock.now + 10, clock)
    box.need(10, "engine build")  # exactly fits
    clock.now += 0.5
    with pytest.raises(TimeBox, match="engine build: time box"):
        box.need(10, "engine build")
    settings = Settings(smoke=True, warmup=1, least=2, target_s=0.0, batches=(1, 2, 4))

    def call() -> None:  # each call takes 1 s of the fake clock
        clock.now += 1.0

    clock.now = box.deadline  # nothing left: not even the fewest timed calls fit
    with pytest.raises(TimeBox, match="fp32: time box"):
        time_call(call, torch.device("cpu"), box, settings, "fp32")


def test_the_batch_sweep_stops_before_a_batch_that_would_not_fit() -> None:
    clock = FakeClock()
    box = Clock(clock.now + 10, clock)
    settings = Settings(smoke=True, warmup=1, least=2, target_s=0.0, batches=(1, 2, 4))

    def backend(x: torch.Tensor) -> torch.Tensor:  # 1 s of the fake clock per call
        clock.now += 1.0
        return x

    result = sweep(backend, [torch.zeros(1, 3)], torch.device("cpu"), box, settings)
    # batch 1: a warm-up, a probe and 2 timed calls = 4 s; 6 s left < twice that
    assert list(result["batches"]) == ["1"]
    assert result["stopped"] == "time box before batch 2"
    assert clock.now == box.deadline - 6


def test_pipeline_says_skipped_when_pyav_cannot_be_imported(tmp_path: Path) -> None:
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text("import sys\nsys.modules['av'] = None\n")
    env = os.environ | {"PYTHONPATH": str(blocker)}
    result = run_bench(
        "--device",
        "cpu",
        "--smoke",
        "--section",
        "pipeline",
        "--pipeline-note",
        "half A missing",
        out=tmp_path / "out",
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith("pipeline: skipped")]
    assert lines and lines[0].startswith("pipeline: skipped (PyAV missing")
    assert "half A missing" in lines[0]
    results = json.loads((tmp_path / "out" / "gpu.json").read_text())
    assert "PyAV missing" in results["sections"]["pipeline"]["skipped"]
    assert "pipeline: skipped (PyAV missing" in (tmp_path / "out" / "gpu.md").read_text()


@pytest.mark.slow
def test_smoke_pipeline_job_runs_end_to_end(tmp_path: Path) -> None:
    result = run_bench(
        "--device", "cpu", "--smoke", "--section", "pipeline", "--jobs", "instances", out=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (job,) = json.loads((tmp_path / "gpu.json").read_text())["sections"]["pipeline"]["jobs"]
    assert "error" not in job, job
    assert job["frames_out"] == 3 and job["fps"] > 0
    assert job["video"]["frames"] == 3 and job["video"]["codec"] == "h264"
    assert job["stages"]["instances"]["p50_ms"] > 0
    assert "| instances | 3 |" in (tmp_path / "gpu.md").read_text()


def test_job_config_runs_the_shipped_config_without_a_display(tmp_path: Path) -> None:
    config, changes = job_config("faces", torch.device("cuda"), tmp_path)
    kinds = [stage["kind"] for stage in config["stages"]]
    assert "rtsp_server" not in kinds and "face_detector" in kinds
    assert changes == ["live (rtsp_server) left out"]
    detector = next(stage for stage in config["stages"] if stage["kind"] == "face_detector")
    assert detector["backend"] == "auto"  # as shipped: torch on CUDA, onnxruntime on CPUs
    video = next(stage for stage in config["stages"] if stage["kind"] == "video_file")
    assert video["path"] == str(tmp_path / "faces.mp4")


def test_parity_flags_non_finite_outputs_and_names_the_worst() -> None:
    ref = (torch.ones(4), torch.zeros(2))
    close = parity((torch.ones(4) * 1.001, torch.zeros(2)), ref, ["a", "b"])
    assert close["finite"] and close["rel_l2"] == pytest.approx(1e-3, rel=1e-3)
    assert close["worst_output"] == "a"
    broken = parity((torch.tensor([1.0, math.nan, 1, 1]), torch.zeros(2)), ref, ["a", "b"])
    assert not broken["finite"] and broken["worst_output"] == "a"
    off_zero = parity((torch.ones(4), torch.ones(2)), ref, ["a", "b"])
    assert off_zero["worst_output"] == "b" and off_zero["worst_rel_l2"] == math.inf


def test_video_mode_combines_keyframe_and_warped_frames() -> None:
    def graph(ms: float, batches: dict[str, float]) -> dict:
        sweep = {"batches": {b: {"ms": v} for b, v in batches.items()}}
        return {"timings": {"half": {"ms": ms}, "half_graph": {"skipped": "no"}}, "sweep": sweep}

    video = video_mode([graph(5.0, {"1": 5, "8": 20}), graph(2.0, {"1": 2, "8": 8})], (177.6, 67))
    assert video["rows"] == {"half": {"key_ms": 5.0, "nonkey_ms": 2.0, "fps": 5e3 / 13}}
    assert video["best"] == {"batch": 8, "fps": pytest.approx(5 * 8e3 / 52)}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_run_matches_the_cpu_and_times_every_backend(tmp_path: Path) -> None:
    result = run_bench(
        "--device",
        "cuda",
        "--section",
        "models",
        "--cases",
        "retinaface",
        "yolact_edge_demo",
        "--budget-s",
        "150",
        out=tmp_path,
        timeout=400,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "gpu.json").read_text())
    assert results["header"]["half"] == "fp16" and results["header"]["gpu"]
    for case in results["sections"]["models"]["cases"]:
        for graph in case["graphs"]:
            parities, timings = graph["parity"], graph["timings"]
            assert parities["fp32_vs_cpu"]["rel_l2"] < 1e-2  # TF32 convolutions allowed
            assert parities["half_vs_fp32"]["finite"] and parities["half_vs_fp32"]["rel_l2"] < 5e-2
            assert parities["half_graph_vs_fp32"]["rel_l2"] < 5e-2
            assert all(timings[k]["ms"] > 0 for k in ("fp32", "half", "half_cl", "half_graph"))
            assert graph["sweep"]["best_images_per_s"] > 0


def test_merge_replaces_only_the_rerun_cases_and_jobs():
    sections: dict = {}
    first = {
        "models": {"cases": [{"key": "a", "v": 1}, {"key": "b", "v": 1}], "budget_s": 270},
        "pipeline": {"skipped": "PyAV missing"},
    }
    rerun = {
        "models": {"cases": [{"key": "b", "v": 2}, {"key": "c", "v": 2}], "budget_s": 60},
        "pipeline": {"jobs": [{"job": "panoptic", "fps": 9.0}]},
    }
    for origin, results in (("first", first), ("rerun", rerun)):
        for name, section in results.items():
            merge_section(sections, name, section, origin)
    assert sections["models"]["cases"] == [
        {"key": "a", "v": 1},
        {"key": "b", "v": 2},
        {"key": "c", "v": 2},
    ]
    assert sections["models"]["merged_from"] == "first; rerun"
    assert sections["pipeline"] == {
        "jobs": [{"job": "panoptic", "fps": 9.0}],
        "merged_from": "rerun",
    }
    merge_section(sections, "pipeline", {"skipped": "PyAV missing"}, "later")
    assert sections["pipeline"]["jobs"] == [{"job": "panoptic", "fps": 9.0}]  # kept

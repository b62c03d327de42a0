"""run.py end to end, as a user runs it: outputs, exit codes, one-line errors, Ctrl-C."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest

from stages.sources.synthetic import read_counter
from tests.conftest import (
    ROOT,
    ffprobe_frame_count,
    free_port,
    needs_ffprobe,
    read_video,
    wait_until,
    write_video,
)

TRANSCODE = str(ROOT / "configs" / "transcode.yaml")
FACES = str(ROOT / "configs" / "faces.yaml")


def torch_cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def run_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """run.py with ``args``; the timeout only catches a hang (a model job on a busy 2-core
    machine can take minutes)."""
    return subprocess.run(
        [sys.executable, str(ROOT / "run.py"), *args, "--no-progress"],
        capture_output=True, text=True, timeout=timeout, cwd=ROOT,
    )  # fmt: skip


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int, text: str) -> None:
    assert result.returncode == code, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert text in lines[0]
    assert "Traceback" not in result.stderr


def default_job_args(folder: Path) -> list[str]:
    """The default job's options that keep it out of the repository's out/ (its video and
    JSONL go to ``folder``) and off the well-known port 8554 (its RTSP server takes a free one)."""
    url = f"rtsp://127.0.0.1:{free_port()}/faces"
    return ["--output", str(folder / "faces.mp4"), "--set", f"events.path={folder / 'faces.jsonl'}",
            "--serve", url]  # fmt: skip


@pytest.mark.slow
def test_default_job_finds_and_hides_the_faces_of_the_bundled_clip(tmp_path: Path) -> None:
    args = default_job_args(tmp_path)  # no config given: the default job
    result = run_cli(*args, timeout=900)
    url, video, jsonl = args[-1], tmp_path / "faces.mp4", tmp_path / "faces.jsonl"
    assert result.returncode == 0, result.stderr
    times, images, codec = read_video(video)
    assert codec == "h264" and len(images) == 250
    assert times[1] == pytest.approx(0.04)  # 25 fps kept
    events = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert len(events) == 250
    faces = [e["results"]["faces"] for e in events]
    assert sum(len(f["boxes"]) == 2 for f in faces) >= 245  # two people all along
    assert all(len(f["landmarks"]) == len(f["boxes"]) for f in faces)
    hidden = [len(e["results"]["hide"]["boxes"]) for e in events]
    assert all(h >= len(f["boxes"]) for h, f in zip(hidden, faces, strict=True))
    assert "250 frames out" in result.stderr
    assert f"serving {url}" in result.stderr


def test_motion_job_on_the_street_clip(tmp_path: Path) -> None:
    out = tmp_path / "motion_test.jsonl"
    config = str(ROOT / "configs" / "motion.yaml")
    video = f"video.path={tmp_path / 'motion.mp4'}"  # not the repository's out/
    result = run_cli(config, "--max-frames", "100", "--output", str(out), "--set", video)
    assert result.returncode == 0, result.stderr
    lines = out.read_text().splitlines()
    moving = [json.loads(line)["results"]["motion"]["boxes"] for line in lines]
    assert len(moving) == 100
    assert sum(len(b) > 0 for b in moving) > 90  # people walk through the whole clip


def job_results(tmp_path: Path, config: str, stage: str, frames: int) -> list[dict]:
    """Runs ``configs/<config>.yaml`` on ``frames`` frames with its JSONL in ``tmp_path``;
    ``stage``'s result of every frame."""
    out = tmp_path / f"{config}.jsonl"
    path = str(ROOT / "configs" / f"{config}.yaml")
    video = f"video.path={tmp_path / config}.mp4"  # not the repository's out/
    result = run_cli(path, "--max-frames", str(frames), "--output", str(out), "--set", video)
    assert result.returncode == 0, result.stderr
    return [json.loads(line)["results"][stage] for line in out.read_text().splitlines()]


def test_panoptic_job_segments_and_tracks_the_held_out_scene(tmp_path: Path) -> None:
    frames = job_results(tmp_path, "panoptic", "panoptic", 8)
    assert len(frames) == 8
    for segments in (f["segments"] for f in frames):
        assert {s["class"] for s in segments.values() if not s["is_thing"]} >= {8, 10}
        assert any(s["is_thing"] for s in segments.values())
    tracks = [{s["track_id"] for s in f["segments"].values() if s["is_thing"]} for f in frames]
    assert len(tracks[0] & tracks[-1]) >= len(tracks[0]) // 2  # ids persist


def test_instances_job_tracks_the_held_out_scene(tmp_path: Path) -> None:
    frames = job_results(tmp_path, "instances", "instances", 12)
    assert len(frames) == 12 and all(len(f["boxes"]) >= 3 for f in frames)
    ids = [{i for i in f["track_ids"] if i > 0} for f in frames]  # the track stage's
    assert len(ids[1]) >= 3 and len(ids[1] & ids[-1]) >= len(ids[1]) // 2  # ids persist


def test_densepose_job_finds_the_people_of_the_held_out_scene(tmp_path: Path) -> None:
    frames = job_results(tmp_path, "densepose", "people", 6)
    assert len(frames) == 6
    assert all(len(f["boxes"]) >= 1 for f in frames)  # the scene always has someone in view
    # every 2nd frame is carried by flow, so it keeps the previous frame's people
    assert [len(f["boxes"]) for f in frames[0::2]] == [len(f["boxes"]) for f in frames[1::2]]


@needs_ffprobe
def test_file_in_file_out_keeps_every_frame_and_timestamp(tmp_path: Path) -> None:
    pts = [0, 30, 70, 100, 250, 300, 310, 600, 640, 700] * 1
    source = write_video(tmp_path / "vfr.mp4", count=len(pts), pts=pts, time_base=Fraction(1, 1000))
    out = tmp_path / "out.mp4"
    result = run_cli(TRANSCODE, "--source", str(source), "--output", str(out))
    assert result.returncode == 0, result.stderr
    times, images, _codec = read_video(out)
    assert times == pytest.approx([p / 1000 for p in pts], abs=1e-3)
    assert [read_counter(im) for im in images] == list(range(len(pts)))
    assert ffprobe_frame_count(out) == len(pts)


def test_truncated_input_processes_every_decodable_frame(tmp_path: Path) -> None:
    source = write_video(tmp_path / "clip.mp4", count=60)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
    decodable = 0
    import av

    with av.open(str(cut)) as container:
        try:
            for _ in container.decode(video=0):
                decodable += 1
        except av.error.FFmpegError:
            pass
    out = tmp_path / "out.mp4"
    result = run_cli(TRANSCODE, "--source", str(cut), "--output", str(out))
    assert result.returncode == 0, result.stderr
    _, images, _ = read_video(out)
    assert 10 < len(images) == decodable < 60


@pytest.mark.parametrize(
    ("setup", "code", "text"),
    [
        (lambda d: ["--source", str(d / "nope.mp4")], 3, "input file not found"),
        (lambda d: ["--source", str(_touch(d / "zero.mp4", b""))], 3, "empty"),
        (lambda d: ["--source", str(_touch(d / "a.mp4", b"x" * 4000))], 3, "not a readable video"),
        (lambda d: ["--source", str(d / "no_images_here_*.png")], 3, "no images found"),
        (lambda d: [str(d / "missing.yaml")], 2, "config file not found"),
        (lambda d: [str(_touch(d / "bad.yaml", b"stages: [\n"))], 2, "invalid YAML"),
        (lambda d: [str(_config(d, "    pth: x.mp4\n"))], 2, "unknown key 'pth'"),
        (lambda d: [str(_config(d, "", kind="flie"))], 2, "unknown stage kind 'flie'"),
        (lambda d: [str(_touch(d / "top.yaml", b"stages: []\npipelin: {}\n"))], 2, "unknown key"),
        (lambda d: ["--source", "0", "--max-frames", "1"], 3, "camera"),
        (lambda d: ["--output", "rtmp://x/y"], 2, "only rtsp:// is supported"),
        (lambda d: ["--set", "nosuch.crf=20"], 2, "no stage named 'nosuch'"),
        (lambda d: ["--set", "crf=20"], 2, "expected STAGE.KEY=VALUE"),
        (lambda d: ["--set", "out.crff=20"], 2, "unknown key 'crff'"),
        (lambda d: [FACES, "--set", "hide.detections=facez"], 2,
         "stage 'hide' (anonymize): detections: 'facez' is not a stage before this one; "
         "stages before it with Detections: 'faces'"),
    ],
    ids=["missing", "zero-byte", "not-video", "empty-glob", "no-config", "bad-yaml",
         "unknown-key", "unknown-kind", "unknown-top-level", "no-camera", "bad-output",
         "set-no-stage", "set-no-key", "set-unknown-key", "reference-typo"],
)  # fmt: skip
def test_bad_input_is_one_line_error_with_its_exit_code(tmp_path: Path, setup, code, text) -> None:
    args = setup(tmp_path)
    if not args[0].endswith(".yaml"):
        args = [TRANSCODE, *args]
    assert_one_line_error(run_cli(*args, "--output", str(tmp_path / "o.mp4"))
                          if "--output" not in args else run_cli(*args), code, text)  # fmt: skip
    assert not (tmp_path / "o.mp4").exists()  # found before any stage opened


def test_a_file_without_one_decodable_frame_is_an_input_error(tmp_path: Path) -> None:
    cut = tmp_path / "header_only.mp4"
    cut.write_bytes((ROOT / "media" / "pedestrians.mp4").read_bytes()[:5000])
    out = tmp_path / "out.mp4"
    result = run_cli(TRANSCODE, "--source", str(cut), "--output", str(out))
    assert result.returncode == 3, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith(f"error: no decodable video frame in {cut}")
    assert "Traceback" not in result.stderr


def test_set_overrides_stage_and_pipeline_parameters(tmp_path: Path) -> None:
    out = tmp_path / "set.mp4"
    result = run_cli(TRANSCODE, "--set", f"out.path={out}", "--set", "pipeline.max_frames=7")
    assert result.returncode == 0, result.stderr
    assert len(read_video(out)[1]) == 7


def _touch(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _config(folder: Path, extra: str, kind: str = "file") -> Path:
    path = folder / "conf.yaml"
    path.write_text(
        f"stages:\n  - name: source\n    kind: {kind}\n    path: media/pedestrians.mp4\n{extra}"
        "  - name: out\n    kind: discard\n"
    )
    return path


def test_ctrl_c_writes_every_frame_that_entered_the_graph(tmp_path: Path) -> None:
    out, events, metrics = tmp_path / "out.mp4", tmp_path / "events.jsonl", tmp_path / "m.json"
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "run.py"), TRANSCODE, "--source", "synthetic:640x360",
         "--set", "source.frames=null",  # endless: only the signal ends the run
         "--set", f"out.path={out}", "--output", str(events),  # JSONL beside the video
         "--set", "pipeline.stop_grace=0.01",  # a source waiting for room is not cut off
         "--no-progress", "--metrics-json", str(metrics)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip

    def written() -> bool:  # frame 29 written (the JSONL is flushed per frame): well under way
        return events.is_file() and events.read_text().count("\n") >= 30

    try:
        assert wait_until(lambda: written() or proc.poll() is not None, 300) and written()
    finally:
        proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    record = json.loads(metrics.read_text())
    read = record["stages"]["source"]["frames"]  # frames the source read, per the run itself
    assert read >= 30
    # every frame read (queued or in a stage when the signal came) is in both outputs
    _, images, _codec = read_video(out)
    assert [read_counter(im) for im in images] == list(range(read))
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    assert [line["index"] for line in lines] == list(range(read))
    assert record["frames_out"] == read


def test_fanout_config_joins_both_branches_per_frame(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    result = run_cli(
        str(ROOT / "configs" / "fanout.yaml"), "--max-frames", "40", "--output", str(events),
        "--set", f"video.path={tmp_path / 'fanout.mp4'}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    assert [line["index"] for line in lines] == list(range(40))
    assert all(set(line["results"]) == {"large", "small"} for line in lines)
    small = [len(line["results"]["small"]["boxes"]) for line in lines]
    large = [len(line["results"]["large"]["boxes"]) for line in lines]
    assert sum(small) >= sum(large) > 0  # the fine detector finds at least as much


@pytest.mark.skipif(torch_cuda_available(), reason="this machine has CUDA")
def test_cuda_without_a_gpu_is_a_one_line_model_error(tmp_path: Path) -> None:
    # the sinks open first: the default job's outputs and server must not touch out/ or 8554
    result = run_cli("--device", "cuda", *default_job_args(tmp_path))
    assert_one_line_error(result, 7, "CUDA is not available")


@pytest.mark.parametrize(
    ("weights", "text"),
    [("missing.pth", "weights file not found"), ("wrong.pth", "not a PyTorch checkpoint")],
)
def test_bad_weights_are_a_one_line_model_error(tmp_path: Path, weights: str, text: str) -> None:
    (tmp_path / "wrong.pth").write_bytes(b"not a checkpoint" * 100)
    config = tmp_path / "faces.yaml"
    config.write_text(
        "stages:\n"
        "  - {name: source, kind: file, path: media/faces.mp4}\n"
        f"  - {{name: faces, kind: face_detector, weights: {tmp_path / weights}}}\n"
        "  - {name: out, kind: discard}\n"
    )
    assert_one_line_error(run_cli(str(config)), 7, text)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["cam1=rtsp://u:pw@10.0.0.5:554/live/1?token=x", "lobby.mp4", "0"],
         {"cam1": "rtsp://u:pw@10.0.0.5:554/live/1?token=x", "lobby": "lobby.mp4",
          "camera0": "0"}),
        (["rtsp://cam/x?channel=1"], {"cam-x": "rtsp://cam/x?channel=1"}),
        (["rtsp://admin:secret@cam:554/stream?token=abc"],
         {"cam-stream": "rtsp://admin:secret@cam:554/stream?token=abc"}),
        (["a/lobby.mp4", "b/lobby.mp4", "lobby-2=c.mp4"],
         {"lobby": "a/lobby.mp4", "lobby-3": "b/lobby.mp4", "lobby-2": "c.mp4"}),
        (["frames/*.jpg", "synthetic:64x48"],
         {"frames": "frames/*.jpg", "synthetic": "synthetic:64x48"}),
    ],
)  # fmt: skip
def test_sources_are_named_or_get_a_readable_id_without_secrets(values, expected) -> None:
    from stages.sources import named_sources

    named = named_sources(values)
    assert named == expected
    assert not any("secret" in name or "pw" in name or "token" in name for name in named)


def test_the_same_source_name_twice_is_a_config_error(tmp_path: Path) -> None:
    video = write_video(tmp_path / "a.mp4", count=3)
    result = run_cli(TRANSCODE, "--source", f"x={video}", "--source", f"x={video}")
    assert_one_line_error(result, 2, "the name 'x' is given twice")


@needs_ffprobe
def test_three_sources_in_one_run_write_one_file_each_with_their_own_timestamps(
    tmp_path: Path,
) -> None:
    steps = {"a": [0, 1, 2, 5, 6, 9], "b": [0, 2, 3, 4, 8, 9, 10, 13], "c": list(range(11))}
    inputs = {n: write_video(tmp_path / f"{n}.mp4", count=len(p), pts=p,
                             time_base=Fraction(1, 30)) for n, p in steps.items()}  # fmt: skip
    sources = [arg for n, path in inputs.items() for arg in ("--source", f"{n}={path}")]
    result = run_cli(FACES, *sources,
                     "--output", str(tmp_path / "out" / "{source}.mp4"),
                     "--set", f"events.path={tmp_path / 'events.jsonl'}",
                     "--serve", f"rtsp://127.0.0.1:{free_port()}/{{source}}")  # fmt: skip
    assert result.returncode == 0, result.stderr
    for name, pts in steps.items():
        out = tmp_path / "out" / f"{name}.mp4"
        assert ffprobe_frame_count(out) == len(pts)
        times, _, _ = read_video(out)
        source_times, _, _ = read_video(inputs[name])
        assert times == pytest.approx(source_times, abs=1e-3)  # variable frame rate kept
    lines = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert {line["source"] for line in lines} == set(steps)
    assert sum(1 for line in lines if line["source"] == "b") == len(steps["b"])
    for name in steps:
        assert re.search(rf"^{name}\s+ended\s+{len(steps[name])}\s", result.stderr, re.M)


def test_set_reaches_the_pipeline_and_cluster_sections() -> None:
    import run

    raw = {"stages": [{"name": "s", "kind": "synthetic"}], "cluster": {"num_cpus": 2}}
    argv = ["x.yaml", "--set", "cluster.streams_per_worker=2", "--set", "pipeline.threads=3"]
    done = run.apply_overrides(raw, run.parse_args(argv))
    assert done["cluster"] == {"num_cpus": 2, "streams_per_worker": 2}  # the rest kept
    assert done["pipeline"]["threads"] == 3
    fresh = run.apply_overrides({"stages": []}, run.parse_args(argv[:3]))
    assert fresh["cluster"] == {"streams_per_worker": 2}


def test_realtime_and_loop_pace_the_files_among_cameras() -> None:
    import run

    raw = {"stages": [{"name": "cams", "kind": "synthetic"}, {"name": "o", "kind": "discard"}]}
    argv = ["x.yaml", "--source", "a=media/faces.mp4", "--source", "door=rtsp://cam/live",
            "--source", "b=media/pedestrians.mp4", "--realtime", "--loop"]  # fmt: skip
    group = run.apply_overrides(raw, run.parse_args(argv))["stages"][0]["sources"]
    assert group["a"] == {"kind": "file", "path": "media/faces.mp4", "realtime": True,
                          "loop": True}  # fmt: skip
    assert group["b"]["realtime"] and group["b"]["loop"]
    assert group["door"] == {"kind": "stream", "url": "rtsp://cam/live"}  # live already

    from pipeline.errors import ConfigError

    listed = {"stages": [{"name": "cams", "kind": "sources",
                          "sources": ["a=media/faces.mp4", "rtsp://cam/live"]}]}  # fmt: skip
    group = run.apply_overrides(listed, run.parse_args(["x.yaml", "--loop"]))["stages"][0]
    assert group["sources"]["a"]["loop"] and group["sources"]["cam-live"]["kind"] == "stream"
    mapped = {"stages": [{"name": "cams", "kind": "sources", "sources": {"a": "x.mp4"}}]}
    group = run.apply_overrides(mapped, run.parse_args(["x.yaml", "--realtime"]))["stages"][0]
    assert group["sources"]["a"] == {"kind": "file", "path": "x.mp4", "realtime": True,
                                     "loop": False}  # fmt: skip

    only_cameras = ["x.yaml", "--source", "door=rtsp://cam/live", "--loop"]
    with pytest.raises(ConfigError, match="apply to file sources, and none is given"):
        run.apply_overrides(raw, run.parse_args(only_cameras))

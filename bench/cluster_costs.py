#!/usr/bin/env python3
"""What a camera costs the cluster's head, API and workers, measured on a local Ray cluster.

Starts its own Ray cluster on this machine (``ray.cluster_utils.Cluster``: a head without
CPUs and ``--nodes`` worker nodes of one CPU each, as tests/cluster does) and shuts it down
at the end. The cameras are cheap live test patterns (``synthetic:WxH@FPS``) into an H.264
file and a ``web`` sink, no model, so what is measured is the cluster's own cost per
camera, not a model's. Counts and bytes are deterministic; times depend on the machine's
load, so the load average is printed beside them.

- A worker alone (a ``GraphWorker`` actor started directly): time to start (process,
  imports, graph opened), resident memory idle and with 1..k cameras, the time a camera
  takes to open on it, the size of its answers (``ping``, ``streams``, ``stages``,
  ``metrics_text``), a ``ping`` round trip, and what one ``--big`` camera (1280x720)
  adds to its memory.
- The controller (``cluster.ClusterController``, as ``run.py --ray`` runs it) with
  ``--cameras`` cameras, ``--per-worker`` per worker: time to the first camera placed (a
  worker started), each further add (and the add that starts a second worker), the
  Prometheus text ``/metrics`` serves (series and bytes per camera, per worker, fixed) and
  the time to produce it, the ``/api/streams`` and ``/api/stages`` answers per camera, the
  GCS's node table (read every health round), resident memory of Ray's own processes and of
  this process (the API node's controller).
- The API node's fan-out: ``--stubs`` stand-in actors answering with the real worker's
  answers, asked as ``/api/streams`` and a health round ask every worker, at 1, 4 and
  ``--stubs`` workers (more than real workers would fit here); and a bare actor's memory.
- The API node's merge at scale: one real worker's exposition copied to 250 workers
  (1,000 cameras at 4 per worker) and merged as ``/metrics`` merges it.
- The live view out of the API node: JPEG bytes per frame of the bundled clips at the
  ``web`` sink's quality (the MJPEG view, the fallback where WebRTC from the worker does
  not play), and the bundled clips' own H.264 bitrates (what a camera sends in, for
  these scenes).

    python bench/cluster_costs.py                  # 8 cameras, 4 per worker, 2 nodes
    python bench/cluster_costs.py --cameras 4 --size 160x120 --json out/costs.json
"""

from __future__ import annotations

import argparse
import datetime
import inspect
import json
import logging
import os
import pickle
import platform
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from cluster.controller import ClusterController, split_cameras  # noqa: E402
from cluster.metrics import cluster_metrics_text  # noqa: E402
from stages.sinks.web import WebSink  # noqa: E402

CLIPS = (ROOT / "media" / "pedestrians.mp4", ROOT / "media" / "faces.mp4")
"""Real footage for the live view's JPEG sizes: 768x576 at 10 fps, 640x480 at 25 fps."""
SCALE_WORKERS = 250
"""The merge at scale: 250 workers (of 4 cameras by default: 1,000 cameras)."""
PAGE_POLLS_PER_S = 1.0
"""service/static/app.js: ``setInterval(refresh, 1000)``, each refresh GETs /api/streams and
/api/stages."""


@dataclass
class Row:
    """One line of the final table."""

    what: str
    value: str
    how: str = ""


@dataclass
class Results:
    """Every figure the run measured, by section, in the order printed."""

    rows: dict[str, list[Row]] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)

    def add(self, section: str, what: str, value: str, how: str = "", **raw: Any) -> None:
        self.rows.setdefault(section, []).append(Row(what, value, how))
        self.raw.update(raw)


# ---- the machine ------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    """CPU model and cores, memory, Python and Ray versions, date, load average now."""
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    memory = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            memory = int(line.split()[1]) * 1024
    import ray

    return {"cpu": model, "cores": os.cpu_count(), "memory_gib": round(memory / 2**30, 1),
            "python": platform.python_version(), "ray": ray.__version__,
            "date": datetime.date.today().isoformat(), "load": load()}  # fmt: skip


def load() -> str:
    """The 1, 5 and 15 minute load averages, as one string (printed beside every time)."""
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def memory(pid: int) -> dict[str, int]:
    """A process's resident memory in bytes: ``rss`` (all of it), ``anon`` (private, what it
    really adds) and ``shmem`` (shared memory, e.g. Ray's object store mapped into it, which
    Ray's docs say not to count per process). Zeros once it is gone."""
    out = {"rss": 0, "anon": 0, "shmem": 0}
    names = {"VmRSS:": "rss", "RssAnon:": "anon", "RssShmem:": "shmem"}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key = names.get(line.split(":", 1)[0] + ":")
            if key:
                out[key] = int(line.split()[1]) * 1024
    except OSError:
        pass
    return out


def mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB" if n < 10 * 2**20 else f"{n / 2**20:.0f} MiB"


def kib(n: float) -> str:
    return f"{n / 1024:.1f} KiB"


def median_s(call: Callable[[], Any], times: int) -> float:
    """The median wall time of ``times`` calls (after one call to warm up)."""
    call()
    took = []
    for _ in range(times):
        started = time.perf_counter()
        call()
        took.append(time.perf_counter() - started)
    return statistics.median(took)


def wait_for(check: Callable[[], bool], timeout: float, step: float = 0.2) -> bool:
    """Polls ``check`` until it holds or ``timeout`` seconds passed (cameras warming up)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(step)
    return check()


# ---- Prometheus text --------------------------------------------------------------------
def split_series(text: bytes) -> dict[str, tuple[int, int]]:
    """An exposition's sample lines by what they grow with: ``camera`` (a ``source`` label),
    ``worker`` (a ``worker`` label but no source: per stage, per worker), ``fixed`` (the
    rest), ``meta`` (HELP / TYPE lines, one pair per family); each as (lines, bytes)."""
    out = {"camera": [0, 0], "worker": [0, 0], "fixed": [0, 0], "meta": [0, 0]}
    for line in text.decode().splitlines():
        if line.startswith("#"):
            kind = "meta"
        elif 'source="' in line:
            kind = "camera"
        elif 'worker="' in line:
            kind = "worker"
        else:
            kind = "fixed"
        out[kind][0] += 1
        out[kind][1] += len(line) + 1
    return {k: (v[0], v[1]) for k, v in out.items()}


def total_lines(series: dict[str, tuple[int, int]]) -> int:
    """All lines of an exposition split by :func:`split_series`."""
    return sum(lines for lines, _ in series.values())


def merge_at_scale(
    worker_text: bytes, per_worker: int, workers: int, times: int = 3
) -> tuple[float, int, int]:
    """Merges ``workers`` copies of one real worker's exposition (its cameras renamed so
    that every copy's are distinct) as the API node merges them for ``/metrics``.

    Returns:
        (the median seconds of ``times`` merges, bytes of the result, its sample lines).
    """
    text = worker_text.decode()
    texts = []
    for i in range(workers):
        renamed = re.sub(r'source="([^"]*)"', lambda m, i=i: f'source="w{i}-{m.group(1)}"', text)
        texts.append((f"{i:056x}", f"worker-{i + 1}", renamed.encode()))
    took = []
    for _ in range(times):  # a median: one merge takes a second or two, long enough to be
        started = time.perf_counter()  # caught by other programs' bursts on a shared machine
        merged = cluster_metrics_text(texts, workers, workers * per_worker, 0, 0)
        took.append(time.perf_counter() - started)
    lines = sum(1 for line in merged.decode().splitlines() if not line.startswith("#"))
    return statistics.median(took), len(merged), lines


# ---- the live view out and the cameras in -----------------------------------------------
def web_quality() -> int:
    """The ``web`` sink's JPEG quality by default (its constructor's)."""
    return int(inspect.signature(WebSink).parameters["quality"].default)


def clip_frames(path: Path, limit: int) -> tuple[list[np.ndarray], float]:
    """Up to ``limit`` decoded BGR frames of a clip at its own size, and its frame rate."""
    capture = cv2.VideoCapture(str(path))
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    frames = []
    while len(frames) < limit:
        ok, image = capture.read()
        if not ok:
            break
        frames.append(image)
    capture.release()
    return frames, fps


def jpeg_bytes(frames: list[np.ndarray], quality: int, size: tuple[int, int] | None) -> float:
    """Mean JPEG bytes per frame at ``quality`` (resized to ``size`` first when given), as
    ``LiveFeed.jpeg`` encodes them for the MJPEG view."""
    out = []
    for image in frames:
        if size is not None:
            image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        assert ok
        out.append(len(data))
    return statistics.mean(out)


def clip_bitrate(path: Path) -> tuple[float, str]:
    """A clip's video bitrate in bit/s (its stream's, else the file's) and what it is."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        rate = stream.bit_rate or container.bit_rate
        what = (f"{stream.codec_context.name} {stream.width}x{stream.height} "
                f"@ {float(stream.average_rate or 0):.0f} fps")  # fmt: skip
    return float(rate), what


def live_view(results: Results) -> None:
    """JPEG bytes per frame of real footage, times the clip's rate: the bandwidth one MJPEG
    viewer takes out of the API node (and the API node takes from the worker)."""
    quality = web_quality()
    section = "live view out, per viewer per camera (MJPEG, the fallback view)"
    for path in CLIPS:
        frames, fps = clip_frames(path, 300)
        h, w = frames[0].shape[:2]
        sizes: list[tuple[str, tuple[int, int] | None]] = [(f"{w}x{h} (native)", None)]
        if path.name == "pedestrians.mp4":  # upscaled: real 720p / 1080p has more detail
            sizes += [("1280x720 (upscaled)", (1280, 720)), ("1920x1080 (upscaled)", (1920, 1080))]
        for label, size in sizes:
            used = frames if size is None else frames[:60]  # upscaling 300 frames is slow
            mean = jpeg_bytes(used, quality, size)
            results.add(
                section, f"{path.name} {label}, q{quality}",
                f"{kib(mean)}/frame; {mean * 8 * fps / 1e6:.2f} Mbit/s at {fps:.0f} fps, "
                f"{mean * 8 * 25 / 1e6:.2f} at 25",
                f"mean of {len(used)} frames",
                **{f"jpeg_{path.stem}_{label.split()[0]}": mean},
            )  # fmt: skip
    for path in CLIPS:
        rate, what = clip_bitrate(path)
        results.add("cameras in (the bundled clips' H.264, for scale)", path.name,
                    f"{rate / 1e6:.2f} Mbit/s", what)  # fmt: skip


# ---- the cluster ------------------------------------------------------------------------
def camera_config(out: Path, cameras: dict[str, str], per_worker: int) -> dict[str, Any]:
    """The service config the controller gets: cameras into an H.264 file each and a
    ``web`` sink, ``per_worker`` cameras per 1-CPU worker, health checks every second
    (the default)."""
    return {
        "cluster": {"streams_per_worker": per_worker, "num_cpus": 1, "health_interval": 1.0},
        "stages": [
            {"name": "cams", "kind": "sources", "keep_open": True, "sources": cameras},
            {"name": "video", "kind": "video_file", "path": str(out / "{source}.mp4")},
            {"name": "web", "kind": "web", "inputs": ["cams"]},
        ],
    }


def children_of(parent: int) -> dict[int, str]:
    """The processes whose parent is ``parent``, with their command line's first word (Ray
    names its workers ``ray::Class`` / ``ray::IDLE`` and its agents ``ray::...Agent``)."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            args = (entry / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
        except (OSError, IndexError, ValueError):  # ended meanwhile
            continue
        if ppid == parent:
            out[int(entry.name)] = args
    return out


def ray_processes(cluster: Any) -> dict[str, int]:
    """Anonymous resident memory of Ray's own processes: those Ray started for the head
    (GCS, raylet, monitors) and for one worker node (its raylet), plus each raylet's agents
    and idle worker processes (the actors are left out: they are the workers measured
    elsewhere)."""
    out: dict[str, int] = {}
    for where, node in (
        ("head", cluster.head_node),
        ("worker node", next(iter(cluster.worker_nodes))),
    ):
        for kind, infos in node.all_processes.items():
            for info in infos:
                out[f"{where}: {kind}"] = memory(info.process.pid)["anon"]
        raylet = node.all_processes["raylet"][0].process.pid
        for pid, name in children_of(raylet).items():
            if name.startswith("ray::") and (name.endswith("Agent") or name == "ray::IDLE"):
                key = f"{where}: {name.removeprefix('ray::')}"
                out[key] = out.get(key, 0) + memory(pid)["anon"]
    return out


class StubWorker:
    """A stand-in for GraphWorker with canned answers (a real worker's), to time the API
    node's fan-out over more workers than this machine can run real ones."""

    def __init__(self, rows: list[dict[str, Any]], stages: dict[str, Any], text: bytes) -> None:
        self.rows, self.stage_table, self.text = rows, stages, text

    def pid(self) -> int:
        return os.getpid()

    def ping(self) -> dict[str, Any]:
        return {"running": True, "load": os.getloadavg()[0]}

    def streams(self) -> list[dict[str, Any]]:
        return self.rows

    def stages(self) -> dict[str, Any]:
        return self.stage_table

    def metrics_text(self) -> bytes:
        return self.text


def gather(ray: Any, refs: list[Any]) -> list[Any]:
    """Every answer, waiting for all at once: ``ClusterController._gather``'s calls."""
    ray.wait(refs, num_returns=len(refs), timeout=5.0)
    return [ray.get(ref, timeout=0) for ref in refs]


def fan_out(results: Results, ray: Any, answers: tuple[Any, Any, bytes], most: int) -> None:
    """Times the API node's calls to every worker (one ``/api/streams`` poll, one health
    round) over 1, 4 and ``most`` stub workers, and the memory of one bare Ray actor."""
    section = "API node fan-out over workers (stub actors with a real worker's answers)"
    stub = ray.remote(StubWorker).options(num_cpus=0, max_concurrency=4)
    started = time.perf_counter()
    actors = [stub.remote(*answers) for _ in range(most)]
    pids = ray.get([a.pid.remote() for a in actors], timeout=300)
    took = time.perf_counter() - started
    bare = statistics.median(memory(pid)["anon"] for pid in pids)
    results.add(section, "a bare Ray actor process (no FrameGraph import)", mib(bare) + " anon",
                f"median of {most}; {most} started in {took:.1f} s, load {load()}",
                bare_actor=bare, stubs_started_s=took)  # fmt: skip
    timings = {}
    for count in sorted({1, 4, most}):
        some = actors[:count]
        poll = median_s(lambda some=some: gather(ray, [a.streams.remote() for a in some]), 10)

        def health_round(some: list[Any] = some) -> None:
            # check_workers' calls (cluster/actors.py): a ping to each and its answer read
            # (it reads each answer at its next round; waiting here makes this an upper bound)
            questions = [a.ping.remote() for a in some]
            for question in questions:
                ray.wait([question], timeout=1.0)
                ray.get(question)

        round_s = median_s(health_round, 10)
        timings[count] = (poll, round_s)
        results.add(section, f"{count} workers: streams() to all / one health round",
                    f"{poll * 1e3:.1f} ms / {round_s * 1e3:.1f} ms",
                    f"median of 10; load {load()}")  # fmt: skip
    (p1, h1), (pn, hn) = timings[1], timings[most]
    results.add(section, "per further worker (slope)",
                f"{(pn - p1) / (most - 1) * 1e3:.2f} ms / {(hn - h1) / (most - 1) * 1e3:.2f} ms",
                f"from 1 to {most} workers", fan_out=timings)  # fmt: skip
    for actor in actors:
        ray.kill(actor, no_restart=True)


def a_worker_alone(
    results: Results, ray: Any, config: dict[str, Any], k: int, live: str, big: str
) -> tuple[list[dict[str, Any]], dict[str, Any], bytes]:
    """Measures one GraphWorker actor started directly (no controller): start time, memory
    idle and with 1..k cameras, add time, answer sizes, ping round trip.

    Returns:
        Its answers with k cameras (streams, stages, exposition), for the runs at scale.
    """
    from cluster.worker import GraphWorker

    section = "one worker (a GraphWorker actor, no model)"
    worker_config, _ = split_cameras(config)
    actor = ray.remote(GraphWorker).options(
        num_cpus=0,  # beside the controller's workers, whose CPUs it must not take
        max_restarts=0,
        max_concurrency=4,  # as the controller starts them
        runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}},
    )
    started = time.perf_counter()
    handle = actor.remote(worker_config, "alone", str(ROOT))
    where = ray.get(handle.ready.remote(120), timeout=180)
    took = time.perf_counter() - started
    pid = where["pid"]
    results.add(section, "start: process, imports, graph opened", f"{took:.1f} s",
                f"load {load()}", worker_start_s=took)  # fmt: skip
    idle = memory(pid)
    results.add(section, "memory idle (0 cameras)", f"{mib(idle['anon'])} anon",
                f"RSS {mib(idle['rss'])}", worker_idle=idle)  # fmt: skip

    ping = ray.get(handle.ping.remote())
    rtt = median_s(lambda: ray.get(handle.ping.remote()), 20)
    results.add(section, "health check (ping) answer", f"{len(pickle.dumps(ping))} B pickled",
                f"round trip {rtt * 1e3:.1f} ms median of 20, load {load()}",
                ping_bytes=len(pickle.dumps(ping)), ping_rtt_s=rtt)  # fmt: skip

    adds, memories = [], [idle]
    for i in range(1, k + 1):
        name = f"cam{i}"
        started = time.perf_counter()
        ray.get(handle.add_stream.remote(name, live))
        adds.append(time.perf_counter() - started)

        def flowing(name: str = name) -> bool:
            rows = {r["name"]: r for r in ray.get(handle.streams.remote())}
            return rows[name]["frames"] > 20  # its buffers and encoder are allocated

        wait_for(flowing, 60)
        memories.append(memory(pid))
    results.add(section, "add a camera on a running worker",
                f"{statistics.median(adds) * 1e3:.0f} ms median",
                f"{', '.join(f'{a * 1e3:.0f}' for a in adds)} ms; load {load()}",
                worker_add_s=adds)  # fmt: skip
    per_camera = (memories[-1]["anon"] - memories[1]["anon"]) / max(k - 1, 1)
    results.add(section, f"memory with 1..{k} cameras",
                " / ".join(mib(m["anon"]) for m in memories[1:]) + " anon",
                f"+{mib(per_camera)} per camera after the first "
                f"({args_size_note(live)})", worker_memory=memories)  # fmt: skip

    rows = ray.get(handle.streams.remote())
    stages = ray.get(handle.stages.remote())
    text = ray.get(handle.metrics_text.remote())
    if big:  # one larger camera: what frame size adds (buffers, encoder)
        before = memory(pid)
        ray.get(handle.add_stream.remote("big", f"synthetic:{big}@{live.rsplit('@', 1)[1]}"))
        wait_for(lambda: ray.get(handle.streams.remote())[-1]["frames"] > 20, 60)
        grew = memory(pid)["anon"] - before["anon"]
        results.add(section, f"memory of one {big} camera", f"+{mib(grew)} anon",
                    "H.264 file + web sink", big_camera=grew)  # fmt: skip
        ray.get(handle.remove_stream.remote("big"))
    number_jpeg = ray.get(handle.live_jpeg.remote("cam1", 0, 2.0))
    jpeg_rtt = median_s(lambda: ray.get(handle.live_jpeg.remote("cam1", 0, 0.0)), 20)
    results.add(section, "streams() answer", f"{len(pickle.dumps(rows)) / k:.0f} B per camera",
                f"pickled, {k} cameras", worker_streams_bytes=len(pickle.dumps(rows)))  # fmt: skip
    results.add(section, "stages() answer", f"{len(pickle.dumps(stages))} B per worker",
                f"pickled, {len(stages)} stages")  # fmt: skip
    results.add(section, "metrics_text() answer", f"{kib(len(text))} per worker",
                f"{k} cameras", worker_metrics_bytes=len(text))  # fmt: skip
    if number_jpeg is not None:
        results.add(section, "live_jpeg() call (one MJPEG frame)",
                    f"{jpeg_rtt * 1e3:.1f} ms round trip",
                    f"{len(number_jpeg[1])} B synthetic frame; load {load()}")  # fmt: skip
    ray.get(handle.stop.remote(30), timeout=60)
    ray.kill(handle, no_restart=True)
    return rows, stages, text


def args_size_note(live: str) -> str:
    return f"cameras {live.split(':', 1)[1]}, H.264 file + web sink"


def the_controller(
    results: Results, ray: Any, cluster: Any, config: dict[str, Any], n: int, k: int, live: str
) -> None:
    """Measures the controller with ``n`` cameras, ``k`` per worker (see the module doc)."""
    section = "the controller (API node) and what it asks of workers"
    before = memory(os.getpid())
    controller = ClusterController(config)
    try:
        started = time.perf_counter()
        controller.start()  # the config's one camera: starts the first worker
        first = time.perf_counter() - started
        results.add(section, "first camera placed (a worker started)", f"{first:.1f} s",
                    f"load {load()}", first_placed_s=first)  # fmt: skip

        def live_all(names: list[str]) -> bool:
            rows = {r["name"]: r for r in controller.list_streams()}
            return all(rows[x]["state"] == "live" and rows[x]["frames"] > 5 for x in names)

        wait_for(lambda: live_all(["cam1"]), 60)
        one = controller.metrics_text()

        adds, new_worker = [], None
        for i in range(2, n + 1):
            workers = {r["worker"] for r in controller.list_streams()}
            started = time.perf_counter()
            placed = controller.add(f"cam{i}", live)
            took = time.perf_counter() - started
            if placed["worker"] not in workers:
                new_worker = took
            else:
                adds.append(took)
        results.add(section, "add a camera (a worker with room)",
                    f"{statistics.median(adds) * 1e3:.0f} ms median",
                    f"{len(adds)} adds; load {load()}", add_s=adds)  # fmt: skip
        if new_worker is not None:
            results.add(section, "add that starts another worker", f"{new_worker:.1f} s",
                        f"load {load()}", add_new_worker_s=new_worker)  # fmt: skip
        names = [f"cam{i}" for i in range(1, n + 1)]
        wait_for(lambda: live_all(names), 90)

        text = controller.metrics_text()
        rows = controller.list_streams()
        workers = len({r["worker"] for r in rows})
        series, series_one = split_series(text), split_series(one)
        per_cam_lines, per_cam_bytes = (x / n for x in series["camera"])
        per_worker_lines, per_worker_bytes = (x / workers for x in series["worker"])
        results.add(section, "/metrics series per camera",
                    f"{per_cam_lines:.0f} ({kib(per_cam_bytes)})",
                    f"source-labelled sample lines / {n} cameras",
                    series=series, series_one=series_one)  # fmt: skip
        results.add(section, "/metrics series per worker",
                    f"{per_worker_lines:.0f} ({kib(per_worker_bytes)})",
                    f"per-stage lines / {workers} workers")  # fmt: skip
        results.add(section, "/metrics fixed (controller's own) + HELP/TYPE",
                    f"{series['fixed'][0]} + {series['meta'][0]} lines",
                    f"1 camera: {total_lines(series_one)} lines, {kib(len(one))}; "
                    f"{n}: {total_lines(series)} lines, {kib(len(text))}")  # fmt: skip
        took = median_s(controller.metrics_text, 10)
        results.add(section, f"/metrics produced ({n} cameras, {workers} workers)",
                    f"{took * 1e3:.0f} ms median of 10", f"load {load()}",
                    metrics_s=took)  # fmt: skip
        took = median_s(controller.list_streams, 10)
        api_rows = json.dumps(rows).encode()
        results.add(section, "/api/streams answer",
                    f"{len(api_rows) / n:.0f} B JSON per camera",
                    f"made in {took * 1e3:.0f} ms median of 10 (one call per worker); "
                    f"load {load()}", streams_json_bytes=len(api_rows), streams_s=took)  # fmt: skip
        stages = json.dumps(controller.stages()).encode()
        results.add(section, "/api/stages answer", f"{len(stages) / workers:.0f} B JSON per worker",
                    "one call per worker")  # fmt: skip
        results.add(section, "Ray calls per open page per second",
                    f"{2 * workers * PAGE_POLLS_PER_S:.0f} = 2 x {workers} workers",
                    "app.js polls /api/streams and /api/stages every 1 s; each asks every "
                    "worker; plus one live_jpeg call per frame shown for each tile on the "
                    "MJPEG fallback")  # fmt: skip
        results.add(section, "health round (every health_interval = 1 s)",
                    f"{workers} pings + 1 node table read",
                    "cluster/actors.py check_workers")  # fmt: skip
        nodes = ray.nodes()
        took = median_s(ray.nodes, 10)
        results.add(section, "node table from the GCS (ray.nodes())",
                    f"{len(pickle.dumps(nodes)) / len(nodes):.0f} B per node",
                    f"{len(nodes)} nodes; read in {took * 1e3:.1f} ms median of 10, load {load()}",
                    nodes_bytes=len(pickle.dumps(nodes)), nodes_s=took)  # fmt: skip
        after = memory(os.getpid())
        results.add(section, "this process (controller + Ray driver)",
                    f"+{mib(after['anon'] - before['anon'])} anon",
                    f"{mib(after['anon'])} in all (this bench also holds cv2, PyAV)",
                    controller_memory=(before, after))  # fmt: skip
        for what, anon in ray_processes(cluster).items():
            results.add("Ray's own processes (anonymous resident memory)", what, mib(anon))
    finally:
        started = time.perf_counter()
        controller.stop()
        results.add(section, f"stop ({n} files finalised, workers ended)",
                    f"{time.perf_counter() - started:.1f} s", f"load {load()}")  # fmt: skip


def run(args: argparse.Namespace) -> Results:
    """The whole bench; Ray's processes started here are ended before it returns."""
    import ray
    from ray.cluster_utils import Cluster

    results = Results()
    results.raw["machine"] = machine()
    live = f"synthetic:{args.size}@{args.fps:g}"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        config = camera_config(out, {"cam1": live}, args.per_worker)
        started = time.perf_counter()
        cluster = Cluster(initialize_head=True,
                          head_node_args={"num_cpus": 0, "include_dashboard": False})  # fmt: skip
        try:
            for _ in range(args.nodes):
                cluster.add_node(num_cpus=1)
            # log_to_driver off: the workers' logs would bury the table (run.py --ray keeps them)
            ray.init(address=cluster.address, log_to_driver=False)
            cluster.wait_for_nodes()
            results.add("cluster", f"local cluster up (head + {args.nodes} 1-CPU nodes)",
                        f"{time.perf_counter() - started:.1f} s", f"load {load()}")  # fmt: skip
            alone = camera_config(out / "alone", {"cam1": live}, args.per_worker)
            answers = a_worker_alone(results, ray, alone, args.per_worker, live, args.big)
            the_controller(results, ray, cluster, config, args.cameras, args.per_worker, live)
            fan_out(results, ray, answers, args.stubs)
        finally:
            ray.shutdown()
            cluster.shutdown()
    cameras = SCALE_WORKERS * args.per_worker
    took, size, lines = merge_at_scale(answers[2], args.per_worker, SCALE_WORKERS)
    results.add(f"API node at scale ({cameras} cameras: {SCALE_WORKERS} workers x "
                f"{args.per_worker}; one real worker's text copied)",
                "/metrics merge (parse + relabel + write)", f"{took:.2f} s median of 3",
                f"{mib(size)}, {lines} sample lines; load {load()}",
                scale_merge_s=took, scale_bytes=size, scale_lines=lines)  # fmt: skip
    live_view(results)
    results.raw["machine"]["load_end"] = load()
    return results


def print_table(results: Results) -> None:
    info = results.raw["machine"]
    print(f"\n{info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB; Python "
          f"{info['python']}, Ray {info['ray']}; {info['date']}; load average (1/5/15 min) "
          f"{info['load']} at the start, {info['load_end']} at the end")  # fmt: skip
    width = max(len(r.what) for rows in results.rows.values() for r in rows) + 2
    value_width = max(len(r.value) for rows in results.rows.values() for r in rows) + 2
    for section, rows in results.rows.items():
        print(f"\n{section}")
        for row in rows:
            print(f"  {row.what:<{width}}{row.value:<{value_width}}{row.how}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cameras", type=int, default=8, help="cameras on the controller")
    parser.add_argument("--per-worker", type=int, default=4, help="cluster.streams_per_worker")
    parser.add_argument("--nodes", type=int, default=2, help="1-CPU worker nodes")
    parser.add_argument("--size", default="320x240", help="the test cameras' frame size")
    parser.add_argument("--fps", type=float, default=10.0, help="the test cameras' frame rate")
    parser.add_argument("--big", default="1280x720", help="one larger camera's size ('' : none)")
    parser.add_argument("--stubs", type=int, default=16, help="stub workers for the fan-out")
    parser.add_argument("--json", type=Path, help="also write every figure here")
    args = parser.parse_args()
    if args.cameras < 2 or args.per_worker < 2:
        parser.error("--cameras and --per-worker must be at least 2 (per-camera slopes)")
    if args.stubs < 5:
        parser.error("--stubs must be at least 5 (it is timed beside 1 and 4 workers)")
    logging.basicConfig(level=logging.ERROR)  # the controller's info lines: not the table's
    started = time.perf_counter()
    results = run(args)
    print_table(results)
    print(f"\n(whole run {time.perf_counter() - started:.0f} s)")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results.raw, indent=1, default=str))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Many cameras: one process serving N inputs against N processes serving one each.

Both sides run the faces job (``configs/faces.yaml``: detect, blur, draw, H.264 file, JSON
lines, RTSP server) on the bundled 640x480 clip, as a user runs it: ``run.py`` from process
start to finished files; one process gets N ``--source NAME=clip`` and writes
``{source}.mp4``, the other side starts N ``run.py`` processes at once.

- files: every frame of N inputs (250 each); total frames/s (N x 250 / wall time of the
  slowest process) and total resident memory (the peak of the summed RSS of the processes,
  sampled every 50 ms).
- live: N inputs paced at 25 fps (``--realtime --loop``, ``--live-frames`` out of each); an
  N keeps real time when every input lost at most 1% of its frames to drops, its frames
  left the graph at >= 97% of 25 fps, and the end-to-end p95 latency stayed under 500 ms
  (read from ``--metrics-json``). Prints each N tried and the largest that kept real time,
  for each side.

    python bench/streams.py                     # files at N = 1, 2, 4, 8; live up to 8
    python bench/streams.py --counts 1 2 --live-frames 100
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.rtsp_latency import free_port  # noqa: E402

CLIP = ROOT / "media" / "faces.mp4"  # 640x480, 250 frames at 25 fps
CONFIG = ROOT / "configs" / "faces.yaml"
LIVE_FPS = 25


def rss_bytes(pid: int) -> int:
    """Resident memory of a process, 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def job(out: Path, sources: list[str], extra: list[str]) -> list[str]:
    """One run.py command: the faces job on ``sources`` (NAME=PATH), outputs under ``out``."""
    args = [sys.executable, str(ROOT / "run.py"), str(CONFIG), "--no-progress"]
    for source in sources:
        args += ["--source", source]
    return [
        *args,
        "--output", str(out / "{source}.mp4"),
        "--set", f"events.path={out / 'events.jsonl'}",
        "--serve", f"rtsp://127.0.0.1:{free_port()}/{{source}}",
        "--metrics-json", str(out / "metrics.json"),
        *extra,
    ]  # fmt: skip


def run_together(commands: list[list[str]]) -> tuple[float, int, list[int]]:
    """Starts the commands at once; returns (wall seconds until the last ended, peak summed
    RSS in bytes, exit codes)."""
    start = time.perf_counter()
    processes = [
        subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for c in commands
    ]
    peak = 0
    while any(p.poll() is None for p in processes):
        peak = max(peak, sum(rss_bytes(p.pid) for p in processes if p.poll() is None))
        time.sleep(0.05)
    wall = time.perf_counter() - start
    for p in processes:
        if p.returncode:
            print(f"  exit {p.returncode}: {p.stderr.read().strip()[-300:]}", file=sys.stderr)
    return wall, peak, [p.returncode for p in processes]


def commands(n: int, one_process: bool, folder: Path, extra: list[str]) -> list[list[str]]:
    names = [f"cam{i + 1}" for i in range(n)]
    if one_process:
        out = folder / "one"
        return [job(out, [f"{name}={CLIP}" for name in names], extra)]
    return [job(folder / name, [f"{name}={CLIP}"], extra) for name in names]


def metrics_files(n: int, one_process: bool, folder: Path) -> list[Path]:
    if one_process:
        return [folder / "one" / "metrics.json"]
    return [folder / f"cam{i + 1}" / "metrics.json" for i in range(n)]


def kept_real_time(files: list[Path]) -> tuple[bool, float, float, float]:
    """Whether every input kept real time, from the runs' metrics JSON: it lost at most 1%
    of its frames (dropped while waiting in its queue or on a ``latest`` edge), its frames
    left the graph at >= 97% of the camera's rate, and the end-to-end p95 stayed under 500
    ms. Returns (kept, the worst delivered share, the worst output rate in fps, the worst
    p95 in ms)."""
    worst_share, worst_fps, worst_p95 = 1.0, float("inf"), 0.0
    for path in files:
        snapshot = json.loads(path.read_text())
        rows = snapshot["sources"].values()
        edge_drops = snapshot["drops"] / max(len(rows), 1)  # shared by the inputs of a run
        for row in rows:
            lost = row["drops"] + edge_drops
            worst_share = min(worst_share, row["frames"] / (row["frames"] + lost))
            worst_fps = min(worst_fps, row["fps"] or 0.0)
        worst_p95 = max(worst_p95, snapshot["e2e_p95_ms"] or float("inf"))
    kept = worst_share >= 0.99 and worst_fps >= 0.97 * LIVE_FPS and worst_p95 < 500
    return kept, worst_share, worst_fps, worst_p95


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--live-frames", type=int, default=250, help="frames per live input")
    parser.add_argument("--live-max", type=int, default=8, help="largest live N tried")
    args = parser.parse_args()
    print(f"faces job on {CLIP.name} (640x480, 250 frames), each side from process start to "
          "finished files")  # fmt: skip
    print(f"\nfiles{'':7}{'one process':>26}{'N processes':>26}{'ratio':>16}")
    print(f"{'N':>4}{'frames/s':>14}{'RSS MB':>10}{'wall s':>8}{'frames/s':>12}{'RSS MB':>10}"
          f"{'wall s':>8}{'fps':>8}{'RSS':>8}")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for n in args.counts:
            row = []
            for one in (True, False):
                wall, peak, codes = run_together(commands(n, one, folder / f"f{n}{one}", []))
                row.append((n * 250 / wall, peak / 2**20, wall, any(codes)))
            (fps1, mb1, w1, bad1), (fps2, mb2, w2, bad2) = row
            flag = "  (a run failed)" if bad1 or bad2 else ""
            print(f"{n:>4}{fps1:>14.1f}{mb1:>10.0f}{w1:>8.1f}{fps2:>12.1f}{mb2:>10.0f}{w2:>8.1f}"
                  f"{fps1 / fps2:>7.2f}x{mb1 / mb2:>7.2f}x{flag}")  # fmt: skip
        extra = ["--realtime", "--loop", "--max-frames", str(args.live_frames)]
        print(f"\nlive inputs at {LIVE_FPS} fps, {args.live_frames} frames each "
              "(real time: <= 1% dropped, >= 97% of 25 fps out, p95 < 500 ms)")  # fmt: skip
        best = {}
        for one in (True, False):
            side = "one process" if one else "N processes"
            best[side] = 0
            for n in range(1, args.live_max + 1):
                where = folder / f"l{n}{one}"
                run_together(commands(n, one, where, extra))
                ok, share, fps, p95 = kept_real_time(metrics_files(n, one, where))
                print(f"  {side:<12} N={n}: worst input delivered {share:.1%} at {fps:.1f} fps,"
                      f" p95 {p95:.0f} ms -> {'real time' if ok else 'behind'}")  # fmt: skip
                if not ok:
                    break
                best[side] = n
        print("largest N in real time: " + ", ".join(f"{k} {v}" for k, v in best.items()))


if __name__ == "__main__":
    main()

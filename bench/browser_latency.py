#!/usr/bin/env python3
"""The browser view, measured in headless Chromium (Debian's, through Playwright):

- latency: glass to glass on loopback. A stage right before the ``web`` sink paints the wall
  clock (µs, as black / white blocks; bench/rtsp_latency.py's code) into each frame of a
  live 640x480 30 fps test pattern; the page's tile is read back through a canvas at each
  new video frame (WebRTC, ``requestVideoFrameCallback``) or every 5 ms (MJPEG,
  ``/?view=mjpeg``), and the painted time subtracted from the browser's clock (same host,
  same clock). Prints p50 / p95 per view, beside bench/rtsp_latency.py's RTSP figures.
- viewers: the faces job (configs/faces.yaml on the bundled clip, looped, ``--api``) run to
  ``--frames`` frames with 0, 1 and 4 pages watching it over WebRTC; prints the pipeline's
  frames/s for each and the CPU time its process spent per frame. Twice: sharing every
  core with the browser (whose decoding of 4 videos then slows the pipeline as any other
  program on the machine would), and pinned, the pipeline's process to CPU 0 and the
  browser to the others, as when viewers watch from their own machines.

    python bench/browser_latency.py [--samples 200] [--frames 750]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.rtsp_latency import BITS, BLOCK, StampTime, free_port  # noqa: E402
from pipeline.graph import Graph, NodeSpec  # noqa: E402
from service.app import create_app  # noqa: E402
from service.server import ApiServer  # noqa: E402
from stages.sinks.web import WebSink  # noqa: E402
from stages.sources.group import SourceGroup  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-features=WebRtcHideLocalIpsWithMdns",
        "--autoplay-policy=no-user-gesture-required"]  # fmt: skip
READ_TIME = f"""(image) => {{
  const canvas = document.createElement("canvas");
  canvas.width = image.videoWidth || image.naturalWidth;
  canvas.height = image.videoHeight || image.naturalHeight;
  const context = canvas.getContext("2d");
  context.drawImage(image, 0, 0);
  const x0 = canvas.width - {BITS * BLOCK // 2};
  let micros = 0n;
  for (let bit = 0; bit < {BITS}; bit++) {{
    const row = Math.floor(bit / {BITS // 2}), col = bit % {BITS // 2};
    const data = context.getImageData(x0 + col * {BLOCK} + 4, row * {BLOCK} + 4,
                                      {BLOCK - 8}, {BLOCK - 8}).data;
    let sum = 0;
    for (let i = 0; i < data.length; i += 4) sum += data[i + 1];
    if (sum / (data.length / 4) > 127) micros |= 1n << BigInt(bit);
  }}
  return Number(micros);
}}"""
COLLECT = f"""async ([selector, samples, mjpeg]) => {{
  const readTime = {READ_TIME};
  const image = document.querySelector(selector);
  const out = [];
  let last = -1;
  const wrap = 2 ** {BITS};
  const sample = (nowMs) => {{
    const painted = readTime(image);
    if (painted === last) return;
    last = painted;
    const now = Math.round((performance.timeOrigin + nowMs) * 1000) % wrap;
    out.push((now - painted + wrap) % wrap / 1000);
  }};
  return await new Promise((resolve) => {{
    const done = () => out.length >= samples;
    if (mjpeg) {{
      const timer = setInterval(() => {{
        sample(performance.now());
        if (done()) {{ clearInterval(timer); resolve(out); }}
      }}, 5);
    }} else {{
      const step = (now) => {{
        sample(now);
        if (done()) resolve(out); else image.requestVideoFrameCallback(step);
      }};
      image.requestVideoFrameCallback(step);
    }}
  }});
}}"""


def latency(samples: int) -> dict[str, list[float]]:
    """Glass-to-glass milliseconds per view of a stamped live test pattern."""
    from playwright.sync_api import sync_playwright

    # the clock goes into the frame right before the sink, as late as possible
    graph = Graph([
        NodeSpec("cams", SourceGroup(["cam=synthetic:640x480@30"], keep_open=True)),
        NodeSpec("stamp", StampTime(), ["cams"]),
        NodeSpec("web", WebSink(), ["stamp"]),
    ])  # fmt: skip
    server = ApiServer(create_app(graph), "127.0.0.1", free_port())
    server.start()
    runner = threading.Thread(target=graph.run)
    runner.start()
    found = {}
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                                 args=ARGS)  # fmt: skip
            for view, query, selector in (("WebRTC", "", "#tile-cam video"),
                                          ("MJPEG", "?view=mjpeg", "#tile-cam img")):  # fmt: skip
                page = browser.new_page()
                page.goto(f"{server.url}/{query}")
                page.wait_for_selector(selector, timeout=15000)
                page.wait_for_timeout(3000)  # connected and settled
                found[view] = page.evaluate(COLLECT, [selector, samples, view == "MJPEG"])
                page.close()
            browser.close()
    finally:
        graph.stop()
        runner.join(20)
        server.stop()
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pipeline_fps(viewers: int, frames: int, folder: Path, pin: bool) -> tuple[float, float]:
    """The faces job's frames/s over ``frames`` frames with ``viewers`` WebRTC pages open,
    and the CPU milliseconds its process spent per frame (the browser's own not counted).
    ``pin``: the job runs on CPU 0 only, the browser (and this process) on the others."""
    from playwright.sync_api import sync_playwright

    every_cpu = os.sched_getaffinity(0)
    job_cpus = {min(every_cpu)} if pin else every_cpu
    port = free_port()
    metrics = folder / f"metrics{viewers}.json"
    job = subprocess.Popen([
        sys.executable, str(ROOT / "run.py"), str(ROOT / "configs" / "faces.yaml"),
        "--source", f"cam={ROOT / 'media' / 'faces.mp4'}", "--loop",
        "--max-frames", str(frames), "--output", str(folder / "{source}.mp4"),
        "--set", f"events.path={folder / 'events.jsonl'}",
        "--serve", f"rtsp://127.0.0.1:{free_port()}/{{source}}",
        "--api", f"127.0.0.1:{port}", "--metrics-json", str(metrics), "--no-progress",
    ], stderr=subprocess.DEVNULL, preexec_fn=lambda: os.sched_setaffinity(0, job_cpus))  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    if pin:  # the browser's processes inherit this process's CPUs
        os.sched_setaffinity(0, every_cpu - job_cpus)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                                 args=ARGS)  # fmt: skip
            for _ in range(300):
                try:
                    with urllib.request.urlopen(f"{url}/healthz"):
                        break
                except OSError:
                    time.sleep(0.1)
            pages = [browser.new_page() for _ in range(viewers)]
            for page in pages:
                page.goto(url)
            while job.poll() is None:  # a service runs on once its input ended
                with urllib.request.urlopen(f"{url}/api/streams") as answer:
                    if all(s["state"] == "ended" for s in json.load(answer)):
                        cpu = cpu_seconds(job.pid)
                        break
                if pages:
                    pages[0].wait_for_timeout(200)
                else:
                    time.sleep(0.2)
            browser.close()
    finally:
        os.sched_setaffinity(0, every_cpu)
        if job.poll() is None:
            job.send_signal(signal.SIGINT)
        job.wait(120)
    # the camera's own rate out of the graph, first frame to last (not the idle time after)
    return json.loads(metrics.read_text())["sources"]["cam"]["fps"], cpu * 1e3 / frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200, help="latency samples per view")
    parser.add_argument("--frames", type=int, default=750, help="frames per viewers run")
    args = parser.parse_args()
    print("glass-to-glass latency on loopback, 640x480 at 30 fps (ms):")
    for view, values in latency(args.samples).items():
        cuts = statistics.quantiles(values, n=20)
        print(f"  {view:<7} p50 {statistics.median(values):6.1f}  p95 {cuts[18]:6.1f}  "
              f"({len(values)} frames)")  # fmt: skip
    print(f"\nfaces job, {args.frames} frames of the bundled clip (looped), WebRTC viewers:")
    pinned = [False, True] if len(os.sched_getaffinity(0)) > 1 else [False]
    with tempfile.TemporaryDirectory() as tmp:
        for pin in pinned:
            print("  pipeline on CPU 0, browser on the others" if pin else "  sharing every CPU")
            base = one = None
            for viewers in (0, 1, 4):
                fps, cpu_ms = pipeline_fps(viewers, args.frames, Path(tmp), pin)
                base = base or fps
                one = fps if viewers == 1 else one
                versus_one = f"  ({fps / one:4.2f}x of 1 viewer)" if viewers == 4 else ""
                print(f"    {viewers} viewers: {fps:6.1f} frames/s  {fps / base:5.2f}x   pipeline "
                      f"process {cpu_ms:5.1f} CPU ms per frame{versus_one}")  # fmt: skip


if __name__ == "__main__":
    main()

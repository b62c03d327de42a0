#!/usr/bin/env python3
"""Does a webhook slow the pipeline? The same graph three ways, side by side in one run.

The graph: the synthetic scene (640 x 360, 1500 frames, as fast as the graph takes them) ->
``motion`` (background subtraction) -> a stage that gives every frame one event (an
``Analytics`` with a ``cross`` event: one event per frame is far more than a real scene
makes, so the outputs' cost shows) -> the output:

- ``no webhook``: the ``discard`` sink (nothing is sent);
- ``fast receiver``: a ``webhook`` to an HTTP server that answers 200 at once;
- ``receiver sleeps 5 s``: a ``webhook`` to an HTTP server that sleeps 5 s per request
  before its 200 (the acceptance case of issue 27);
- ``fast, batches <= 50``: as ``fast receiver``, with up to 50 events per request, a
  request waiting up to 0.1 s for them (``batch: 50``, ``batch_wait: 0.1``).

Both receivers run in a process of their own (as a real receiver would be elsewhere), on
127.0.0.1. Runs alternate (none, fast, slow, none, ...) ``--repeats`` times; each way's
frames/s is the median of its runs, frames out over the graph's run time (first frame to
the last sink's end of stream; the webhook's close, which goes on delivering for at most
``drain`` = 2 s, is shown apart as ``close s``). Ratios are to ``no webhook``.

    python bench/webhook.py [--frames 1500] [--repeats 3]
"""

from __future__ import annotations

import argparse
import datetime
import logging
import multiprocessing
import os
import platform
import statistics
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import stages  # noqa: E402, F401  (registers the stage kinds)
from pipeline.frame import Frame  # noqa: E402
from pipeline.graph import Graph, NodeSpec  # noqa: E402
from pipeline.results import Analytics, Event  # noqa: E402
from pipeline.stage import Sink, Stage  # noqa: E402
from stages.motion import MotionDetector  # noqa: E402
from stages.sinks.discard import DiscardSink  # noqa: E402
from stages.sinks.events.webhook import WebhookSink  # noqa: E402
from stages.sources.synthetic import SyntheticSource  # noqa: E402

BATCHED = "fast, batches <= 50"
WAYS = ("no webhook", "fast receiver", "receiver sleeps 5 s", BATCHED)
SLEEP = {"fast receiver": 0.0, "receiver sleeps 5 s": 5.0, BATCHED: 0.0}
OPTIONS: dict[str, dict[str, Any]] = {BATCHED: {"batch": 50, "batch_wait": 0.1}}


class EventPerFrame(Stage):
    """Gives every frame an ``Analytics`` with one ``cross`` event (track = frame index)."""

    produces = (Analytics,)

    def process(self, frame: Frame) -> Frame | None:
        event = Event("cross", frame.source_id, frame.time, time.time(), frame.index,
                      frame.index, "person", "door", direction="in")  # fmt: skip
        frame.results[self.name] = Analytics([event])
        return frame


def receive(sleep: float, ports: Any, requests: Any) -> None:
    """An HTTP receiver (run in a child process): answers each POST with 200 after ``sleep``
    seconds, counting requests; puts its port on ``ports``."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keeps the connection open, as real receivers do

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            with requests.get_lock():
                requests.value += 1
            if sleep:
                time.sleep(sleep)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    ports.put(server.server_address[1])
    server.serve_forever()


def run_once(way: str, frames: int, url: str | None) -> dict[str, Any]:
    """One run of the graph; its frames/s, close time and the sink's counts."""
    sink: Sink = DiscardSink() if url is None else WebhookSink(url, **OPTIONS.get(way, {}))
    specs = [
        NodeSpec("source", SyntheticSource(width=640, height=360, frames=frames, seed=1)),
        NodeSpec("motion", MotionDetector(), ["source"]),
        NodeSpec("events", EventPerFrame(), ["motion"]),
        NodeSpec("out", sink, ["events"]),
    ]
    graph = Graph(specs)
    started = time.perf_counter()
    report = graph.run()
    wall = time.perf_counter() - started
    if report.error is not None:
        raise SystemExit(f"{way}: {report.error}")
    metrics = report.metrics
    run_s = metrics.elapsed
    return {
        "frames": metrics.frames_out,
        "fps": metrics.frames_out / run_s,
        "close_s": wall - run_s,
        **sink.status(),
    }


def machine() -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    today = datetime.date.today().isoformat()
    load = "/".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}, {today}, "
            f"load average {load} (1/5/15 min) at the end")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=1500, help="frames per run")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each way")
    args = parser.parse_args(argv)
    # The outputs' end-of-run lines (a warning when events were lost) would interleave with
    # the table; their counts are in it.
    logging.getLogger("framegraph").setLevel(logging.ERROR)

    context = multiprocessing.get_context("spawn")  # no copy of this process's threads
    receivers, urls, counters = [], {}, {}
    for way, sleep in SLEEP.items():
        ports, counters[way] = context.Queue(), context.Value("i", 0)
        process = context.Process(target=receive, args=(sleep, ports, counters[way]), daemon=True)
        process.start()
        receivers.append(process)
        urls[way] = f"http://127.0.0.1:{ports.get(timeout=30)}/events"
    try:
        run_once("warm-up", 60, None)  # imports, OpenCV's first calls
        runs: dict[str, list[dict[str, Any]]] = {way: [] for way in WAYS}
        for _ in range(args.repeats):
            for way in WAYS:
                runs[way].append(run_once(way, args.frames, urls.get(way)))
    finally:
        for process in receivers:
            process.terminate()
            process.join(5)

    print(f"machine: {machine()}")
    print(f"graph: synthetic 640x360 -> motion -> 1 event per frame -> output; "
          f"{args.frames} frames, median of {args.repeats} runs")  # fmt: skip
    header = (f"{'output':<22}{'frames/s':>9}{'ratio':>7}{'close s':>9}{'sent':>7}"
              f"{'dropped':>9}{'abandoned':>11}{'requests':>10}")  # fmt: skip
    print(header)
    print("-" * len(header))
    base = statistics.median(r["fps"] for r in runs[WAYS[0]])
    for way in WAYS:
        fps = statistics.median(r["fps"] for r in runs[way])
        close = statistics.median(r["close_s"] for r in runs[way])
        counts = [sum(r.get(k, 0) for r in runs[way]) // args.repeats
                  for k in ("sent", "dropped", "abandoned")]  # fmt: skip
        requests = counters[way].value // args.repeats if way in counters else 0
        sent, dropped, abandoned = (f"{c}" if way in SLEEP else "-" for c in counts)
        print(f"{way:<22}{fps:>9.1f}{fps / base:>7.2f}{close:>9.2f}{sent:>7}{dropped:>9}"
              f"{abandoned:>11}{requests if way in SLEEP else '-':>10}")  # fmt: skip
    print("(sent, dropped, abandoned, requests: per run, the mean over the runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

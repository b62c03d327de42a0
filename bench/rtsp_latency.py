#!/usr/bin/env python3
"""Latency the RTSP output adds: from just before the encoder to a decoded picture
in a real client (PyAV / FFmpeg's RTSP client, in another process).

A stage right before the ``rtsp_server`` sink paints the current time (µs, 40
bits) into each frame as 16x16 black/white blocks; the client decodes, reads the
blocks back and subtracts. Same host, same clock. Prints p50/p95/max per
transport at 640x480, 30 fps.

    python bench/rtsp_latency.py [--frames 300] [--transport tcp udp]
"""

from __future__ import annotations

import argparse
import multiprocessing
import socket
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.frame import Frame  # noqa: E402
from pipeline.graph import Graph, NodeSpec  # noqa: E402
from pipeline.stage import Stage  # noqa: E402
from stages.sinks.rtsp_server import RtspServerSink  # noqa: E402
from stages.sources.synthetic import SyntheticSource  # noqa: E402

BITS, BLOCK = 40, 16


def paint_time(image: np.ndarray, micros: int) -> None:
    """Write ``micros`` into the top-right corner as BITS blocks of BLOCK px."""
    x0 = image.shape[1] - BITS * BLOCK // 2
    for bit in range(BITS):
        row, col = divmod(bit, BITS // 2)
        value = 255 if (micros >> bit) & 1 else 0
        y, x = row * BLOCK, x0 + col * BLOCK
        image[y : y + BLOCK, x : x + BLOCK] = value


def read_time(image: np.ndarray) -> int:
    x0 = image.shape[1] - BITS * BLOCK // 2
    micros = 0
    for bit in range(BITS):
        row, col = divmod(bit, BITS // 2)
        y, x = row * BLOCK + 4, x0 + col * BLOCK + 4
        if image[y : y + BLOCK - 8, x : x + BLOCK - 8].mean() > 127:
            micros |= 1 << bit
    return micros


class StampTime(Stage):
    """Paints the wall clock into a copy of the frame, as late as possible."""

    def process(self, frame: Frame) -> Frame:
        image = frame.image.copy()
        paint_time(image, int(time.time() * 1e6) % (1 << BITS))
        frame.image = image
        return frame


def client(url: str, transport: str, frames: int, queue: multiprocessing.Queue) -> None:
    import av

    options = {"rtsp_transport": transport, "fflags": "nobuffer", "flags": "low_delay",
               "max_delay": "0"}  # fmt: skip
    latencies = []
    with av.open(url, options=options, timeout=10) as container:
        for decoded in container.decode(video=0):
            image = decoded.to_ndarray(format="gray")
            now = int(time.time() * 1e6) % (1 << BITS)
            latencies.append((now - read_time(image)) % (1 << BITS) / 1e3)
            if len(latencies) >= frames:
                break
    queue.put(latencies)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--transport", nargs="+", default=["tcp", "udp"])
    args = parser.parse_args()
    url = f"rtsp://127.0.0.1:{free_port()}/latency"
    source = SyntheticSource(width=640, height=480, fps=30, frames=None, live=True)
    sink = RtspServerSink(url, fps=30)
    graph = Graph(
        [
            NodeSpec("camera", source),
            NodeSpec("stamp", StampTime(), ["camera"]),
            NodeSpec("rtsp", sink, ["stamp"]),
        ]
    )
    runner = threading.Thread(target=graph.run, daemon=True)
    runner.start()
    time.sleep(1.0)
    context = multiprocessing.get_context("spawn")
    print(f"640x480 @ 30 fps, libx264 ultrafast zerolatency, {args.frames} frames per client")
    print(f"{'transport':<10}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}")
    for transport in args.transport:
        queue = context.Queue()
        proc = context.Process(target=client, args=(url, transport, args.frames + 30, queue))
        proc.start()
        latencies = np.array(queue.get(timeout=120)[30:])  # skip the start-up burst
        proc.join()
        p50, p95 = np.percentile(latencies, [50, 95])
        print(f"{transport:<10}{p50:9.1f}{p95:9.1f}{latencies.max():9.1f}")
    graph.stop()
    runner.join()


if __name__ == "__main__":
    main()

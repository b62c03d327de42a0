"""A camera that records until it is killed, for tests/stages/test_crash_safe_video.py.

    python tests/stages/crash_safe_writer.py OUT.mp4 [--fps 25] [--frames N]

A live synthetic source (paced at ``--fps``, 320x240, the frame counter burned in) written by
a crash-safe ``video_file`` sink. After every frame it prints one JSON line: the file being
written and the sink's counters (``written``: frames handed to the sink, ``muxed``: frames
out of the encoder, ``flushed``: frames in complete fragments), so the test knows what the
process had written when it was killed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from stages.sinks.video_file import VideoFileSink
from stages.sources.synthetic import SyntheticSource


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("path")
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument("--frames", type=int, default=None, help="stop after N (default: never)")
    args = parser.parse_args()
    source = SyntheticSource(width=320, height=240, fps=args.fps, frames=args.frames, live=True)
    sink = VideoFileSink(args.path, fragmented=True)
    sink.open()
    try:
        for frame in source.frames():
            sink.write(frame)
            report = {"file": str(sink.current), "written": sink.frames_written,
                      "muxed": sink.frames_muxed, "flushed": sink.frames_flushed}  # fmt: skip
            print(json.dumps(report), flush=True)
    finally:
        sink.close()


if __name__ == "__main__":
    main()

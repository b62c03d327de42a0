#!/usr/bin/env python3
"""Write a synthetic annotated video data set (train / val splits) to disk.

Each sequence gets its own folder (see synthetic/io.py for the layout): an H.264 video, COCO
instance annotations with track ids, COCO panoptic PNGs and DensePose IUV PNGs. Sequence ``i``
of a split is generated from a seed derived from (--seed, split, i), stored in its
annotations, so any sequence can be regenerated exactly.

    python tools/make_dataset.py                          # out/synthetic: 8 train + 2 val x 100
    python tools/make_dataset.py --train 40 --val 10 --frames 200 --size 320x320 --seed 7
"""

from __future__ import annotations

import argparse
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.frame import Frame  # noqa: E402
from stages.sinks.video_file import VideoFileSink  # noqa: E402
from synthetic.generator import generate  # noqa: E402
from synthetic.io import VIDEO, SequenceWriter  # noqa: E402

SPLITS = ("train", "val")


def sequence_seed(seed: int, split: str, index: int) -> int:
    """The generator seed of sequence ``index`` of ``split``: independent streams per split."""
    return int(np.random.SeedSequence([seed, SPLITS.index(split), index]).generate_state(1)[0])


def write_sequence(
    directory: Path,
    seed: int,
    frames: int,
    size: tuple[int, int],
    fps: float,
    progress: tqdm,
    images: bool = False,
) -> int:
    """Generates one sequence into ``directory``; returns the number of frames written."""
    width, height = size
    info = {"seed": seed, "frames": frames, "width": width, "height": height, "fps": fps}
    writer = SequenceWriter(directory, info, images=images)
    video = VideoFileSink(str(directory / VIDEO), crf=18, fps=fps, threads=1)
    video.open()
    time_base = Fraction(1, 90000)
    step = round(90000 / fps)
    try:
        for frame in generate(seed, frames, width, height):
            writer.add(frame)
            video.write(Frame(frame.image, frame.index * step, time_base, frame.index, "synth"))
            progress.update()
    finally:
        video.close()
    writer.close()
    return frames


def parse_size(text: str) -> tuple[int, int]:
    """``"320x240"`` -> (320, 240)."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be WIDTHxHEIGHT, got {text!r}") from None
    if width < 32 or height < 32 or width % 2 or height % 2:
        raise argparse.ArgumentTypeError("width and height must be even and at least 32")
    return width, height


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "synthetic")
    parser.add_argument("--train", type=int, default=8, help="training sequences")
    parser.add_argument("--val", type=int, default=2, help="validation sequences")
    parser.add_argument("--frames", type=int, default=100, help="frames per sequence")
    parser.add_argument("--size", type=parse_size, default=(320, 320), help="WIDTHxHEIGHT")
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--png-frames", action="store_true", help="also store the frames losslessly as PNG"
    )
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.frames < 1 or args.train < 0 or args.val < 0:
        parser.error("--frames must be >= 1, --train and --val >= 0")

    counts = {"train": args.train, "val": args.val}
    jobs = [(split, i) for split in SPLITS for i in range(counts[split])]
    total = len(jobs) * args.frames
    start = time.perf_counter()
    with tqdm(total=total, unit="frame", disable=args.no_progress) as progress:
        for split, i in jobs:
            directory = args.out / split / f"{i:04d}"
            progress.set_description(f"{split}/{i:04d}")
            write_sequence(
                directory, sequence_seed(args.seed, split, i), args.frames, args.size, args.fps,
                progress, args.png_frames,
            )  # fmt: skip
    seconds = time.perf_counter() - start
    size = sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file())
    width, height = args.size
    print(
        f"{total} frames ({args.train} train + {args.val} val sequences x {args.frames}) at "
        f"{width}x{height} in {seconds:.1f} s = {total / seconds:.1f} frames/s; "
        f"{size / 2**20:.1f} MiB in {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

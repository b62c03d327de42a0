#!/usr/bin/env python3
"""Make the bundled face clip from real photos that ship inside scikit-image.

Two public-domain / CC0 photos, the astronaut (NASA, public domain) and the
cameraman (CC0), cropped to head and shoulders, move and zoom over a coffee-cup
photo (CC0) background. Because every frame is composed here, where each face is
in every frame is known exactly: the face boxes measured once on the stills
(RetinaFace on the full-resolution photos, checked by eye) are carried through
the same scale and offset as the pixels. They are written next to the clip as
ground truth.

    python tools/make_face_clip.py            # media/faces.mp4 + media/faces_truth.json
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Actor:
    """A photo crop that moves through the clip, and where its face is in the crop."""

    name: str
    crop: tuple[int, int, int, int]  # x0, y0, x1, y1 in the photo
    face: tuple[int, int, int, int]  # face box in photo pixels (RetinaFace on the still)

    def image(self) -> np.ndarray:
        import skimage.data

        photo = getattr(skimage.data, self.name)()
        if photo.ndim == 2:
            photo = np.dstack([photo] * 3)
        x0, y0, x1, y1 = self.crop
        return np.ascontiguousarray(photo[y0:y1, x0:x1, ::-1])  # RGB -> BGR

    def face_in_crop(self) -> np.ndarray:
        x0, y0 = self.crop[:2]
        return np.array(self.face, np.float32) - [x0, y0, x0, y0]


ASTRONAUT = Actor("astronaut", (110, 0, 350, 240), (177, 57, 272, 176))
CAMERAMAN = Actor("camera", (140, 60, 320, 240), (195, 113, 255, 194))


def compose(width: int = 640, height: int = 480, frames: int = 250):
    """Yield (BGR frame uint8 [H, W, 3], face boxes float32 [2, 4] xyxy) per frame."""
    import skimage.data

    background = cv2.resize(skimage.data.coffee()[:, :, ::-1], (width, height))
    background = cv2.GaussianBlur(background, (0, 0), 3)
    astronaut, cameraman = ASTRONAUT.image(), CAMERAMAN.image()
    sx, sy = width / 640, height / 480
    for i in range(frames):
        t = i / max(frames - 1, 1)
        image = background.copy()
        boxes = []
        placements = [
            # actor, its pixels, scale, top-left corner: the cameraman walks left,
            # the astronaut walks right while the camera zooms in on her.
            (CAMERAMAN, cameraman, 1.2 * sx, (400 - 340 * t) * sx, 250 * sy),
            (ASTRONAUT, astronaut, (0.8 + 0.3 * t) * sx, (20 + 320 * t) * sx,
             (20 + 15 * np.sin(6.28 * t)) * sy),
        ]  # fmt: skip
        for actor, pixels, scale, left, top in placements:
            h, w = pixels.shape[:2]
            size = (round(w * scale), round(h * scale))
            x, y = round(left), round(top)
            scaled = cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)
            visible = scaled[: height - y, : width - x]
            image[y : y + visible.shape[0], x : x + visible.shape[1]] = visible
            face = actor.face_in_crop() * np.array([size[0] / w, size[1] / h] * 2) + [x, y, x, y]
            boxes.append(face)
        yield image, np.array(boxes, np.float32)


def write_clip(
    video: Path, truth: Path | None, width: int, height: int, frames: int, fps: int = 25
) -> None:
    """Encode the composed frames as H.264 mp4 and the face boxes as JSON."""
    video.parent.mkdir(parents=True, exist_ok=True)
    boxes_per_frame = []
    with av.open(str(video), "w", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = Fraction(1, fps)
        stream.options = {"crf": "20", "preset": "veryfast"}
        for i, (image, boxes) in enumerate(compose(width, height, frames)):
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            frame.pts = i
            container.mux(stream.encode(frame))
            boxes_per_frame.append(np.round(boxes, 1).tolist())
        container.mux(stream.encode(None))
    if truth is not None:
        truth.write_text(json.dumps({"fps": fps, "faces": boxes_per_frame}) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=ROOT / "media" / "faces.mp4")
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--frames", type=int, default=250)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    truth = args.output.with_name(args.output.stem + "_truth.json")
    write_clip(args.output, truth, width, height, args.frames)
    print(f"wrote {args.output} and {truth}", file=sys.stderr)


if __name__ == "__main__":
    main()

"""A sequence on disk: id-coded panoptic PNGs, IUV PNGs and one COCO-style JSON.

Layout of a sequence folder::

    video.mp4            the frames (written by the caller, e.g. tools/make_dataset.py)
    annotations.json     info (generator arguments), categories, images, COCO instance
                         annotations with track ids, COCO panoptic segments_info per frame
    panoptic/000000.png  COCO panoptic PNG (id = R + 256 G + 256² B)
    iuv/000000.png       DensePose IUV, channels (I, U*255, V*255) in OpenCV's channel order
                         (cv2.imread gives I in channel 0)
    images/000000.png    optional: the rendered frames, losslessly

PNGs are lossless, so annotations (and frames, when ``images/`` was written) read back are
identical to the generated ones. The video is H.264: frames decoded from it are close to, not
equal to, the rendered ones, and the file itself is not byte-stable across runs (libx264's
output here varies from process to process even with one thread and identical input).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np

from synthetic.annotations import (
    coco_categories,
    coco_instances,
    decode_panoptic,
    encode_panoptic,
    panoptic_record,
)
from synthetic.categories import split_segment_id
from synthetic.generator import Segment, SyntheticFrame

ANNOTATIONS = "annotations.json"
VIDEO = "video.mp4"


class SequenceWriter:
    """Writes the ground truth of one sequence, frame by frame.

    Args:
        directory: the sequence folder (created).
        info: what made the sequence (e.g. the generator's arguments), stored as ``info``.
        images: also store the rendered frames as PNG (exact, but about 10x the video's size).
    """

    def __init__(self, directory: str | Path, info: dict[str, Any], images: bool = False) -> None:
        self.directory = Path(directory)
        self.folders = ["panoptic", "iuv"] + (["images"] if images else [])
        for folder in self.folders:
            (self.directory / folder).mkdir(parents=True, exist_ok=True)
        self.info = info
        self.images: list[dict[str, Any]] = []
        self.annotations: list[dict[str, Any]] = []
        self.panoptic: list[dict[str, Any]] = []

    def add(self, frame: SyntheticFrame) -> None:
        """Writes one frame's PNGs and collects its records."""
        name = f"{frame.index:06d}.png"
        image_id = len(self.images) + 1
        height, width = frame.panoptic.shape
        self.images.append(
            {"id": image_id, "frame_index": frame.index, "width": width, "height": height}
        )
        self.annotations += coco_instances(frame, image_id, len(self.annotations) + 1)
        self.panoptic.append(panoptic_record(frame, image_id, f"panoptic/{name}"))
        _imwrite(self.directory / "panoptic" / name, encode_panoptic(frame.panoptic)[..., ::-1])
        _imwrite(self.directory / "iuv" / name, frame.iuv)
        if "images" in self.folders:
            _imwrite(self.directory / "images" / name, frame.image)

    def close(self) -> None:
        """Writes annotations.json."""
        document = {
            "info": self.info,
            "categories": coco_categories(),
            "images": self.images,
            "annotations": self.annotations,
            "panoptic": self.panoptic,
        }
        (self.directory / ANNOTATIONS).write_text(json.dumps(document, separators=(",", ":")))


def _imwrite(path: Path, image: np.ndarray) -> None:
    if not cv2.imwrite(str(path), image):
        raise OSError(f"cannot write {path}")


def load_annotations(directory: str | Path) -> dict[str, Any]:
    """The parsed annotations.json of a sequence folder."""
    return json.loads((Path(directory) / ANNOTATIONS).read_text())


def read_sequence(directory: str | Path) -> Iterator[SyntheticFrame]:
    """Reads a sequence folder back, frame by frame.

    Args:
        directory: a folder written by :class:`SequenceWriter` plus its ``video.mp4``.

    Yields:
        :class:`SyntheticFrame` with the exact panoptic, segments and IUV ground truth; its
        ``image`` is the stored PNG frame when there is one, else the decoded video frame.

    Raises:
        FileNotFoundError: annotations, video or a PNG is missing.
        ValueError: the video has fewer frames than the annotations.
    """
    directory = Path(directory)
    document = load_annotations(directory)
    records = {r["image_id"]: r for r in document["panoptic"]}
    isthing = {c["id"]: bool(c["isthing"]) for c in document["categories"]}
    stored = (directory / "images").is_dir()
    with contextlib.ExitStack() as stack:
        decoded: Iterator[av.VideoFrame] = iter(())
        if not stored:
            decoded = stack.enter_context(av.open(str(directory / VIDEO))).decode(video=0)
        for image in document["images"]:
            record = records[image["id"]]
            name = Path(record["file_name"]).name
            if stored:
                picture = _imread(directory / "images" / name)
            else:
                try:
                    picture = next(decoded).to_ndarray(format="bgr24")
                except StopIteration:
                    raise ValueError(
                        f"{directory / VIDEO} ends before frame {image['frame_index']}"
                    ) from None
            segments = {}
            for info in record["segments_info"]:
                _, track = split_segment_id(info["id"])
                segments[info["id"]] = Segment(
                    id=info["id"],
                    category_id=info["category_id"],
                    isthing=isthing[info["category_id"]],
                    track_id=track if isthing[info["category_id"]] else None,
                    area=info["area"],
                    bbox=tuple(info["bbox"]),  # type: ignore[arg-type]
                )
            yield SyntheticFrame(
                index=image["frame_index"],
                image=picture,
                panoptic=decode_panoptic(_imread(directory / record["file_name"])[..., ::-1]),
                segments=segments,
                iuv=_imread(directory / "iuv" / name),
            )


def _imread(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise FileNotFoundError(f"cannot read {path}")
    return image

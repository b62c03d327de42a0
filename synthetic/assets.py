"""Textures and sprites cut from the images bundled with scikit-image.

All images used here ship inside the scikit-image wheel and are CC0 or public domain (see
scikit-image's ``skimage/data/README.txt``): astronaut (NASA), brick, grass, gravel (CC0),
chelsea (CC0), coins (public domain), colorwheel, horse (CC0 silhouette), page, hubble deep
field (NASA). Nothing is downloaded. Everything is cached per process.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import cv2
import numpy as np

SPRITE_SIDE = 160
"""Longest side of a sprite in pixels; scenes scale sprites down (rarely up) from this."""


@dataclass(frozen=True)
class Sprite:
    """A cut-out object.

    Attributes:
        image: uint8 [h, w, 3] BGR appearance.
        mask: bool [h, w], True on the object.
    """

    image: np.ndarray
    mask: np.ndarray


def _skimage(name: str) -> np.ndarray:
    import skimage.data

    return getattr(skimage.data, name)()


def _bgr(rgb: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(rgb[..., ::-1])


def _fit(image: np.ndarray, mask: np.ndarray) -> Sprite:
    """Crops to the mask's bounding box and scales the longest side to SPRITE_SIDE."""
    ys, xs = np.nonzero(mask)
    image = image[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    mask = mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    scale = SPRITE_SIDE / max(mask.shape)
    size = (max(1, round(mask.shape[1] * scale)), max(1, round(mask.shape[0] * scale)))
    image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    mask = cv2.resize(mask.astype(np.uint8) * 255, size, interpolation=cv2.INTER_AREA) >= 128
    return Sprite(np.ascontiguousarray(image), mask)


@cache
def gray_texture(name: str) -> np.ndarray:
    """A tileable-enough grayscale texture in [0, 1], float32 [512, 512].

    Args:
        name: "brick", "grass" or "gravel".
    """
    if name not in ("brick", "grass", "gravel"):
        raise ValueError(f"unknown texture {name!r}")
    return _skimage(name).astype(np.float32) / 255.0


@cache
def night_sky() -> np.ndarray:
    """The Hubble deep field, uint8 [872, 1000, 3] BGR."""
    return _bgr(_skimage("hubble_deep_field"))


@cache
def clothing_textures() -> tuple[np.ndarray, ...]:
    """Patches of real photos used as fabric, each uint8 [64, 64, 3] BGR."""
    astronaut = _bgr(_skimage("astronaut"))
    chelsea = _bgr(_skimage("chelsea"))
    coffee = _bgr(_skimage("coffee"))
    stain = _bgr(_skimage("immunohistochemistry"))
    patches = (
        astronaut[330:500, 60:200],  # orange suit
        astronaut[0:300, 0:90],  # flag stripes
        astronaut[380:512, 380:512],  # black helmet
        chelsea[0:120, 0:140],  # tabby fur
        coffee[0:150, 0:250],  # red background
        coffee[250:400, 350:600],  # saucer and beans
        stain[0:256, 0:256],  # brown and blue
        stain[256:512, 256:512],
    )
    return tuple(cv2.resize(p, (64, 64), interpolation=cv2.INTER_AREA) for p in patches)


def _ellipse_mask(h: int, w: int) -> np.ndarray:
    mask = np.zeros((h, w), np.uint8)
    cv2.ellipse(mask, (w // 2, h // 2), (w // 2 - 1, h // 2 - 1), 0, 0, 360, 1, -1)
    return mask.astype(bool)


def _star_mask(side: int, points: int = 5, inner: float = 0.45) -> np.ndarray:
    angles = np.arange(2 * points) * np.pi / points - np.pi / 2
    radii = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner) * (side / 2 - 1)
    polygon = np.stack([side / 2 + radii * np.cos(angles), side / 2 + radii * np.sin(angles)], 1)
    mask = np.zeros((side, side), np.uint8)
    cv2.fillPoly(mask, [np.round(polygon).astype(np.int32)], 1)
    return mask.astype(bool)


@cache
def sprites(category: str) -> tuple[Sprite, ...]:
    """The cut-outs of one thing class (one or more variants).

    Args:
        category: "horse", "coin", "ball", "sign", "cat" or "star".
    """
    if category == "horse":
        silhouette = ~_skimage("horse")  # the image is True on the background
        fur = cv2.resize(_bgr(_skimage("chelsea"))[0:120, 0:140], silhouette.shape[::-1])
        return (_fit(fur, silhouette), _fit(fur[:, ::-1], silhouette[:, ::-1]))
    if category == "coin":
        from skimage.filters import threshold_otsu
        from skimage.measure import label, regionprops

        coins = _skimage("coins")
        blobs = label(coins > threshold_otsu(coins))
        cut = []
        for region in regionprops(blobs):
            if not 1500 < region.area < 6000 or region.eccentricity > 0.6:
                continue  # merged or broken blobs are not one coin
            y0, x0, y1, x1 = region.bbox
            mask = cv2.morphologyEx(
                (blobs[y0:y1, x0:x1] == region.label).astype(np.uint8),
                cv2.MORPH_CLOSE,
                np.ones((5, 5), np.uint8),
            ).astype(bool)
            cut.append(_fit(cv2.cvtColor(coins[y0:y1, x0:x1], cv2.COLOR_GRAY2BGR), mask))
        return tuple(cut)
    if category == "ball":
        wheel = _bgr(_skimage("colorwheel"))
        return (_fit(wheel, _ellipse_mask(*wheel.shape[:2])),)
    if category == "sign":
        page = cv2.cvtColor(_skimage("page"), cv2.COLOR_GRAY2BGR)
        page = cv2.copyMakeBorder(page, 8, 8, 8, 8, cv2.BORDER_CONSTANT, value=(40, 40, 40))
        return (_fit(page, np.ones(page.shape[:2], bool)),)
    if category == "cat":
        face = _bgr(_skimage("chelsea"))[20:300, 110:370]
        return (_fit(face, _ellipse_mask(*face.shape[:2])),)
    if category == "star":
        suit = cv2.resize(_bgr(_skimage("astronaut"))[300:512, 40:300], (SPRITE_SIDE,) * 2)
        return (_fit(suit, _star_mask(SPRITE_SIDE)),)
    raise ValueError(f"no sprites for {category!r}")

"""The buffers one frame is painted into, back to front."""

from __future__ import annotations

import numpy as np


class Canvas:
    """Appearance plus exact ground truth of one frame under construction.

    Painting is opaque (no anti-aliasing), so every pixel belongs to exactly one owner and the
    ground truth is exact.

    Attributes:
        image: uint8 [H, W, 3] BGR.
        owner: int32 [H, W]: 0 where stuff shows, else the index (1-based) of the entity that
            painted the pixel last (the topmost one).
        stuff: int32 [H, W] stuff category id of the background under every pixel.
        iuv: uint8 [H, W, 3]: DensePose part index I (0 = none) and U, V scaled to 0..255 where
            a person part is topmost; 0 elsewhere.
    """

    def __init__(self, image: np.ndarray, stuff: np.ndarray) -> None:
        self.image = image
        self.stuff = stuff
        self.owner = np.zeros(stuff.shape, np.int32)
        self.iuv = np.zeros((*stuff.shape, 3), np.uint8)

    @property
    def shape(self) -> tuple[int, int]:
        """``(H, W)``."""
        return self.owner.shape  # type: ignore[return-value]

    def paint(
        self,
        top: int,
        left: int,
        mask: np.ndarray,
        colours: np.ndarray,
        owner: int,
        iuv: np.ndarray | None = None,
    ) -> None:
        """Paints a region over whatever is below.

        Args:
            top: row of the region's first row in the frame (>= 0).
            left: column of the region's first column (>= 0).
            mask: bool [h, w], which pixels of the region are painted; the region must lie
                inside the frame.
            colours: uint8 [h, w, 3] BGR for the region (only masked pixels are used).
            owner: entity index (>= 1) written to ``owner``.
            iuv: uint8 [h, w, 3] IUV of the region (person parts); None clears IUV under the
                painted pixels (the pixel no longer shows a body part).
        """
        h, w = mask.shape
        window = np.s_[top : top + h, left : left + w]
        self.image[window][mask] = colours[mask]
        self.owner[window][mask] = owner
        self.iuv[window][mask] = 0 if iuv is None else iuv[mask]

"""Flow-guided temporal consistency (FlowBlend): less flicker, fresh content where flow fails."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data

from evaluation.temporal import warping_error
from models.translation.consistency import FlowBlend


def panning(count: int, step: int = 2) -> list[np.ndarray]:
    """A real photo (BGR) seen by a camera moving ``step`` px right per frame."""
    photo = np.ascontiguousarray(data.coffee()[::2, ::2, ::-1])
    return [
        np.ascontiguousarray(photo[40:200, 20 + step * t : 220 + step * t]) for t in range(count)
    ]


def flickering(frames: list[np.ndarray], seed: int = 0) -> list[np.ndarray]:
    """A per-frame 'translation' that flickers: a colour change plus noise that differs per
    frame, as independent per-frame generator outputs do."""
    rng = np.random.default_rng(seed)
    out = []
    for frame in frames:
        tint = rng.normal(0, 12, 3)
        noise = rng.normal(0, 10, frame.shape)
        out.append(np.clip(255 - frame.astype(np.float64) + tint + noise, 0, 255).astype(np.uint8))
    return out


def test_flicker_drops_and_the_output_stays_close() -> None:
    frames = panning(12)
    per_frame = flickering(frames)
    blend = FlowBlend(alpha=0.7)
    consistent = [blend(f, p) for f, p in zip(frames, per_frame, strict=True)]
    before, after = warping_error(per_frame, frames), warping_error(consistent, frames)
    assert after < 0.5 * before
    # Fidelity: the consistent video is still the translation (mean abs difference small
    # against the translation's own contrast to the input).
    gap = np.mean(
        [np.abs(c.astype(int) - p).mean() for c, p in zip(consistent, per_frame, strict=True)]
    )
    assert gap < 12
    assert np.array_equal(consistent[0], per_frame[0])  # nothing to carry on the first frame


def test_scene_cut_and_alpha_zero_pass_the_translation_through() -> None:
    frames = panning(2)
    per_frame = flickering(frames)
    blend = FlowBlend(alpha=0.9)
    blend(frames[0], per_frame[0])
    cut = np.ascontiguousarray(np.full_like(frames[1], 255) - frames[1][::-1])  # another scene
    out = blend(cut, per_frame[1])
    # The warp cannot explain the new frame: (almost) all of it is the fresh translation.
    assert np.mean(np.abs(out.astype(int) - per_frame[1]) <= 1) > 0.95
    off = FlowBlend(alpha=0.0)
    assert all(np.array_equal(off(f, p), p) for f, p in zip(frames, per_frame, strict=True))


def test_reset_forgets_the_previous_frame() -> None:
    frames = panning(3)
    per_frame = flickering(frames)
    blend = FlowBlend(alpha=0.7)
    blend(frames[0], per_frame[0])
    assert not np.array_equal(blend(frames[1], per_frame[1]), per_frame[1])
    blend.reset()
    assert np.array_equal(blend(frames[2], per_frame[2]), per_frame[2])


def test_bad_arguments() -> None:
    for kwargs in ({"alpha": 1.0}, {"alpha": -0.1}, {"preset": "best"}, {"flow_scale": 0.0}):
        with pytest.raises(ValueError):
            FlowBlend(**kwargs)
    with pytest.raises(ValueError):
        FlowBlend()(np.zeros((8, 8, 3), np.uint8), np.zeros((4, 4, 3), np.uint8))

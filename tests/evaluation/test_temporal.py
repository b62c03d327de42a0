"""Tests for evaluation.temporal (warping error with exact flows) and the models.flow it uses
(DIS flow, warp, occlusion masks)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.data

from evaluation.temporal import warping_error, warping_errors
from models.flow import backward_flow, occlusion_mask, warp


def texture(h: int, w: int, seed: int = 0, sigma: float = 2.0) -> np.ndarray:
    """Smoothed uniform noise stretched to uint8 [h, w], fixed seed."""
    noise = np.random.default_rng(seed).random((h, w)).astype(np.float32)
    smooth = cv2.GaussianBlur(noise, (0, 0), sigma)
    smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min())
    return np.rint(smooth * 255).astype(np.uint8)


def astronaut_bgr() -> np.ndarray:
    """skimage's astronaut, BGR uint8 [256, 256, 3]."""
    image = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)
    return cv2.resize(image, (256, 256), interpolation=cv2.INTER_AREA)


def shifting_video(
    big: np.ndarray, n: int, dx: int, dy: int, h: int, w: int, o: int = 8
) -> list[np.ndarray]:
    """Crops ``frame_t = big[o + t dy :, o + t dx :]`` of ``h x w``.

    So ``frame_t(p) = frame_{t-1}(p + (dx, dy))``: the exact backward flow is ``(dx, dy)``.
    """
    return [big[o + t * dy : o + t * dy + h, o + t * dx : o + t * dx + w] for t in range(n)]


def constant_flow(h: int, w: int, dx: float, dy: float) -> np.ndarray:
    flow = np.empty((h, w, 2), dtype=np.float32)
    flow[..., 0] = dx
    flow[..., 1] = dy
    return flow


def test_constant_video_has_zero_error() -> None:
    video = [np.full((24, 32, 3), 90, dtype=np.uint8)] * 3
    assert warping_errors(video, inputs=video) == [0.0, 0.0]
    assert warping_error(video, inputs=video) == 0.0


def test_exact_shift_is_zero_inside_the_valid_region() -> None:
    # A colour texture moves by (dx, dy) = (2, 1) px per frame. With the exact flow only the last
    # dy rows and dx columns sample outside the previous frame (replicated border), so masking
    # them leaves no error at all; without the mask the border strip costs something.
    h, w, dx, dy = 40, 48, 2, 1
    big = np.stack([texture(64, 64, seed) for seed in range(3)], axis=2)
    video = shifting_video(big, 4, dx, dy, h, w)
    flows = [constant_flow(h, w, dx, dy)] * 3
    mask = np.ones((h, w), dtype=bool)
    mask[h - dy :, :] = False
    mask[:, w - dx :] = False
    assert warping_error(video, flows=flows, masks=[mask] * 3) == pytest.approx(0.0, abs=1e-10)
    assert warping_error(video, flows=flows) > 1e-3
    np.testing.assert_array_equal(warp(video[0], flows[0])[mask], video[1][mask])


def test_additive_flicker() -> None:
    # +0.1 on every other frame of 3 channels, zero flow: every E_t = 3 * 0.1² = 0.03.
    base = texture(16, 20)[..., None].repeat(3, axis=2).astype(np.float32) / 255 * 0.8
    video = [base + (0.1 if t % 2 else 0.0) for t in range(5)]
    flows = [np.zeros((16, 20, 2), dtype=np.float32)] * 4
    assert warping_errors(video, flows=flows) == pytest.approx([0.03] * 4, rel=1e-5)
    assert warping_error(video, flows=flows) == pytest.approx(0.03, rel=1e-5)


def test_uint8_frames_are_scaled_to_unit_range() -> None:
    # +51 levels = +0.2 on one gray channel: E = 0.2² = 0.04.
    video = [np.full((8, 8), 100, dtype=np.uint8), np.full((8, 8), 151, dtype=np.uint8)]
    flows = [np.zeros((8, 8, 2), dtype=np.float32)]
    assert warping_error(video, flows=flows) == pytest.approx(0.04, rel=1e-6)


def test_mask_excludes_a_region_with_large_error() -> None:
    # A 2x3 block jumps from 0 to 1 in all 3 channels: unmasked E = 6 px * 3 / 80 px = 0.225;
    # masking the block out leaves 0.
    h, w = 8, 10
    first = np.zeros((h, w, 3), dtype=np.float32)
    second = first.copy()
    second[2:4, 5:8] = 1.0
    flows = [np.zeros((h, w, 2), dtype=np.float32)]
    mask = np.ones((h, w), dtype=bool)
    mask[2:4, 5:8] = False
    assert warping_error([first, second], flows=flows) == pytest.approx(0.225)
    assert warping_error([first, second], flows=flows, masks=[mask]) == 0.0
    assert np.isnan(warping_error([first, second], flows=flows, masks=[np.zeros_like(mask)]))


def test_dis_recovers_a_known_shift() -> None:
    # frame(p) = previous(p + (3, 2)): the backward flow is (3, 2) everywhere.
    previous, frame = shifting_video(astronaut_bgr(), 2, 3, 2, 192, 192)
    flow = backward_flow(frame, previous)
    assert flow.shape == (192, 192, 2) and flow.dtype == np.float32
    inner = flow[8:-8, 8:-8].reshape(-1, 2)
    assert np.abs(np.median(inner, axis=0) - [3.0, 2.0]).max() < 0.5
    warped = warp(previous, flow)
    assert warped.dtype == np.uint8
    assert np.abs(warped.astype(int) - frame)[8:-8, 8:-8].mean() < 3  # gray levels
    forward = backward_flow(previous, frame)
    expected = np.array([-3.0, -2.0])
    assert np.abs(np.median(forward[8:-8, 8:-8].reshape(-1, 2), axis=0) - expected).max() < 0.5


def test_flow_at_half_scale_is_in_full_resolution_pixels() -> None:
    previous, frame = shifting_video(astronaut_bgr(), 2, 6, 4, 192, 192)
    flow = backward_flow(frame, previous, scale=0.5)
    assert flow.shape == (192, 192, 2) and flow.dtype == np.float32
    inner = flow[16:-16, 16:-16].reshape(-1, 2)
    assert np.abs(np.median(inner, axis=0) - [6.0, 4.0]).max() < 0.75
    with pytest.raises(ValueError, match="scale"):
        backward_flow(frame, previous, scale=0.0)


def test_warping_error_with_dis_flows_from_the_inputs() -> None:
    # Outputs equal to the moving inputs are nearly consistent; adding +0.1 flicker on every
    # other frame raises the error by about 3 * 0.1² = 0.03.
    video = shifting_video(astronaut_bgr(), 4, 3, 2, 160, 160)
    clean = warping_error(video, inputs=video)
    assert clean < 0.005
    flicker = [f.astype(np.float32) / 255 + (0.1 if t % 2 else 0.0) for t, f in enumerate(video)]
    assert warping_error(flicker, inputs=video) == pytest.approx(clean + 0.03, abs=0.005)


def test_occlusion_mask_exact_flows() -> None:
    # A 10x10 square moves right by 4 px over a static background. Frame t-1: square at columns
    # 10..19; frame t: columns 14..23 (rows 5..14). Backward flow (t -> t-1): -4 on the square of
    # frame t, 0 elsewhere. Forward flow (t-1 -> t): +4 on the square of frame t-1, 0 elsewhere.
    # Columns 10..13 of frame t show background hidden in t-1: there F_b = 0 and F_f = +4, so
    # |F_b + F_f|² = 16 > 0.01 * 16 + 0.5 -> occluded. Everywhere else F_b + F_f(p + F_b) = 0.
    h, w = 20, 30
    fb = np.zeros((h, w, 2), dtype=np.float32)
    fb[5:15, 14:24, 0] = -4
    ff = np.zeros((h, w, 2), dtype=np.float32)
    ff[5:15, 10:20, 0] = 4
    expected = np.ones((h, w), dtype=bool)
    expected[5:15, 10:14] = False
    np.testing.assert_array_equal(occlusion_mask(fb, ff), expected)
    # The motion-boundary test also drops the square's edges (e.g. column 24, valid above).
    with_boundaries = occlusion_mask(fb, ff, motion_boundaries=True)
    assert not with_boundaries[~expected].any()
    assert not with_boundaries[5:15, 24].any() and not with_boundaries[4, 14:24].any()
    assert with_boundaries[:, :8].all()


def test_occlusion_mask_dis_flows() -> None:
    # Same scene with textures and DIS flows: the disoccluded strip is largely flagged, the
    # background far from the square and the square's interior are not.
    bg = texture(96, 128, seed=1)
    square = texture(32, 32, seed=2)
    previous = bg.copy()
    previous[32:64, 40:72] = square
    frame = bg.copy()
    frame[32:64, 48:80] = square
    valid = occlusion_mask(backward_flow(frame, previous), backward_flow(previous, frame))
    assert (~valid[34:62, 41:47]).mean() > 0.3
    assert valid[:, 96:].all() and valid[:24].all()
    assert valid[36:60, 52:76].mean() > 0.95


def test_warp_keeps_shape_and_dtype() -> None:
    image = texture(10, 12)[..., None]
    out = warp(image, constant_flow(10, 12, 0.5, 0.0))
    assert out.shape == (10, 12, 1) and out.dtype == np.uint8
    gray = texture(10, 12).astype(np.float64)
    out = warp(gray, constant_flow(10, 12, 1.0, 0.0))
    np.testing.assert_array_equal(out[:, :-1], gray[:, 1:])
    np.testing.assert_array_equal(out[:, -1], gray[:, -1])  # replicated border


def test_invalid_inputs() -> None:
    frames = [np.zeros((8, 8, 3), dtype=np.uint8)] * 3
    flows = [np.zeros((8, 8, 2), dtype=np.float32)] * 2
    masks = [np.ones((8, 8), dtype=bool)] * 2
    with pytest.raises(ValueError, match="at least 2"):
        warping_error(frames[:1], inputs=frames[:1])
    with pytest.raises(ValueError, match="input frames"):
        warping_error(frames, inputs=frames[:2])
    with pytest.raises(ValueError, match="flows"):
        warping_error(frames, flows=flows[:1])
    with pytest.raises(ValueError, match="masks"):
        warping_error(frames, flows=flows, masks=masks * 2)
    with pytest.raises(ValueError, match="inputs"):
        warping_error(frames)
    with pytest.raises(ValueError, match="shape"):
        warping_error([frames[0], np.zeros((8, 9, 3), dtype=np.uint8)], flows=flows[:1])
    with pytest.raises(ValueError, match=r"\[H, W, 2\]"):
        warping_error(frames, flows=[np.zeros((8, 8, 3), dtype=np.float32)] * 2)
    with pytest.raises(ValueError, match=r"masks\[0\]"):
        warping_error(frames, flows=flows, masks=[np.ones((8, 7), dtype=bool)] * 2)
    with pytest.raises(TypeError, match="uint8 or float"):
        warping_error([np.zeros((8, 8), dtype=np.int32)] * 2, flows=flows[:1])
    with pytest.raises(ValueError, match="previous"):
        backward_flow(frames[0], np.zeros((8, 9), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"\[H, W, 2\]"):
        warp(frames[0], np.zeros((8, 9, 2), dtype=np.float32))
    with pytest.raises(ValueError, match=r"\[H, W, 2\]"):
        occlusion_mask(flows[0], np.zeros((8, 9, 2), dtype=np.float32))

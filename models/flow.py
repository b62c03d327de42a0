"""Dense optical flow (OpenCV's DIS) and backward warping of images by a flow, on the CPU.

Used at run time (DensePose carries results between network runs along the flow, VPSNet can
use it instead of FlowNet2, ``translation.FlowBlend`` blends translated frames along it) and by
the offline warping error (``evaluation.temporal``), so both measure and use the same motion.

Flow conventions (OpenCV's): a flow is float32 ``[H, W, 2]`` holding ``(dx, dy)`` in pixels. The
*backward* flow of frame ``t`` satisfies ``frame_t(p) ≈ frame_{t-1}(p + F_b(p))``; the *forward*
flow satisfies ``frame_{t-1}(q) ≈ frame_t(q + F_f(q))``. DIS is Kroeger et al.'s "Fast Optical
Flow using Dense Inverse Search" (ECCV 2016): no weights, fast enough for video on a CPU.
"""

from __future__ import annotations

import cv2
import numpy as np


def _to_gray_uint8(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(_to_uint8(image), cv2.COLOR_BGR2GRAY)
    if image.ndim != 2:
        raise ValueError(f"image must be [H, W] or [H, W, 3], got shape {image.shape}")
    return _to_uint8(image)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return image
    if np.issubdtype(image.dtype, np.floating):
        return np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)
    raise TypeError(f"images must be uint8 or float in [0, 1], got {image.dtype}")


def backward_flow(
    frame: np.ndarray,
    previous: np.ndarray,
    preset: int = cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
    scale: float = 1.0,
) -> np.ndarray:
    """Dense optical flow from ``frame`` to ``previous`` with OpenCV's DIS, on grayscale.

    Swapping the arguments gives the forward flow (``backward_flow(previous, frame)``).

    Args:
        frame: Frame ``t``: BGR ``[H, W, 3]`` or gray ``[H, W]``, uint8 or float in ``[0, 1]``.
        previous: Frame ``t-1``, same height and width.
        preset: A ``cv2.DISOPTICAL_FLOW_PRESET_*`` constant (speed / accuracy trade-off).
        scale: Compute the flow on images resized by this factor (``(0, 1]``), then resize
            it back and rescale its vectors: several times cheaper on large frames, for
            consumers that need the motion rather than per-pixel detail.

    Returns:
        float32 ``[H, W, 2]`` ``(dx, dy)`` such that ``frame(p) ≈ previous(p + flow(p))``.

    Raises:
        ValueError: If an image is not ``[H, W]`` / ``[H, W, 3]`` or the sizes differ.
        TypeError: If an image is neither uint8 nor float.
    """
    current_gray = _to_gray_uint8(frame)
    previous_gray = _to_gray_uint8(previous)
    if current_gray.shape != previous_gray.shape:
        raise ValueError(f"frame {current_gray.shape} vs previous {previous_gray.shape}")
    if not 0.0 < scale <= 1.0:
        raise ValueError(f"scale must be in (0, 1], got {scale}")
    h, w = current_gray.shape
    small = (max(8, round(w * scale)), max(8, round(h * scale)))
    if scale < 1.0:
        current_gray = cv2.resize(current_gray, small, interpolation=cv2.INTER_AREA)
        previous_gray = cv2.resize(previous_gray, small, interpolation=cv2.INTER_AREA)
    dis = cv2.DISOpticalFlow_create(preset)
    # DIS.calc(I0, I1) returns the flow with I0(p) ≈ I1(p + flow(p)).
    flow = dis.calc(current_gray, previous_gray, None).astype(np.float32, copy=False)
    if scale < 1.0:
        flow = cv2.resize(flow, (w, h), interpolation=cv2.INTER_LINEAR)
        flow[..., 0] *= w / small[0]
        flow[..., 1] *= h / small[1]
    return flow


def check_flow(flow: np.ndarray, shape: tuple[int, ...], what: str) -> np.ndarray:
    """``flow`` as float32 ``[H, W, 2]``, checked against an image's ``shape`` (its first two
    entries are ``H, W``).

    Raises:
        ValueError: If ``flow`` is not ``[H, W, 2]``; the message names it ``what``.
    """
    flow = np.asarray(flow)
    if flow.ndim != 3 or flow.shape[2] != 2 or flow.shape[:2] != tuple(shape[:2]):
        raise ValueError(f"{what} must be [H, W, 2] with H, W = {shape[:2]}, got {flow.shape}")
    return flow.astype(np.float32, copy=False)


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Backward-warps ``image`` by ``flow``: ``out(p) = image(p + flow(p))``.

    Bilinear interpolation (``cv2.remap``, 1/32 pixel sub-pixel precision), replicating the border
    for samples that fall outside the image. With ``flow = backward_flow(frame, previous)``,
    ``warp(previous, flow) ≈ frame``.

    Args:
        image: ``[H, W]`` or ``[H, W, C]``, any dtype ``cv2.remap`` accepts (uint8, float32,
            float64, ...).
        flow: ``[H, W, 2]`` ``(dx, dy)`` in pixels.

    Returns:
        The warped image, with the shape and dtype of ``image``.

    Raises:
        ValueError: If ``flow`` is not ``[H, W, 2]`` with the image's ``H, W``.
    """
    image = np.asarray(image)
    flow = check_flow(flow, image.shape, "flow")
    h, w = image.shape[:2]
    grid_x, grid_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    out = cv2.remap(
        image,
        grid_x + flow[..., 0],
        grid_y + flow[..., 1],
        interpolation=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )
    return out.reshape(image.shape)  # remap drops a trailing channel axis of size 1


def occlusion_mask(
    flow_backward: np.ndarray,
    flow_forward: np.ndarray,
    motion_boundaries: bool = False,
) -> np.ndarray:
    """Valid (non-occluded) pixels of frame ``t`` by forward-backward flow consistency.

    A pixel ``p`` of frame ``t`` lands on ``q = p + F_b(p)`` in frame ``t-1``; if it is visible in
    both frames, the forward flow there leads back, ``F_f(q) ≈ -F_b(p)``. Following Sundaram et al.
    ("Dense point trajectories by GPU-accelerated large displacement optical flow", ECCV 2010),
    as used by Lai et al., ``p`` is valid when

        |F_b(p) + F_f(q)|² < 0.01 (|F_b(p)|² + |F_f(q)|²) + 0.5,

    with ``F_f(q)`` read bilinearly (:func:`warp`). Pixels of frame ``t`` that were hidden in frame
    ``t-1`` fail the test. Pixels whose ``q`` lies outside the image are not flagged by it (the
    flow is read from the replicated border); mask them yourself if that matters.

    Args:
        flow_backward: ``F_b``, float ``[H, W, 2]``, frame ``t`` to frame ``t-1``
            (``backward_flow(frame_t, frame_t_minus_1)``).
        flow_forward: ``F_f``, float ``[H, W, 2]``, frame ``t-1`` to frame ``t``
            (``backward_flow(frame_t_minus_1, frame_t)``).
        motion_boundaries: Also mark as invalid the motion boundaries of ``F_b``, where
            ``|∇u|² + |∇v|² > 0.01 |F_b|² + 0.002`` (Sundaram et al.'s second test, also applied
            by Lai et al.'s released code), whose flow is unreliable.

    Returns:
        bool ``[H, W]``, True where the pixel is valid (not occluded).

    Raises:
        ValueError: If the flows are not ``[H, W, 2]`` of one shape.
    """
    fb = check_flow(flow_backward, np.shape(flow_backward), "flow_backward").astype(np.float64)
    ff = check_flow(flow_forward, fb.shape, "flow_forward")
    ff_at_q = warp(ff, fb.astype(np.float32)).astype(np.float64)
    mismatch = np.sum((fb + ff_at_q) ** 2, axis=2)
    scale = np.sum(fb**2, axis=2) + np.sum(ff_at_q**2, axis=2)
    valid = mismatch < 0.01 * scale + 0.5
    if motion_boundaries:
        du_dy, du_dx = np.gradient(fb[..., 0])
        dv_dy, dv_dx = np.gradient(fb[..., 1])
        gradient = du_dx**2 + du_dy**2 + dv_dx**2 + dv_dy**2
        valid &= gradient <= 0.01 * np.sum(fb**2, axis=2) + 0.002
    return valid

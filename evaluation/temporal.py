"""Temporal warping error of a video: how much a processed (translated, stylised) video flickers.

Following Lai et al., "Learning Blind Video Temporal Consistency", ECCV 2018, the error of an
output video ``O_0 .. O_{T-1}`` is

    E = 1/(T-1) Σ_{t=1..T-1} Σ_p M_t(p) ||O_t(p) - Ô_{t-1}(p)||² / Σ_p M_t(p),

where ``Ô_{t-1} = warp(O_{t-1}, F_t)`` is the previous output frame brought onto frame ``t`` by
the backward flow ``F_t`` (frame ``t`` to frame ``t-1``), ``M_t`` masks out pixels that are
occluded in frame ``t-1``, pixel values are in ``[0, 1]`` and the squared norm is summed over
channels, as in the paper. Flows and masks describe the motion of the scene, so they are computed
on the *input* video (the one the outputs were made from), not on the outputs being judged.

Flow conventions (OpenCV's): a flow is float32 ``[H, W, 2]`` holding ``(dx, dy)`` in pixels. The
*backward* flow of frame ``t`` satisfies ``frame_t(p) ≈ frame_{t-1}(p + F_b(p))``; the *forward*
flow satisfies ``frame_{t-1}(q) ≈ frame_t(q + F_f(q))``. Lai et al. used FlowNet2; this module uses
OpenCV's DIS optical flow (Kroeger et al., ECCV 2016) so that it runs on a CPU, which makes the
absolute values comparable between methods evaluated here but not with published numbers.
"""

from __future__ import annotations

from collections.abc import Sequence

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


def _check_flow(flow: np.ndarray, shape: tuple[int, ...], what: str) -> np.ndarray:
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
    flow = _check_flow(flow, image.shape, "flow")
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
    fb = _check_flow(flow_backward, np.shape(flow_backward), "flow_backward").astype(np.float64)
    ff = _check_flow(flow_forward, fb.shape, "flow_forward")
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


def _unit_float(frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.dtype == np.uint8:
        return frame.astype(np.float32) / 255
    if np.issubdtype(frame.dtype, np.floating):
        return frame.astype(np.float32, copy=False)
    raise TypeError(f"frames must be uint8 or float in [0, 1], got {frame.dtype}")


def warping_errors(
    outputs: Sequence[np.ndarray],
    inputs: Sequence[np.ndarray] | None = None,
    flows: Sequence[np.ndarray] | None = None,
    masks: Sequence[np.ndarray] | None = None,
) -> list[float]:
    """Per-frame warping errors ``E_t``, ``t = 1 .. T-1`` (see :func:`warping_error`).

    Args:
        outputs: ``T >= 2`` frames ``[H, W]`` or ``[H, W, C]`` of one shape; uint8 (scaled by
            1/255) or float already in ``[0, 1]``.
        inputs: The ``T`` input frames the outputs were computed from (BGR ``[H, W, 3]`` or gray
            ``[H, W]``, uint8 or float, same ``H, W``). Needed unless ``flows`` is given.
        flows: ``T-1`` backward flows float ``[H, W, 2]``; ``flows[t-1]`` maps frame ``t`` to
            frame ``t-1``. Default: :func:`backward_flow` on ``inputs``.
        masks: ``T-1`` bool ``[H, W]``, True where frame ``t`` counts. Default: if ``flows`` is
            computed here, :func:`occlusion_mask` of the backward and forward DIS flows of
            ``inputs``; if ``flows`` is given, every pixel.

    Returns:
        ``T-1`` floats: ``Σ_p M_t(p) ||O_t(p) - warp(O_{t-1}, F_t)(p)||² / Σ_p M_t(p)``, the
        squared difference summed over channels; nan for a frame whose mask is empty.

    Raises:
        ValueError: On fewer than 2 frames, lengths or shapes that do not match, or when neither
            ``inputs`` nor ``flows`` is given.
        TypeError: If a frame is neither uint8 nor float.
    """
    n_frames = len(outputs)
    if n_frames < 2:
        raise ValueError(f"the warping error needs at least 2 frames, got {n_frames}")
    shape = np.shape(outputs[0])
    if len(shape) not in (2, 3):
        raise ValueError(f"output frames must be [H, W] or [H, W, C], got shape {shape}")
    for t, frame in enumerate(outputs):
        if np.shape(frame) != shape:
            raise ValueError(f"output frame {t} has shape {np.shape(frame)}, frame 0 {shape}")
    if inputs is not None:
        if len(inputs) != n_frames:
            raise ValueError(f"{len(inputs)} input frames vs {n_frames} output frames")
        for t, frame in enumerate(inputs):
            if np.shape(frame)[:2] != shape[:2]:
                raise ValueError(f"input frame {t} is {np.shape(frame)}, outputs are {shape}")
    for name, given in (("flows", flows), ("masks", masks)):
        if given is not None and len(given) != n_frames - 1:
            raise ValueError(f"{len(given)} {name} for {n_frames} frames (need {n_frames - 1})")

    if flows is None:
        if inputs is None:
            raise ValueError("give the input video (inputs) or the flows")
        flows = [backward_flow(inputs[t], inputs[t - 1]) for t in range(1, n_frames)]
        if masks is None:
            masks = [
                occlusion_mask(flows[t - 1], backward_flow(inputs[t - 1], inputs[t]))
                for t in range(1, n_frames)
            ]
    flows = [_check_flow(f, shape, f"flows[{i}]") for i, f in enumerate(flows)]
    if masks is not None:
        masks = [np.asarray(m, dtype=bool) for m in masks]
        for i, m in enumerate(masks):
            if m.shape != shape[:2]:
                raise ValueError(f"masks[{i}] must be [H, W] = {shape[:2]}, got {m.shape}")

    errors = []
    previous = _unit_float(outputs[0])
    for t in range(1, n_frames):
        current = _unit_float(outputs[t])
        diff = current - warp(previous, flows[t - 1])
        squared = diff * diff if diff.ndim == 2 else np.sum(diff * diff, axis=2)
        if masks is None:
            errors.append(float(np.mean(squared, dtype=np.float64)))
        else:
            valid = int(np.count_nonzero(masks[t - 1]))
            total = float(np.sum(squared[masks[t - 1]], dtype=np.float64))
            errors.append(total / valid if valid else float("nan"))
        previous = current
    return errors


def warping_error(
    outputs: Sequence[np.ndarray],
    inputs: Sequence[np.ndarray] | None = None,
    flows: Sequence[np.ndarray] | None = None,
    masks: Sequence[np.ndarray] | None = None,
) -> float:
    """Warping error ``E`` of an output video (Lai et al., ECCV 2018): lower is less flicker.

    ``E = 1/(T-1) Σ_{t=1..T-1} E_t``, the mean of :func:`warping_errors`, with
    ``E_t = Σ_p M_t(p) ||O_t(p) - warp(O_{t-1}, F_t)(p)||² / Σ_p M_t(p)``: pixel values in
    ``[0, 1]``, the squared difference summed over channels, ``F_t`` the backward flow from frame
    ``t`` to frame ``t-1`` and ``M_t`` the non-occluded pixels of frame ``t``, both taken from the
    input video by default (see the module docstring).

    Example:
        >>> video = [np.full((4, 4, 3), v, dtype=np.float32) for v in (0.0, 0.1, 0.0)]
        >>> round(warping_error(video, flows=[np.zeros((4, 4, 2), np.float32)] * 2), 6)
        0.03

    Args:
        outputs: ``T >= 2`` output frames, see :func:`warping_errors`.
        inputs: The ``T`` input frames, used for the flows and masks that are not given.
        flows: ``T-1`` backward flows float ``[H, W, 2]``, to use instead of DIS on ``inputs``.
        masks: ``T-1`` bool ``[H, W]`` validity masks, to use instead of the occlusion masks.

    Returns:
        The mean warping error (nan if some frame has an empty mask).

    Raises:
        ValueError: See :func:`warping_errors`.
        TypeError: See :func:`warping_errors`.
    """
    return float(np.mean(warping_errors(outputs, inputs, flows, masks)))

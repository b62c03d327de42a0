"""Temporal warping error of a video: how much a processed (translated, stylised) video flickers.

Following Lai et al., "Learning Blind Video Temporal Consistency", ECCV 2018, the error of an
output video ``O_0 .. O_{T-1}`` is

    E = 1/(T-1) Σ_{t=1..T-1} Σ_p M_t(p) ||O_t(p) - Ô_{t-1}(p)||² / Σ_p M_t(p),

where ``Ô_{t-1} = warp(O_{t-1}, F_t)`` is the previous output frame brought onto frame ``t`` by
the backward flow ``F_t`` (frame ``t`` to frame ``t-1``), ``M_t`` masks out pixels that are
occluded in frame ``t-1``, pixel values are in ``[0, 1]`` and the squared norm is summed over
channels, as in the paper. Flows and masks describe the motion of the scene, so they are computed
on the *input* video (the one the outputs were made from), not on the outputs being judged.

Flows, warping and occlusion masks come from :mod:`models.flow` (OpenCV's conventions, described
there), the same DIS optical flow (Kroeger et al., ECCV 2016) the runtime uses. Lai et al. used
FlowNet2; DIS runs on a CPU, which makes the absolute values comparable between methods evaluated
here but not with published numbers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from models.flow import backward_flow, check_flow, occlusion_mask, warp


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
    flows = [check_flow(f, shape, f"flows[{i}]") for i, f in enumerate(flows)]
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

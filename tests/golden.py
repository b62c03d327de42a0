"""Golden comparisons that hold on any CPU and at any thread count.

Every comparison against recorded outputs (the official code's, onnxruntime's, the CPU's for
the CUDA tests) goes through these helpers, so each one:

- compares a well-conditioned value (logits before softmax / tanh / sigmoid, flows, features)
  relative to that tensor's own scale: ``max |ours - theirs| / max |theirs|``. Kernels differ
  between CPUs and thread counts in the order they sum, which moves a result by a few ulps of
  its scale; an activation after a large logit turns that into an absolute error it cannot
  bound, so activations are never compared after the fact;
- compares a decision (an argmax, a threshold) only where the recorded values leave a margin
  that such rounding cannot cross, and checks that the near-ties it skips are few;
- is recorded with its tolerance, so ``pytest --golden-report`` prints every comparison's
  largest error beside its bound (the margin each test has on this machine).

Golden tests carry ``@pytest.mark.golden``; CI runs them again under 1, 2 and 3 intra-op
threads: ``OMP_NUM_THREADS=1 python -m pytest -q -m golden``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Comparison:
    """One golden comparison as measured: its name, largest error, and bound."""

    test: str
    what: str
    error: float
    tolerance: float
    kind: str  # "relative" (to the reference's scale) or "share" (of decisions that differ)


COMPARISONS: list[Comparison] = []


def _current_test() -> str:
    return os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0]


def _as_tensor(value: torch.Tensor | np.ndarray) -> torch.Tensor:
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(value)
    return value.detach().cpu().double()


def relative_error(ours: torch.Tensor | np.ndarray, theirs: torch.Tensor | np.ndarray) -> float:
    """``max |ours - theirs| / max |theirs|`` (0 for two empty tensors).

    Args:
        ours, theirs: tensors or arrays of the same shape; ``theirs`` is the reference, and its
            largest magnitude is the scale (an all-zero reference uses scale 1).
    """
    a, b = _as_tensor(ours), _as_tensor(theirs)
    assert a.shape == b.shape, f"shape {tuple(a.shape)} != reference {tuple(b.shape)}"
    if b.numel() == 0:
        return 0.0
    scale = float(b.abs().max()) or 1.0
    return float((a - b).abs().max()) / scale


def assert_close(
    ours: torch.Tensor | np.ndarray,
    theirs: torch.Tensor | np.ndarray,
    tolerance: float,
    what: str,
) -> float:
    """Assert ``relative_error(ours, theirs) < tolerance`` and record the comparison.

    Args:
        ours: our output.
        theirs: the recorded reference, same shape.
        tolerance: bound on the error relative to the reference's largest magnitude.
        what: the output's name, for the report and the failure message.

    Returns:
        The measured relative error.
    """
    error = relative_error(ours, theirs)
    COMPARISONS.append(Comparison(_current_test(), what, error, tolerance, "relative"))
    assert error < tolerance, f"{what}: relative error {error:.3g} >= {tolerance:.3g}"
    return error


def top2_gap(values: torch.Tensor | np.ndarray, dim: int) -> torch.Tensor:
    """Gap between the largest and the second largest value along ``dim`` (inf for size 1)."""
    v = _as_tensor(values)
    if v.shape[dim] < 2:
        return torch.full(v.sum(dim).shape, float("inf"), dtype=v.dtype)
    top = v.topk(2, dim=dim).values
    return (top.select(dim, 0) - top.select(dim, 1)).abs()


def assert_decisions_agree(
    ours: torch.Tensor | np.ndarray,
    theirs: torch.Tensor | np.ndarray,
    clear: torch.Tensor | np.ndarray,
    what: str,
    max_unclear: float = 0.01,
) -> float:
    """Assert two decision maps (argmax, labels, thresholded masks) agree where it is clear.

    Args:
        ours, theirs: integer or bool maps of the same shape.
        clear: bool map, same shape: where the reference's margin (a top-2 gap, a distance to
            a threshold) is wider than rounding can cross. Elsewhere a flip is allowed.
        what: the output's name.
        max_unclear: the most of the map that may be unclear (so a test cannot pass by
            calling everything a near-tie).

    Returns:
        The share of clear elements that differ (0 when the assertion holds).
    """
    a, b = _as_tensor(ours), _as_tensor(theirs)
    ok = _as_tensor(clear).bool()
    assert a.shape == b.shape == ok.shape, (a.shape, b.shape, ok.shape)
    unclear = 1.0 - float(ok.double().mean()) if ok.numel() else 0.0
    differ = float(((a != b) & ok).double().sum() / max(1, int(ok.sum())))
    COMPARISONS.append(Comparison(_current_test(), what, differ, 0.0, "share"))
    assert unclear <= max_unclear, f"{what}: {unclear:.2%} of the map is a near-tie"
    assert differ == 0.0, f"{what}: {differ:.3%} of the clear decisions differ"
    return differ


def format_report(comparisons: list[Comparison]) -> str:
    """The comparisons as a table: test, output, largest error, bound, margin (bound / error)."""
    worst: dict[tuple[str, str], Comparison] = {}
    for c in comparisons:  # a comparison made in a loop (frames, levels) shows its largest
        key = (c.test, c.what)
        if key not in worst or c.error > worst[key].error:
            worst[key] = c
    rows = []
    for c in worst.values():
        if c.kind == "share":
            rows.append((c.test, c.what, f"{c.error:.2%} differ", "0 (margin-checked)", "-"))
        else:
            margin = c.tolerance / c.error if c.error > 0 else float("inf")
            rows.append((c.test, c.what, f"{c.error:.2e}", f"{c.tolerance:.0e}", f"{margin:.0f}x"))
    header = ("test", "output", "largest error", "bound", "margin")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(5)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("-" * len(lines[0]))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def box_iou(a: np.ndarray, b: np.ndarray, inclusive: bool = False) -> np.ndarray:
    """IoU of xyxy boxes [N, 4] and [M, 4] -> [N, M].

    Args:
        inclusive: mmdet v1's pixel-inclusive widths (x2 - x1 + 1), as VPSNet's NMS uses.
    """
    one = 1.0 if inclusive else 0.0
    wh = np.minimum(a[:, None, 2:], b[None, :, 2:]) - np.maximum(a[:, None, :2], b[None, :, :2])
    inter = np.clip(wh + one, 0, None).prod(-1)
    area_a, area_b = ((x[:, 2:] - x[:, :2] + one).prod(-1) for x in (a, b))
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def _float64(value: object) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().double().numpy()
    return np.asarray(value, np.float64)


def assert_same_detections(
    ours: tuple, theirs: tuple, what: str, *, threshold: float, score_margin: float,
    nms: float, box_tolerance: float, iou_margin: float = 0.01, inclusive: bool = False,
    cap: int | None = None,
) -> list[tuple[int, int]]:  # fmt: skip
    """Asserts that ours and the reference found the same objects wherever that is decided
    with a margin, and returns the pairs (our index, reference index) both found.

    An object may be missing from one side only when a rounding error could decide it: its
    score within ``score_margin`` of ``threshold`` (or of the last one kept, when a side kept
    ``cap``), or its overlap with a better one within ``iou_margin`` of the NMS threshold
    ``nms``, or an overlapping rival (IoU near or above ``nms``) scoring within
    ``score_margin`` of it. At most half the objects may be such near-ties.

    Args:
        ours, theirs: (boxes [N, 4] xyxy, scores [N]), tensors (any device) or arrays.
        what: the output's name, for the message and ``--golden-report``.
        box_tolerance: two detections are one object when their corners are this close (px).
        inclusive: IoU with mmdet v1's inclusive widths (the NMS the model runs).
        cap: the most detections a side keeps (a top-k), or None.
    """
    (ob, o_s), (tb, t_s) = ([_float64(v) for v in side] for side in (ours, theirs))
    ob, tb = ob.reshape(-1, 4), tb.reshape(-1, 4)
    pairs: list[tuple[int, int]] = []
    for j in np.argsort(-t_s, kind="stable"):
        taken = {i for i, _ in pairs}
        free = [i for i in range(len(ob)) if i not in taken]
        if free:
            i = min(free, key=lambda i: np.abs(ob[i] - tb[j]).max())
            if np.abs(ob[i] - tb[j]).max() <= box_tolerance:
                pairs.append((i, int(j)))
    paired_ours, paired_theirs = {i for i, _ in pairs}, {j for _, j in pairs}
    only_theirs = [j for j in range(len(tb)) if j not in paired_theirs]
    only_ours = [i for i in range(len(ob)) if i not in paired_ours]
    rows = [j for _, j in pairs] + only_theirs
    boxes = np.concatenate([tb[rows], ob[only_ours]]).reshape(-1, 4)
    scores = np.concatenate([t_s[rows], o_s[only_ours]])
    found_by_us = np.r_[[True] * len(pairs), [False] * len(only_theirs), [True] * len(only_ours)]
    found_by_them = np.arange(len(scores)) < len(rows)
    cuts = [threshold]
    if cap is not None:
        cuts += [side.min() for side in (o_s, t_s) if len(side) >= cap]
    clear = (np.abs(scores[:, None] - np.array(cuts)[None, :]) > score_margin).all(1)
    if len(scores) > 1:
        iou = box_iou(boxes, boxes, inclusive)
        other = ~np.eye(len(scores), dtype=bool)
        better = (scores[None, :] >= scores[:, None]) & other
        close = np.abs(scores[None, :] - scores[:, None]) <= score_margin
        rival = (iou > nms - iou_margin) & close & other
        clear &= ~((np.abs(iou - nms) <= iou_margin) & better).any(1) & ~rival.any(1)
    assert_decisions_agree(found_by_us, found_by_them, clear, what, max_unclear=0.5)
    return pairs

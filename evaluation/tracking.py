"""Identity switches as defined by CLEAR-MOT (Bernardin & Stiefelhagen, 2008).

The matching of ground-truth objects to hypotheses in each frame is done by the caller (e.g. IoU
matching); this module only counts identity switches from those matches. A switch is counted when
a ground-truth track is matched to a different predicted track id than at its *last* match, even
if the track went unmatched (missed) in the frames in between.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from typing import NamedTuple


class IdSwitch(NamedTuple):
    """One identity switch.

    Attributes:
        frame: Index of the frame where the new match happened.
        gt_id: Ground-truth track id.
        previous_pred_id: Predicted id at the previous match of ``gt_id``.
        pred_id: Predicted id at this match.
    """

    frame: int
    gt_id: Hashable
    previous_pred_id: Hashable
    pred_id: Hashable


def id_switch_events(
    matches_per_frame: Sequence[Iterable[tuple[Hashable, Hashable]]],
) -> list[IdSwitch]:
    """Lists the CLEAR-MOT identity switches of a matched sequence.

    Args:
        matches_per_frame: For each of ``T`` frames, the ``(gt_track_id, pred_track_id)`` pairs
            matched in that frame. Each id may appear at most once per frame on each side.

    Returns:
        The switches in frame order (within a frame, in the order the pairs were given).

    Raises:
        ValueError: If a ground-truth or predicted id is matched twice in one frame.
    """
    last: dict[Hashable, Hashable] = {}
    events: list[IdSwitch] = []
    for t, matches in enumerate(matches_per_frame):
        pairs = list(matches)
        gts = [g for g, _ in pairs]
        preds = [p for _, p in pairs]
        if len(set(gts)) != len(gts):
            raise ValueError(f"frame {t}: a ground-truth id is matched more than once")
        if len(set(preds)) != len(preds):
            raise ValueError(f"frame {t}: a predicted id is matched more than once")
        for g, p in pairs:
            if g in last and last[g] != p:
                events.append(IdSwitch(t, g, last[g], p))
            last[g] = p
    return events


def id_switches(matches_per_frame: Sequence[Iterable[tuple[Hashable, Hashable]]]) -> int:
    """Counts CLEAR-MOT identity switches (IDSW).

    Example:
        >>> id_switches([[(1, "a")], [(1, "b")], [], [(1, "b")]])
        1

    Args:
        matches_per_frame: For each of ``T`` frames, the ``(gt_track_id, pred_track_id)`` pairs
            matched in that frame.

    Returns:
        The number of identity switches.
    """
    return len(id_switch_events(matches_per_frame))

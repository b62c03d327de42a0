"""Result types: the runtime imports no offline code, masks go out as COCO RLE, box IoU."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from pipeline.results import Detections, PanopticSegmentation, box_iou, rle_json
from tests.conftest import ROOT


def test_the_runtime_imports_no_evaluation_code_and_no_pycocotools() -> None:
    # A fresh interpreter: this test process has imported evaluation through other tests.
    probe = (
        "import pipeline.results, stages, run; import sys; "
        "print(sorted(m for m in sys.modules if m.startswith(('evaluation', 'pycocotools'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_masks_are_written_as_coco_rle_that_pycocotools_reads_back() -> None:
    from pycocotools import mask as mask_utils

    mask = np.zeros((6, 9), bool)
    mask[1:4, 2:7] = True
    encoded = rle_json(mask)
    assert encoded["size"] == [6, 9] and isinstance(encoded["counts"], str)
    json.dumps(encoded)  # JSON-ready as it is
    decoded = mask_utils.decode({**encoded, "counts": encoded["counts"].encode("ascii")})
    assert np.array_equal(decoded.astype(bool), mask)

    detections = Detections([[2, 1, 7, 4]], [0.9], [0], masks=mask[None])
    assert detections.to_json()["masks"] == [encoded]
    segments = PanopticSegmentation(mask.astype(np.int32) * 3, {3: {"class": 1}})
    assert segments.to_json()["rle"] == {"3": encoded}


def test_box_iou_by_hand() -> None:
    a = np.array([[0, 0, 10, 10]], np.float32)
    b = np.array([[5, 0, 15, 10], [20, 20, 30, 30], [3, 3, 3, 3]], np.float32)
    assert box_iou(a, b) == pytest.approx(np.array([[50 / 150, 0.0, 0.0]]))


def test_events_are_found_among_a_frames_results_and_written_without_nones() -> None:
    from pipeline.results import Analytics, Event, frame_events

    cross = Event("cross", "cam", 1.5, 1.7e9, 12, 3, "person", "door", direction="in")
    leave = Event("leave", "cam", 1.5, 1.7e9, 12, 4, "car", "lot", dwell_s=2.25)
    results = {"dets": Detections.empty(), "zones": Analytics([cross]),
               "more": Analytics([leave], occupancy={"lot": 0})}  # fmt: skip
    assert frame_events(results) == [cross, leave]
    assert cross.to_json() == {"kind": "cross", "source": "cam", "pts_s": 1.5,
                               "wall_time": 1.7e9, "frame_index": 12, "track_id": 3,
                               "label": "person", "where": "door", "direction": "in"}  # fmt: skip
    assert leave.to_json()["dwell_s"] == 2.25 and "direction" not in leave.to_json()
    assert results["more"].to_json()["occupancy"] == {"lot": 0}

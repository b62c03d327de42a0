"""A model stage given another family's weights says so in one line (read from the sidecar by
``models.<family>.load``, before the network is built)."""

from __future__ import annotations

import pytest

from pipeline.errors import ModelError
from stages.densepose import DensePoseDetector
from stages.instances import YolactEdgeDetector
from stages.panoptic import VPSNetSegmenter
from tests.conftest import ROOT

WEIGHTS = {
    "densepose": ROOT / "models" / "densepose" / "weights" / "synthetic_mobilenetv2.pth",
    "vpsnet": ROOT / "models" / "vpsnet" / "weights" / "synthetic_mobilenetv2.pth",
}


@pytest.mark.parametrize(
    ("stage", "weights", "family"),
    [
        (DensePoseDetector, "vpsnet", "DensePose"),
        (YolactEdgeDetector, "densepose", "YolactEdge"),
        (VPSNetSegmenter, "densepose", "VPSNet"),
    ],
)
def test_another_familys_weights_fail_in_one_line(stage, weights: str, family: str) -> None:
    with pytest.raises(ModelError, match=f"is not {family} weights") as error:
        stage(weights=str(WEIGHTS[weights])).open()
    assert "\n" not in str(error.value)

"""A model stage given another family's weights says so in one line, before building."""

from __future__ import annotations

import json

import pytest

from pipeline.errors import ModelError
from stages.densepose import DensePoseDetector
from stages.instances import YolactEdgeDetector
from stages.model_weights import sidecar_variant
from stages.panoptic import VPSNetSegmenter
from tests.conftest import ROOT

WEIGHTS = {
    "densepose": ROOT / "models" / "densepose" / "weights" / "synthetic_mobilenetv2.pth",
    "vpsnet": ROOT / "models" / "vpsnet" / "weights" / "synthetic_mobilenetv2.pth",
}


def test_variant_comes_from_the_config_then_the_sidecar_then_the_default(tmp_path) -> None:
    weights = tmp_path / "w.pth"
    (tmp_path / "w.json").write_text(json.dumps({"variant": "b", "input_size": 320}))
    known = {"a", "b", "c"}
    assert sidecar_variant("s", "F", str(weights), "c", "a", known) == (
        "c",
        {"variant": "b", "input_size": 320},
    )
    assert sidecar_variant("s", "F", str(weights), None, "a", known)[0] == "b"
    assert sidecar_variant("s", "F", "random", None, "a", known) == ("a", {})
    assert sidecar_variant("s", "F", str(tmp_path / "none.pth"), None, "a", known) == ("a", {})
    with pytest.raises(ModelError, match=r"^s: .*w.pth is not F weights .*'b'\)$"):
        sidecar_variant("s", "F", str(weights), None, "a", {"a"})


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

"""stages.model_backend: the device, precision and CUDA-graph checks every model stage makes
when it opens, and the options reaching the backend."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from models.backends import GraphSpec
from pipeline.errors import ConfigError, ModelError
from stages.model_backend import check_device, open_backend

CPU = torch.device("cpu")


def test_cuda_graph_with_another_backend_is_a_config_error_on_any_machine() -> None:
    for backend in ("onnxruntime", "tensorrt"):
        with pytest.raises(ConfigError, match=f"torch backend, not {backend}"):
            check_device("translate", torch.device("cuda"), cuda_graph=True, backend=backend)


def test_half_and_cuda_graph_need_a_cuda_device() -> None:
    with pytest.raises(ConfigError, match="half precision needs a CUDA device"):
        check_device("densepose", CPU, half=True)
    with pytest.raises(ConfigError, match="densepose: cuda_graph needs a CUDA device"):
        check_device("densepose", CPU, cuda_graph=True, backend="torch")
    check_device("densepose", CPU)  # plain CPU is fine


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message without CUDA")
def test_a_missing_cuda_device_is_a_model_error() -> None:
    with pytest.raises(ModelError, match="vpsnet: device cuda asked for, but CUDA is not"):
        check_device("vpsnet", torch.device("cuda"), cuda_graph=True)


def test_cuda_graph_reaches_the_torch_backend() -> None:
    spec = GraphSpec(inputs=("x",), outputs=("y",), example=((1, 3, 8, 8),))
    backend = open_backend("face_detector", "torch", nn.Conv2d(3, 4, 3), spec, "test", CPU)
    assert backend.cuda_graph is False
    # the torch backend itself refuses graphs off CUDA: the option got there
    with pytest.raises(ModelError, match="face_detector: CUDA graphs need a CUDA device"):
        open_backend("face_detector", "torch", nn.Conv2d(3, 4, 3), spec, "test", CPU,
                     cuda_graph=True)  # fmt: skip


@pytest.mark.parametrize(
    ("module", "name", "arguments"),
    [
        ("stages.faces", "FaceDetector", {}),
        ("stages.instances", "YolactEdgeDetector", {"weights": "random"}),
        ("stages.panoptic", "VPSNetSegmenter", {"weights": "random"}),
        ("stages.densepose", "DensePoseDetector", {"weights": "random"}),
        ("stages.translate", "Translate", {}),
    ],
)
def test_every_model_stage_takes_cuda_graph_and_checks_it_at_open(
    module: str, name: str, arguments: dict
) -> None:
    import importlib

    stage_class = getattr(importlib.import_module(module), name)
    stage = stage_class(**arguments, cuda_graph=True, backend="onnxruntime")
    with pytest.raises(ConfigError, match="cuda_graph is an option of the torch backend"):
        stage.open()
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="cuda_graph needs a CUDA device"):
            stage_class(**arguments, cuda_graph=True).open()

"""stages.model_backend: the device, precision and CUDA-graph checks every model stage makes
when it opens, and the options reaching the backend."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from torch import nn

from models.backends import GraphSpec, TorchBackend, tensorrt_version
from models.backends import tensorrt as tensorrt_backend
from pipeline.errors import ConfigError, ModelError
from stages import model_backend
from stages.model_backend import auto_candidates, check_device, open_backend

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


def _simulate(monkeypatch: pytest.MonkeyPatch, tensorrt: bool) -> None:
    """A machine with a CUDA device, onnxruntime's CUDA provider, and TensorRT or not."""
    import onnxruntime

    version = "10.3.0" if tensorrt else None
    monkeypatch.setattr(tensorrt_backend, "tensorrt_version", lambda: version)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: providers)


def test_auto_candidates_include_tensorrt_exactly_where_it_can_run(monkeypatch) -> None:
    cuda = torch.device("cuda")
    _simulate(monkeypatch, tensorrt=True)
    assert auto_candidates(cuda) == ("torch", "onnxruntime", "tensorrt")
    assert auto_candidates(cuda, "fp16") == ("torch", "tensorrt")  # our ONNX export is fp32
    assert auto_candidates(cuda, "bf16") == ("torch",)  # TensorRT runs fp32 or fp16
    assert auto_candidates(CPU) == ("torch", "onnxruntime")  # TensorRT needs a CUDA device
    _simulate(monkeypatch, tensorrt=False)
    assert auto_candidates(cuda) == ("torch", "onnxruntime")
    assert auto_candidates(cuda, "fp16") == ("torch",)


def test_auto_measures_the_candidates_that_can_run(monkeypatch) -> None:
    measured = []

    def measure(kinds, graph, *options):  # stands in for building and timing them
        measured.append(kinds)
        return TorchBackend(graph), {"torch": 1e-3}

    monkeypatch.setattr(model_backend, "create_fastest_backend", measure)
    spec = GraphSpec(inputs=("x",), outputs=("y",), example=((1, 3, 8, 8),))
    for tensorrt in (True, False):
        _simulate(monkeypatch, tensorrt)
        open_backend("face_detector", "auto", nn.Conv2d(3, 4, 3), spec, "t", torch.device("cuda"))
    assert measured == [("torch", "onnxruntime", "tensorrt"), ("torch", "onnxruntime")]


@pytest.mark.gpu
@pytest.mark.skipif(tensorrt_version() is None, reason="needs TensorRT (NVIDIA's wheels)")
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_auto_builds_and_measures_tensorrt_on_a_gpu(
    tmp_path: Path, monkeypatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("FRAMEGRAPH_CACHE", str(tmp_path))
    spec = GraphSpec(inputs=("x",), outputs=("y",), example=((1, 3, 64, 64),))
    cuda = torch.device("cuda")
    with caplog.at_level(logging.INFO, logger="framegraph"):
        backend = open_backend("face_detector", "auto", nn.Conv2d(3, 4, 3), spec, "t", cuda)
    assert "tensorrt" in auto_candidates(cuda)
    assert "'tensorrt': " in caplog.text  # built and measured beside the others
    assert len(list((tmp_path / "tensorrt").glob("*.engine"))) == 1
    assert backend.name in auto_candidates(cuda)

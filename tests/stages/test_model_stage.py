"""stages.model_stage: the run options every model stage takes (as config keys, validated
once, passed whole to the backend), the checks it makes when it opens, and ``auto``."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from torch import nn

from models.backends import GraphSpec, TorchBackend, tensorrt_version
from models.backends import tensorrt as tensorrt_backend
from pipeline.config import build_stage, register, stage_parameters
from pipeline.errors import ConfigError, ModelError
from stages import model_stage
from stages.model_stage import ModelStage, auto_candidates

CPU = torch.device("cpu")
SPEC = GraphSpec(inputs=("x",), outputs=("y",), example=((1, 3, 8, 8),))


@register("test_model_stage")
class Conv(ModelStage):
    """A one-convolution model stage."""

    family = "test"

    def __init__(self, width: int = 4, **options) -> None:
        super().__init__(**options)
        self.width = width

    def open(self) -> None:
        self.check_options()
        self.backend = self.open_backend(nn.Conv2d(3, self.width, 3), SPEC)


def test_run_options_are_config_keys_of_every_model_stage() -> None:
    for kind in ("test_model_stage", "face_detector", "yolact_edge", "vpsnet", "densepose",
                 "translate"):  # fmt: skip
        keys = set(stage_parameters(kind))
        assert {"backend", "device", "precision", "cuda_graph", "threads"} <= keys, kind
    stage = build_stage("test_model_stage", {"width": 2, "backend": "torch", "threads": 3})
    assert (stage.options.backend, stage.options.threads, stage.width) == ("torch", 3, 2)
    with pytest.raises(ConfigError, match="stage: precision: Input should be 'fp32'"):
        build_stage("test_model_stage", {"precision": "fp8"})
    with pytest.raises(ConfigError, match="stage: unknown key 'half'"):
        build_stage("test_model_stage", {"half": True})


def test_channels_last_defaults_to_the_familys_choice() -> None:
    assert Conv().options.channels_last is False
    from stages.instances import YolactEdgeDetector

    assert YolactEdgeDetector(weights="random").options.channels_last is True
    assert YolactEdgeDetector(weights="random", channels_last=False).options.channels_last is False


def test_cuda_graph_with_another_backend_is_a_config_error_on_any_machine() -> None:
    for backend in ("onnxruntime", "tensorrt"):
        with pytest.raises(ConfigError, match=f"torch backend, not {backend}"):
            Conv(device="cuda", cuda_graph=True, backend=backend).check_options()


def test_half_precisions_and_cuda_graph_need_a_cuda_device() -> None:
    for precision in ("fp16", "bf16"):
        with pytest.raises(ConfigError, match=f"test_model_stage: precision {precision} needs a"):
            Conv(precision=precision).check_options()
    with pytest.raises(ConfigError, match="test_model_stage: cuda_graph needs a CUDA device"):
        Conv(cuda_graph=True, backend="torch").check_options()
    Conv().check_options()  # plain CPU is fine


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message without CUDA")
def test_a_missing_cuda_device_is_a_model_error() -> None:
    with pytest.raises(ModelError, match="test_model_stage: device cuda asked for, but CUDA is"):
        Conv(device="cuda", cuda_graph=True).check_options()


def test_the_options_reach_the_backend_whole() -> None:
    stage = Conv(backend="torch", channels_last=True)
    stage.open()
    assert isinstance(stage.backend, TorchBackend) and stage.backend.cuda_graph is False
    assert stage.backend.channels_last is True
    # the torch backend itself refuses graphs off CUDA: the option got there
    stage = Conv(backend="torch", cuda_graph=True)
    with pytest.raises(ModelError, match="test_model_stage: CUDA graphs need a CUDA device"):
        stage.open_backend(nn.Conv2d(3, 4, 3), SPEC)
    ort = Conv(backend="onnxruntime", threads=1)
    ort.open()
    assert ort.backend.name == "onnxruntime"


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

    def measure(kinds, graph, *options, **keywords):  # stands in for building and timing them
        measured.append(kinds)
        return TorchBackend(graph), {"torch": 1e-3}

    monkeypatch.setattr(model_stage, "create_fastest_backend", measure)
    for tensorrt in (True, False):
        _simulate(monkeypatch, tensorrt)
        Conv(device="cuda").open()
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
        backend = Conv(device="cuda").open_backend(nn.Conv2d(3, 4, 3), spec)
    assert "tensorrt" in auto_candidates(cuda)
    assert "'tensorrt': " in caplog.text  # built and measured beside the others
    assert len(list((tmp_path / "tensorrt").glob("*.engine"))) == 1
    assert backend.name in auto_candidates(cuda)

"""models/backends: parity with torch eager, the ONNX and engine caches, engine-build locking."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from models import retinaface
from models.backends import (
    BackendError,
    BackendUnavailable,
    EngineCache,
    EngineKey,
    GraphSpec,
    RunOptions,
    TensorRTBackend,
    TorchBackend,
    cached_onnx,
    create_backend,
    fastest,
    require_backend,
    tensorrt_version,
)
from models.backends import tensorrt as tensorrt_backend
from models.backends.onnx import model_digest
from tests.golden import assert_close

KEY = EngineKey(
    onnx_sha256="ab" * 32,
    shapes="[('input', ((1, 3, 64, 64), (1, 3, 480, 640), (8, 3, 1088, 1920)))]",
    precision="fp16",
    gpu_name="NVIDIA H100 80GB HBM3",
    compute_capability="9.0",
    tensorrt_version="10.3.0",
)

ORT = RunOptions(backend="onnxruntime")


@pytest.fixture(scope="module")
def mobilenet(tmp_path_factory: pytest.TempPathFactory) -> torch.nn.Module:
    return retinaface.pretrained(cache_dir=tmp_path_factory.mktemp("weights"))


@pytest.mark.parametrize("size", [(480, 640), (301, 357)])
def test_onnxruntime_matches_torch_mobilenet(
    mobilenet: torch.nn.Module, size: tuple[int, int], tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("FRAMEGRAPH_CACHE", str(tmp_path))
    spec = retinaface.graph_spec()
    torch.manual_seed(0)
    x = torch.randn(1, 3, *size) * 50
    reference = TorchBackend(mobilenet)(x)
    ort = create_backend(
        mobilenet, spec, "retinaface", RunOptions(backend="onnxruntime", threads=1)
    )
    outputs = ort(x)
    assert [o.shape for o in outputs] == [r.shape for r in reference]
    for out, ref in zip(outputs, reference, strict=True):
        assert (out - ref).abs().max().item() <= 1e-4


@pytest.mark.slow
def test_onnxruntime_matches_torch_resnet50(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FRAMEGRAPH_CACHE", str(tmp_path))
    torch.manual_seed(0)
    model = retinaface.build_model("resnet50").eval()
    # Random weights blow activations up with depth; at unit input scale the outputs stay
    # O(10) as with trained weights, where an absolute 1e-4 is meaningful.
    x = torch.randn(1, 3, 320, 320)
    reference = TorchBackend(model)(x)
    outputs = create_backend(model, retinaface.graph_spec(), "retinaface", ORT)(x)
    for out, ref in zip(outputs, reference, strict=True):
        assert (out - ref).abs().max().item() <= 1e-4


def test_onnx_cache_reuses_and_keys_on_weights(mobilenet: torch.nn.Module, tmp_path: Path) -> None:
    spec = retinaface.graph_spec()
    first = cached_onnx(mobilenet, spec, "retinaface", tmp_path)
    stamp = first.stat().st_mtime_ns
    assert cached_onnx(mobilenet, spec, "retinaface", tmp_path) == first
    assert first.stat().st_mtime_ns == stamp  # not exported again
    # no temp files: the export, its sha256 record and its lock
    names = {first.name, first.with_suffix(".json").name, first.with_suffix(".lock").name}
    assert {p.name for p in first.parent.iterdir()} == names
    changed = retinaface.build_model("mobilenet0.25")
    changed.load_state_dict(mobilenet.state_dict())
    with torch.no_grad():
        next(changed.parameters()).add_(1e-3)
    assert cached_onnx(changed, spec, "retinaface", tmp_path) != first
    other = dataclasses.replace(spec, example=((1, 3, 320, 320),))
    assert model_digest(mobilenet, other) != model_digest(mobilenet, spec)


def test_export_leaves_the_callers_model_alone(tmp_path: Path) -> None:
    model = retinaface.build_model("mobilenet0.25").eval().half()
    cached_onnx(model, retinaface.graph_spec(), "retinaface", tmp_path)
    assert next(model.parameters()).dtype == torch.float16


def test_engine_key_changes_with_every_part() -> None:
    digests = {KEY.digest()}
    for field in dataclasses.fields(EngineKey):
        digests.add(dataclasses.replace(KEY, **{field.name: "other"}).digest())
    assert len(digests) == 1 + len(dataclasses.fields(EngineKey))


def test_engine_cache_builds_once_and_rebuilds_foreign_files(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    builds = []

    def build() -> bytes:
        builds.append(1)
        return b"engine-%d" % len(builds)

    path, sidecar = cache.paths(KEY)
    assert cache.get_or_build(KEY, build) == b"engine-1" == path.read_bytes()
    assert cache.valid(KEY)
    assert cache.get_or_build(KEY, build) == b"engine-1" and len(builds) == 1
    path.write_bytes(b"someone else's engine")  # foreign bytes under our name: never loaded
    assert not cache.valid(KEY)
    assert cache.get_or_build(KEY, build) == b"engine-2" == path.read_bytes()
    sidecar.write_text(sidecar.read_text().replace("9.0", "8.6"))  # sidecar for another GPU
    assert cache.get_or_build(KEY, build) == b"engine-3" == path.read_bytes()
    other = dataclasses.replace(KEY, tensorrt_version="10.4.0")  # stale: new file, new build
    assert cache.get_or_build(other, build) == b"engine-4" and len(builds) == 4
    assert cache.paths(other)[0] != path and path.read_bytes() == b"engine-3"


def _build_in_process(folder: str, log: str, start: float) -> bytes:
    def build() -> bytes:
        with open(log, "a") as f:
            f.write("built\n")
        time.sleep(0.5)  # long enough for the other process to arrive and wait
        return b"x" * 100_000

    time.sleep(max(0.0, start - time.time()))
    return EngineCache(folder).get_or_build(KEY, build)


def test_concurrent_builders_produce_one_engine(tmp_path: Path) -> None:
    log = tmp_path / "builds.log"
    start = time.time() + 1.0
    context = multiprocessing.get_context("spawn")
    with context.Pool(2) as pool:
        engines = pool.starmap(
            _build_in_process, [(str(tmp_path / "engines"), str(log), start)] * 2
        )
    assert engines[0] == engines[1] == b"x" * 100_000
    assert log.read_text() == "built\n"
    files = sorted(p.name for p in (tmp_path / "engines").iterdir())
    assert files == sorted(
        [f"{KEY.digest()}.engine", f"{KEY.digest()}.json", f"{KEY.digest()}.lock"]
    )
    assert (tmp_path / "engines" / f"{KEY.digest()}.engine").read_bytes() == b"x" * 100_000


def test_tensorrt_missing_is_a_clear_error(tmp_path: Path, monkeypatch) -> None:
    # runs on every machine: TensorRT's absence is simulated where it is installed
    monkeypatch.setattr(tensorrt_backend, "tensorrt_version", lambda: None)
    with pytest.raises(BackendUnavailable, match="TensorRT is not installed"):
        TensorRTBackend(tmp_path / "x.onnx", retinaface.graph_spec())
    monkeypatch.setattr(tensorrt_backend, "tensorrt_version", lambda: "10.3.0")  # installed
    with pytest.raises(BackendUnavailable, match=r"TensorRT needs a CUDA device \(got cpu\)"):
        TensorRTBackend(tmp_path / "x.onnx", retinaface.graph_spec(), "cpu")
    with pytest.raises(BackendError, match="the tensorrt backend runs fp32 or fp16"):
        require_backend("tensorrt", "cuda", "bf16")  # before looking for TensorRT at all


@pytest.mark.gpu
@pytest.mark.skipif(tensorrt_version() is None, reason="needs TensorRT (NVIDIA's wheels)")
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize(("precision", "tolerance"), [("fp32", 3e-3), ("fp16", 3e-2)])
def test_tensorrt_engine_matches_torch_and_is_cached(
    mobilenet: torch.nn.Module, precision: str, tolerance: float, tmp_path: Path, monkeypatch
) -> None:
    """A real engine from our RetinaFace export, built through create_backend as a stage
    does: its outputs match torch eager on two shapes of the dynamic profile, relative to
    each output's scale (fp32 engines use TF32 by default on Ampere and later: a 10-bit
    mantissa per multiply; a wrong binding, layout or output order errs by O(1)), and a second
    open loads the cached engine instead of building again."""
    monkeypatch.setenv("FRAMEGRAPH_CACHE", str(tmp_path))
    builds = []
    build = TensorRTBackend._build

    def counted(self: TensorRTBackend, *args: object) -> bytes:
        builds.append(args)
        return build(self, *args)

    monkeypatch.setattr(TensorRTBackend, "_build", counted)
    spec = retinaface.graph_spec()
    torch.manual_seed(0)
    inputs = [torch.randn(1, 3, 480, 640) * 50, torch.randn(2, 3, 301, 357) * 50]
    references = [TorchBackend(mobilenet)(x) for x in inputs]  # fp32 on the CPU

    def check(backend: object) -> None:
        for x, reference in zip(inputs, references, strict=True):
            outputs = backend(x)
            torch.cuda.synchronize()
            assert [o.shape for o in outputs] == [r.shape for r in reference]
            for name, out, ref in zip(spec.outputs, outputs, reference, strict=True):
                assert out.device.type == "cuda" and out.dtype == torch.float32
                assert_close(out, ref, tolerance, f"tensorrt {precision} {name} {tuple(x.shape)}")

    options = RunOptions(backend="tensorrt", device="cuda", precision=precision)
    engine = create_backend(mobilenet, spec, "retinaface", options)
    assert engine.name == "tensorrt" and len(builds) == 1
    (path,) = (tmp_path / "tensorrt").glob("*.engine")
    key = json.loads(path.with_suffix(".json").read_text())["key"]
    assert key["precision"] == precision and key["tensorrt_version"] == tensorrt_version()
    assert key["gpu_name"] == torch.cuda.get_device_name()
    stamp = path.stat().st_mtime_ns
    check(engine)
    again = create_backend(mobilenet, spec, "retinaface", options)
    assert len(builds) == 1, "the second open built the engine again instead of loading it"
    assert path.stat().st_mtime_ns == stamp
    assert list((tmp_path / "tensorrt").glob("*.engine")) == [path]
    check(again)


def test_torch_backend_rejects_gpu_options_on_cpu() -> None:
    model = retinaface.build_model("mobilenet0.25")
    with pytest.raises(BackendError, match="fp16 needs a CUDA device"):
        TorchBackend(model, "cpu", "fp16")
    with pytest.raises(BackendError, match="CUDA graphs"):
        TorchBackend(model, "cpu", cuda_graph=True)
    with pytest.raises(BackendError, match="unknown backend"):
        require_backend("tvm")


class _Sleeper:
    device = torch.device("cpu")

    def __init__(self, name: str, seconds: float) -> None:
        self.name, self.seconds = name, seconds

    def __call__(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        time.sleep(self.seconds)
        return inputs


def test_fastest_picks_the_lowest_median() -> None:
    # real time, with a gap no scheduling on a loaded 2-core machine can close
    best, timings = fastest([_Sleeper("slow", 0.05), _Sleeper("quick", 0.0)], [torch.zeros(1)])
    assert best.name == "quick" and timings["slow"] > timings["quick"]


class _Clock:
    """Virtual seconds: they pass only when a :class:`_Timed` backend runs."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class _Timed:
    """A backend whose successive calls cost ``costs`` virtual seconds (the last repeats)."""

    device = torch.device("cpu")

    def __init__(self, name: str, clock: _Clock, *costs: float) -> None:
        self.name, self.clock, self.costs, self.calls = name, clock, costs, 0

    def __call__(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        self.clock.now += self.costs[min(self.calls, len(self.costs) - 1)]
        self.calls += 1
        return inputs


@pytest.mark.parametrize("slow", ["first", "second"])
def test_fastest_picks_the_faster_either_way_round(slow: str) -> None:
    clock = _Clock()
    # the fast one's warm-up and one timed call are slow (a stall): the median ignores them
    fast = ("fast", clock, 1.0, 0.002, 0.002, 0.3, 0.002, 0.002)
    backends = [_Timed("slow", clock, 0.01), _Timed(*fast)]
    if slow == "second":
        backends.reverse()
    best, timings = fastest(backends, [torch.zeros(1)], clock=clock)
    assert best.name == "fast"
    assert timings == pytest.approx({"slow": 0.01, "fast": 0.002})
    assert [b.calls for b in backends] == [6, 6]  # one warm-up, five timed


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_fp16_and_graphs_match_fp32(mobilenet: torch.nn.Module) -> None:
    x = torch.randn(1, 3, 480, 640) * 50
    reference = TorchBackend(retinaface.build_model("mobilenet0.25").eval(), "cpu")
    reference.model.load_state_dict(mobilenet.state_dict())
    expected = reference(x)
    for kwargs in ({"precision": "fp16"}, {"cuda_graph": True}):
        model = retinaface.build_model("mobilenet0.25")
        model.load_state_dict(mobilenet.state_dict())
        backend = TorchBackend(model, "cuda", **kwargs)
        for _ in range(2):  # the graph is captured on the first call, replayed on the second
            outputs = backend(x)
        tolerance = 2e-2 if kwargs.get("precision") == "fp16" else 1e-4
        for out, ref in zip(outputs, expected, strict=True):
            assert (out.cpu() - ref).abs().max().item() <= tolerance * max(1, ref.abs().max())


def test_graph_spec_profile_defaults_to_example() -> None:
    spec = GraphSpec(inputs=("a",), outputs=("b",), example=((1, 3, 8, 8),))
    assert spec.profile() == {"a": ((1, 3, 8, 8),) * 3}


def test_export_restores_each_submodules_mode(tmp_path: Path) -> None:
    model = retinaface.build_model("mobilenet0.25").eval()
    wrapper = torch.nn.Sequential(model)  # a fresh wrapper is in training mode
    cached_onnx(wrapper, retinaface.graph_spec(), "retinaface", tmp_path)
    assert wrapper.training and not any(m.training for m in model.modules())


def test_export_cache_key_follows_the_model_code(tmp_path: Path, monkeypatch) -> None:
    import importlib
    import sys as system

    package = tmp_path / "tiny_family"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "net.py").write_text(
        "import torch\n\nclass Net(torch.nn.Module):\n"
        "    def __init__(self):\n        super().__init__()\n"
        "        self.conv = torch.nn.Conv2d(3, 4, 1)\n"
        "    def forward(self, x):\n        return (self.conv(x),)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    net = importlib.import_module("tiny_family.net").Net()
    spec = GraphSpec(inputs=("x",), outputs=("y",), example=((1, 3, 8, 8),))
    before = model_digest(net, spec)
    (package / "net.py").write_text((package / "net.py").read_text() + "# a fix in forward\n")
    assert model_digest(net, spec) != before  # same weights, new code: a new export
    system.modules.pop("tiny_family.net", None)
    system.modules.pop("tiny_family", None)


class _Deformable(torch.nn.Module):
    """A deformable convolution: torchvision's op, which ONNX has no operator for."""

    def __init__(self) -> None:
        super().__init__()
        self.offset = torch.nn.Conv2d(3, 18, 3, padding=1)
        self.weight = torch.nn.Parameter(torch.randn(4, 3, 3, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import torchvision

        return torchvision.ops.deform_conv2d(x, self.offset(x), self.weight, padding=1)


def test_a_model_onnx_cannot_express_is_one_line_and_auto_keeps_torch(tmp_path: Path) -> None:
    from models.backends import create_fastest_backend

    spec = GraphSpec(inputs=("x",), outputs=("y",), example=((1, 3, 16, 16),))
    with pytest.raises(BackendError) as error:
        cached_onnx(_Deformable(), spec, "deformable", tmp_path)
    message = str(error.value)
    assert message.startswith("cannot export deformable to ONNX: ") and "deform_conv2d" in message
    assert "\n" not in message and len(message) < 400
    assert not list(tmp_path.rglob("*.onnx*"))  # no half-written export left behind
    backend, timings = create_fastest_backend(
        ("torch", "onnxruntime"), _Deformable(), spec, "d", RunOptions()
    )
    assert backend.name == "torch" and list(timings) == ["torch"]


def test_onnxruntime_without_a_cuda_provider_is_refused_before_exporting(
    tmp_path: Path, monkeypatch
) -> None:
    import onnxruntime

    monkeypatch.setenv("FRAMEGRAPH_CACHE", str(tmp_path))
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    model = retinaface.build_model("mobilenet0.25")
    with pytest.raises(BackendUnavailable, match="no CUDA provider"):
        create_backend(model, retinaface.graph_spec(), "retinaface",
                       RunOptions(backend="onnxruntime", device="cuda"))  # fmt: skip
    assert not list(tmp_path.rglob("*.onnx"))  # nothing exported for a backend that cannot run


def test_int8_is_our_export_quantized_once_per_calibration(tmp_path: Path, monkeypatch) -> None:
    from models.backends import cached_int8_onnx

    monkeypatch.setenv("FRAMEGRAPH_CACHE", str(tmp_path))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 8, 3)).eval()
    spec = GraphSpec(inputs=("x",), outputs=("y",), example=((1, 3, 32, 32),))
    calibration = [(torch.rand(1, 3, 32, 32),) for _ in range(4)]
    path = cached_int8_onnx(model, spec, "toy", calibration)
    stamp = path.stat().st_mtime_ns
    assert cached_int8_onnx(model, spec, "toy", calibration) == path  # cached ...
    assert path.stat().st_mtime_ns == stamp
    other = cached_int8_onnx(model, spec, "toy", calibration[:2])  # ... per calibration
    assert other != path
    options = RunOptions(backend="onnxruntime", precision="int8")
    int8 = create_backend(model, spec, "toy", options, calibration)
    x = torch.rand(1, 3, 32, 32)
    (expected,), (got,) = TorchBackend(model)(x), int8(x)
    error = float((got - expected).abs().max() / expected.abs().max())
    assert 0 < error < 0.05  # quantized (not the fp32 graph), and close to it
    import onnx

    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops


def test_int8_runs_on_onnxruntime_on_the_cpu_only() -> None:
    model = nn.Conv2d(3, 4, 3)
    spec = GraphSpec(inputs=("x",), outputs=("y",), example=((1, 3, 8, 8),))
    with pytest.raises(BackendError, match="int8 is onnxruntime's"):
        create_backend(model, spec, "toy", RunOptions(backend="torch", precision="int8"))
    with pytest.raises(BackendError, match="tensorrt backend runs fp32 or fp16"):
        require_backend("tensorrt", "cuda", "int8")
    with pytest.raises(BackendError, match="int8 needs calibration inputs"):
        create_backend(model, spec, "toy", RunOptions(backend="onnxruntime", precision="int8"))


def test_a_batching_stage_measures_and_builds_engines_at_its_batch(monkeypatch) -> None:
    from models.backends import select

    spec = retinaface.graph_spec()  # dynamic batch, engines 1..8
    assert select.at_batch(spec, 1) is spec
    wide = select.at_batch(spec, 16)
    profile = wide.profile()["input"]
    assert profile == ((1, 3, 64, 64), (16, 3, 480, 640), (16, 3, 1088, 1920))
    fixed = GraphSpec(inputs=("x",), outputs=("y",), example=((1, 3, 8, 8),))
    assert select.at_batch(fixed, 4).example == ((1, 3, 8, 8),)  # no batch axis: unchanged
    built = {}

    class Engine:  # stands in for TensorRT: records the spec it was built for
        def __init__(self, onnx, spec, device, precision) -> None:
            built["spec"] = spec

    monkeypatch.setattr(select, "TensorRTBackend", Engine)
    monkeypatch.setattr(select, "require_backend", lambda *args: None)
    monkeypatch.setattr(select, "cached_onnx_bytes", lambda *args: b"model.onnx")
    options = RunOptions(backend="tensorrt", device="cuda", batch=16)
    select.create_backend(nn.Conv2d(3, 4, 3), spec, "retinaface", options)
    assert built["spec"].profile()["input"][2][0] == 16  # the engine takes the stage's batch

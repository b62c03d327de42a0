"""models/cache.py and its users: a cache folder others could write is refused, every cached
graph / engine / weights file is checked against the sha256 our writer recorded and loaded
from the very bytes checked, a planted or corrupt entry is rebuilt (never run), the lock file
never follows a symlink, and export keys follow every module the exported graph runs."""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import sys
import types
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from torch import nn

from models import cache as cache_module
from models import densepose, retinaface, vpsnet
from models.backends import (
    BackendError,
    EngineCache,
    EngineKey,
    GraphSpec,
    OnnxRuntimeBackend,
    RunOptions,
    TensorRTBackend,
    UnsafeCacheError,
    cached_onnx,
    cached_onnx_bytes,
    create_backend,
    create_fastest_backend,
    export_onnx,
)
from models.backends import onnx as onnx_module
from models.backends import tensorrt as tensorrt_backend
from models.backends.onnx import code_files, model_digest
from models.cache import CacheError, cache_folder, file_lock, private_dir

ROOT = Path(__file__).resolve().parents[2]
FACES = ROOT / "media" / "faces.mp4"
TOY_SPEC = GraphSpec(inputs=("x",), outputs=("y",), example=((1, 3, 8, 8),))
ORT = RunOptions(backend="onnxruntime", threads=1)
OTHER_UID = 54321


def toy(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1)).eval()


def planted_bytes(tmp_path: Path, model: nn.Module, spec: GraphSpec) -> bytes:
    """A valid ONNX of another graph with the same interface: what an attacker would plant."""
    path = tmp_path / "planted.onnx"
    export_onnx(model, path, spec)
    return path.read_bytes()


def give_away(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Makes ``path`` another user's: chown as root, else pretend to be someone else."""
    if os.geteuid() == 0:
        os.chown(path, OTHER_UID, OTHER_UID)
    else:
        uid = os.getuid()
        monkeypatch.setattr(os, "getuid", lambda: uid + 1)


@pytest.fixture
def cache_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh cache folder as ``$FRAMEGRAPH_CACHE`` (pytest makes tmp_path 0700)."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("FRAMEGRAPH_CACHE", str(folder))
    return folder


# --------------------------------------------------------------------------- folders


def test_folders_are_created_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FRAMEGRAPH_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # the default: ~/.cache/framegraph
    folder = cache_folder("toy")
    assert folder == tmp_path / ".cache" / "framegraph" / "toy"
    for made in (tmp_path / ".cache", folder.parent, folder):
        assert stat.S_IMODE(made.stat().st_mode) == 0o700, made
    path = cached_onnx(toy(), TOY_SPEC, "toy")
    for entry in (path, path.with_suffix(".json"), path.with_suffix(".lock")):
        assert stat.S_IMODE(entry.stat().st_mode) == 0o600, entry


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o702])
@pytest.mark.parametrize("which", ["root", "family"])
def test_a_folder_others_may_write_is_refused(
    cache_env: Path, mode: int, which: str, caplog: pytest.LogCaptureFixture
) -> None:
    cache_folder("toy")
    folder = cache_env if which == "root" else cache_env / "toy"
    folder.chmod(mode)
    with pytest.raises(CacheError) as error:
        cache_folder("toy")
    message = str(error.value)
    assert "writable by group or others" in message and str(folder) in message
    assert "\n" not in message
    # the backends say it in one line, and auto does not quietly fall back to torch
    with pytest.raises(UnsafeCacheError) as error:
        create_backend(toy(), TOY_SPEC, "toy", ORT)
    assert isinstance(error.value, BackendError) and "\n" not in str(error.value)
    with pytest.raises(UnsafeCacheError):
        create_fastest_backend(("torch", "onnxruntime"), toy(), TOY_SPEC, "toy", RunOptions())
    assert not list(cache_env.rglob("*.onnx"))  # nothing exported into it


def test_a_folder_of_another_user_is_refused(
    cache_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache_folder("toy")
    give_away(cache_env / "toy", monkeypatch)
    with pytest.raises(CacheError, match=r"belongs to uid \d+") as error:
        cache_folder("toy")
    assert "\n" not in str(error.value)


def test_a_stage_reports_an_unsafe_cache_as_a_model_error(cache_env: Path) -> None:
    from pipeline.errors import FrameGraphError, ModelError
    from stages.faces import FaceDetector

    private_dir(cache_env).chmod(0o777)
    detector = FaceDetector(backend="onnxruntime")
    with pytest.raises(ModelError) as error:
        detector.open()
    assert isinstance(error.value, FrameGraphError) and error.value.exit_code == 7
    assert "writable by group or others" in str(error.value) and "\n" not in str(error.value)


def test_a_folder_above_that_others_may_swap_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # anyone may rename our folder away and put theirs in its place
    monkeypatch.setenv("FRAMEGRAPH_CACHE", str(shared / "cache"))
    with pytest.raises(CacheError, match="above it is writable by others"):
        cache_folder("toy")
    shared.chmod(0o1777)  # sticky, as /tmp: only the owner may rename what is in it
    assert stat.S_IMODE(cache_folder("toy").stat().st_mode) == 0o700


def test_a_symlinked_cache_folder_is_used_resolved(tmp_path: Path) -> None:
    real = private_dir(tmp_path / "real")
    (tmp_path / "link").symlink_to(real)
    assert private_dir(tmp_path / "link") == real  # later uses go to the folder checked


# --------------------------------------------------------------------------- entries


def first_frame() -> np.ndarray:
    with av.open(str(FACES)) as container:
        return next(container.decode(video=0)).to_ndarray(format="bgr24")


class NoFaces(nn.Module):
    """RetinaFace whose face scores are all 0: a graph that makes the detector blind."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        loc, conf, landmarks = self.net(x)
        return loc, torch.zeros_like(conf), landmarks


def test_a_planted_face_detector_graph_is_rebuilt_and_faces_are_still_found(
    cache_env: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The attack: a valid ONNX of another graph written over our cached export, one that
    finds no faces (so none would be blurred). It is detected and rebuilt, never run."""
    bundle = retinaface.load()
    net = bundle.graphs()["net"]
    image = first_frame()

    def faces(backend: object) -> int:
        x, _ = bundle.preprocess(image)
        found = bundle.postprocess(*backend(x), tuple(x.shape[-2:]))[0]  # type: ignore[operator]
        return len(found)

    found = faces(create_backend(net.module, net.spec, "retinaface", ORT))
    assert found >= 2  # the clip shows two faces
    path = cached_onnx(net.module, net.spec, "retinaface")
    planted = planted_bytes(tmp_path, NoFaces(net.module), net.spec)
    path.write_bytes(planted)
    assert faces(OnnxRuntimeBackend(planted)) == 0  # what the planted graph would do
    with caplog.at_level(logging.WARNING, logger="framegraph"):
        backend = create_backend(net.module, net.spec, "retinaface", ORT)
    assert faces(backend) == found
    assert "sha256 differs" in caplog.text and str(path) in caplog.text
    assert path.read_bytes() != planted  # rebuilt in place


@pytest.mark.parametrize(
    "damage",
    ["truncate", "garbage", "no record", "bad record", "another owner", "symlink"],
)
def test_a_damaged_export_is_rebuilt_with_a_warning(
    cache_env: Path, tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    model = toy()
    path = cached_onnx(model, TOY_SPEC, "toy")
    genuine = path.read_bytes()
    record = path.with_suffix(".json")
    victim = tmp_path / "victim.onnx"
    if damage == "truncate":
        path.write_bytes(genuine[: len(genuine) // 2])
    elif damage == "garbage":
        path.write_bytes(b"\0" * len(genuine))
    elif damage == "no record":
        record.unlink()
    elif damage == "bad record":
        record.write_text("{not json")
    elif damage == "another owner":  # planted while the folder was open to others, say
        if os.geteuid() != 0:
            pytest.skip("needs root to give a file away")
        os.chown(path, OTHER_UID, OTHER_UID)
    else:
        victim.write_bytes(genuine)
        path.unlink()
        path.symlink_to(victim)
    with caplog.at_level(logging.WARNING, logger="framegraph"):
        assert cached_onnx_bytes(model, TOY_SPEC, "toy") == genuine
    assert "rebuilding" in caplog.text and str(path) in caplog.text
    assert path.read_bytes() == genuine and not path.is_symlink()
    assert path.stat().st_uid == os.getuid()
    if damage == "symlink":
        assert victim.read_bytes() == genuine  # written beside, not through
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="framegraph"):
        assert cached_onnx_bytes(model, TOY_SPEC, "toy") == genuine
    assert not caplog.text  # the rebuilt entry is trusted again


def test_damaged_weights_are_converted_again(
    cache_env: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = retinaface.pretrained()
    (path,) = (cache_env / "retinaface").glob("*.pth")
    path.write_bytes(path.read_bytes()[:1000])
    with caplog.at_level(logging.WARNING, logger="framegraph"):
        second = retinaface.pretrained()
    assert "sha256 differs" in caplog.text
    for key, value in first.state_dict().items():
        assert torch.equal(second.state_dict()[key], value)


def test_a_planted_int8_graph_is_rebuilt(
    cache_env: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from models.backends import cached_int8_onnx

    model = toy()
    calibration = [(torch.rand(1, 3, 8, 8),) for _ in range(2)]
    path = cached_int8_onnx(model, TOY_SPEC, "toy", calibration)
    genuine = path.read_bytes()
    path.write_bytes(planted_bytes(tmp_path, toy(1), TOY_SPEC))
    with caplog.at_level(logging.WARNING, logger="framegraph"):
        assert cached_int8_onnx(model, TOY_SPEC, "toy", calibration) == path
    assert "sha256 differs" in caplog.text and path.read_bytes() == genuine


def test_the_bytes_loaded_are_the_bytes_checked(
    cache_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file is swapped for a planted graph right after its check (as a racing attacker
    would): the backend still runs the bytes that were checked, since it never opens the
    file by name again."""
    model = toy()
    path = cached_onnx(model, TOY_SPEC, "toy")
    planted = planted_bytes(tmp_path, toy(1), TOY_SPEC)
    checked = []
    digest = cache_module.sha256

    def then_swap(data: bytes) -> str:
        checked.append(data)
        result = digest(data)
        path.write_bytes(planted)  # the moment after the hash
        return result

    monkeypatch.setattr(cache_module, "sha256", then_swap)
    backend = create_backend(model, TOY_SPEC, "toy", ORT)
    monkeypatch.setattr(cache_module, "sha256", digest)
    assert path.read_bytes() == planted and len(checked) == 1  # swapped, after one read
    x = torch.rand(1, 3, 8, 8)
    (ours,), (expected,), (theirs,) = backend(x), model(x), OnnxRuntimeBackend(planted)(x)
    assert (ours - expected).abs().max() < 1e-5  # the checked graph runs ...
    assert (theirs - expected).abs().max() > 1e-2  # ... not the planted one


# --------------------------------------------------------------------------- lock files


def test_the_lock_file_never_follows_a_symlink(
    cache_env: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model = toy()
    path = cached_onnx(model, TOY_SPEC, "toy")
    lock = path.with_suffix(".lock")
    victim, absent = tmp_path / "victim.txt", tmp_path / "absent.txt"
    victim.write_bytes(b"precious")
    for target in (victim, absent):
        lock.unlink()
        lock.symlink_to(target)
        with pytest.raises(CacheError, match="is a symlink") as error:
            cached_onnx_bytes(model, TOY_SPEC, "toy")
        assert "\n" not in str(error.value)
        with pytest.raises(UnsafeCacheError):
            create_backend(model, TOY_SPEC, "toy", ORT)
        with pytest.raises(CacheError), file_lock(lock):
            pass
    assert victim.read_bytes() == b"precious" and not absent.exists()
    lock.unlink()
    with file_lock(lock):  # an ordinary lock file again: created 0600
        assert stat.S_IMODE(lock.stat().st_mode) == 0o600 and not lock.is_symlink()


# --------------------------------------------------------------------------- keys


def test_the_key_follows_a_shared_module(monkeypatch: pytest.MonkeyPatch) -> None:
    """models/mobilenet.py is no family's package, but DensePose and VPSNet run it: a change
    there must give them new exports (RetinaFace, which does not use it, keeps its key)."""
    graphs = {
        "densepose": next(iter(densepose.load("random").graphs(256, 320).values())),
        "vpsnet": next(iter(vpsnet.load("random").graphs(256, 320).values())),
        "retinaface": retinaface.load("random").graphs()["net"],
    }
    assert "models/mobilenet.py" in code_files(graphs["densepose"].module)
    assert "models/mobilenet.py" in code_files(graphs["vpsnet"].module)
    assert "models/mobilenet.py" not in code_files(graphs["retinaface"].module)
    before = {name: model_digest(g.module, g.spec) for name, g in graphs.items()}
    source = onnx_module._source
    shared = onnx_module.MODELS / "mobilenet.py"

    def edited(path: Path) -> bytes:
        return source(path) + (b"\n# a fix\n" if path == shared else b"")

    monkeypatch.setattr(onnx_module, "_source", edited)
    after = {name: model_digest(g.module, g.spec) for name, g in graphs.items()}
    assert after["densepose"] != before["densepose"]
    assert after["vpsnet"] != before["vpsnet"]
    assert after["retinaface"] == before["retinaface"]


def test_the_key_covers_the_export_code() -> None:
    files = code_files(toy())
    assert {"models/backends/onnx.py", "models/backends/base.py"} <= set(files)
    assert "torch.nn.modules.conv" in files  # the submodules' own code, by module name


# --------------------------------------------------------------------------- tensorrt


class _FakeEngine:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def create_execution_context(self) -> object:
        return object()


def _fake_tensorrt(loaded: list[bytes]) -> types.ModuleType:
    """Just what TensorRTBackend's constructor touches once the engine exists."""

    class Logger:
        WARNING = 2

        def __init__(self, level: int) -> None:
            self.level = level

    class Runtime:
        def __init__(self, logger: Logger) -> None:
            self.logger = logger

        def deserialize_cuda_engine(self, data: bytes) -> _FakeEngine:
            loaded.append(bytes(data))
            return _FakeEngine(data)

    module = types.ModuleType("tensorrt")
    module.Logger, module.Runtime = Logger, Runtime  # type: ignore[attr-defined]
    return module


def test_tensorrt_loads_the_checked_engine_and_rebuilds_a_planted_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """TensorRT simulated (not installed here): the engine deserialized is always the checked
    one; a planted engine is rebuilt; an engine swapped after its check is not loaded."""
    loaded: list[bytes] = []
    builds: list[bytes] = []
    monkeypatch.setitem(sys.modules, "tensorrt", _fake_tensorrt(loaded))
    monkeypatch.setattr(tensorrt_backend, "tensorrt_version", lambda: "10.3.0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    props = types.SimpleNamespace(name="Fake GPU", major=9, minor=0)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: props)

    def build(self: TensorRTBackend, onnx: bytes, precision: str, workspace: float) -> bytes:
        builds.append(onnx)
        return b"engine of " + hashlib.sha256(onnx).hexdigest().encode()

    monkeypatch.setattr(TensorRTBackend, "_build", build)
    onnx = b"an onnx graph"
    genuine = b"engine of " + hashlib.sha256(onnx).hexdigest().encode()
    cache = EngineCache(tmp_path / "engines")
    assert stat.S_IMODE(cache.folder.stat().st_mode) == 0o700

    def open_engine() -> None:
        TensorRTBackend(onnx, TOY_SPEC, "cuda", "fp16", cache=cache)

    open_engine()
    open_engine()
    assert builds == [onnx] and loaded == [genuine, genuine]
    key = EngineKey.for_build(onnx, TOY_SPEC, "fp16", torch.device("cuda"), "10.3.0")
    path, _ = cache.paths(key)
    path.write_bytes(b"planted engine")
    with caplog.at_level(logging.WARNING, logger="framegraph"):
        open_engine()
    assert "sha256 differs" in caplog.text
    assert len(builds) == 2 and loaded[-1] == genuine == path.read_bytes()
    digest = cache_module.sha256

    def then_swap(data: bytes) -> str:
        result = digest(data)
        if data == genuine:
            path.write_bytes(b"planted engine")  # the moment after the check
        return result

    monkeypatch.setattr(cache_module, "sha256", then_swap)
    open_engine()
    assert path.read_bytes() == b"planted engine" and loaded[-1] == genuine
    assert b"planted engine" not in loaded

"""models/translation/export: every translator as one graph with dynamic height and width, run
by onnxruntime within 1e-4 of torch; styles are part of the export cache key."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from models import translation
from models.backends import RunOptions, TorchBackend, cached_onnx, create_backend
from models.translation.multistyle import MultiStyleNet
from tests.golden import assert_close

# onnxruntime against torch: within 1e-4 of the output's own scale (kernels that sum in another
# order, on another CPU or thread count, move results by ~1e-6 of it)
TOLERANCE = 1e-4

ORT = RunOptions(backend="onnxruntime")


def random_translator(network: str) -> translation.Translator:
    """A junyanz / fast-style translator with seeded random weights (the layouts are tested
    against the official ones elsewhere; parity needs only the same weights on both sides)."""
    torch.manual_seed(0)
    model = translation.build_model(network)
    value_range = "byte" if network == "transformer_net" else "tanh"
    multiple = int(network.split("_")[1]) if network.startswith("unet") else 4
    return translation.Translator(model, value_range, multiple)


def translators() -> list:
    return [
        pytest.param(
            lambda: translation.load_translator("multistyle26", style=3), id="multistyle26"
        ),
        pytest.param(lambda: translation.load_translator("vintagify"), id="vintagify"),
        pytest.param(lambda: random_translator("transformer_net"), id="transformer_net"),
        pytest.param(lambda: random_translator("resnet_6blocks"), id="resnet_6blocks"),
        pytest.param(lambda: random_translator("unet_128"), id="unet_128"),
    ]


def torch_logits(translator: translation.Translator, padded: torch.Tensor) -> torch.Tensor:
    """The graph's values before its last tanh / sigmoid (its output if it has none): where a
    comparison is well conditioned."""
    network, seen = translator.network, []
    if isinstance(network, MultiStyleNet):  # torch.sigmoid in forward: the last conv's output
        handle = network.expand[2].register_forward_hook(lambda m, i, out: seen.append(out))
    else:
        squash = [m for m in network.modules() if isinstance(m, torch.nn.Tanh | torch.nn.Sigmoid)]
        if not squash:
            with torch.inference_mode():
                return translator.core(padded)
        handle = squash[-1].register_forward_hook(lambda m, args, out: seen.append(args[0]))
    try:
        with torch.inference_mode():
            translator.core(padded)
    finally:
        handle.remove()
    return seen[-1]


def onnx_logits(path: Path, padded: torch.Tensor) -> np.ndarray:
    """``torch_logits`` of the exported graph: the input of its last Tanh / Sigmoid node."""
    proto = onnx.load(str(path))
    squash = [node for node in proto.graph.node if node.op_type in ("Tanh", "Sigmoid")]
    name = squash[-1].input[0] if squash else proto.graph.output[0].name
    if squash:
        proto.graph.output.append(
            onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)
        )
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(proto.SerializeToString(), options, ["CPUExecutionProvider"])
    return session.run([name], {"rgb": padded.numpy()})[0]


@pytest.mark.golden
@pytest.mark.parametrize("make", translators())
def test_onnxruntime_matches_torch_at_a_size_it_was_not_exported_at(
    make, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("FRAMEGRAPH_CACHE", str(tmp_path))
    translator = make()
    graph = translation.TranslatorGraph(translator)
    spec = translation.graph_spec(128, 256)  # exported at 128x256, run at another size
    torch.manual_seed(1)
    frame = torch.rand(1, 3, 101, 301)  # odd: the translator pads to its multiple
    padded = translator.pad(frame)
    assert padded.shape[-2] % translator.multiple == 0 and padded.shape[-1] != 256
    (reference,) = TorchBackend(graph)(padded)
    (outputs,) = create_backend(
        graph, spec, "translation", RunOptions(backend="onnxruntime", threads=2)
    )(padded)
    assert outputs.shape == reference.shape == padded.shape
    # compared before the tanh / sigmoid, relative to their own scale
    logits = torch_logits(translator, padded)
    error = assert_close(onnx_logits(cached_onnx(graph, spec, "translation"), padded), logits,
                         TOLERANCE, "before tanh / sigmoid (if any)")  # fmt: skip
    # so does the output: tanh's slope is at most 1 and its range of 2 maps to 0..1, sigmoid's
    # at most 1/4 (multistyle26: unit range); the fast-style net has neither: its "logits"
    # are the output
    slope = {"tanh": 1 / 2, "unit": 1 / 4, "byte": 1.0}[translator.value_range]
    bound = slope * error * float(logits.abs().max()) + 1e-6  # + float32 rounding
    assert (outputs - reference).abs().max().item() <= bound
    # The graph is the translator's core: cropping it gives the translator's own output.
    with torch.inference_mode():
        whole = translator(frame)
    assert torch.equal(reference[..., :101, :301], whole)
    assert whole.std() > 5e-4  # not a constant (random fast-style weights give a dim picture)


def test_each_style_is_its_own_export(tmp_path: Path) -> None:
    spec = translation.graph_spec(64, 64)
    paths, outputs = [], []
    frame = torch.rand(1, 3, 64, 64)
    for style in (3, 19):
        graph = translation.TranslatorGraph(
            translation.load_translator("multistyle26", style=style)
        )
        paths.append(cached_onnx(graph, spec, "translation", tmp_path))
        outputs.append(create_backend(graph, spec, "translation", ORT)(frame)[0])
    assert paths[0] != paths[1]
    assert (outputs[0] - outputs[1]).abs().mean() > 0.02

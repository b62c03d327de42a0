"""models/translation/export: every translator as one graph with dynamic height and width, run
by onnxruntime within 1e-4 of torch; styles are part of the export cache key."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models import translation
from models.backends import TorchBackend, cached_onnx, create_backend


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
    (outputs,) = create_backend("onnxruntime", graph, spec, "translation", threads=2)(padded)
    assert outputs.shape == reference.shape == padded.shape
    assert (outputs - reference).abs().max().item() <= 1e-4
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
        outputs.append(create_backend("onnxruntime", graph, spec, "translation")(frame)[0])
    assert paths[0] != paths[1]
    assert (outputs[0] - outputs[1]).abs().mean() > 0.02

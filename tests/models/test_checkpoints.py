"""models/checkpoints: reading files, strict-fit messages, the compact form of demo weights."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch

from models.checkpoints import compact, expand, is_compact, mismatch_summary, read_checkpoint


def test_round_trip_keeps_keys_order_shapes_and_values_within_a_step() -> None:
    torch.manual_seed(0)
    state = {
        "conv.weight": torch.randn(8, 3, 3, 3),
        "conv.bias": torch.randn(8),
        "bn.num_batches_tracked": torch.tensor(7),
        "fc.weight": torch.randn(4, 16) * torch.arange(1, 5)[:, None],  # channel scales differ
    }
    stored = compact(state)
    buffer = io.BytesIO()
    torch.save(stored, buffer)
    buffer.seek(0)
    back = expand(torch.load(buffer, weights_only=True))
    assert is_compact(stored) and not is_compact(state)
    assert list(back) == list(state)
    assert all(back[k].shape == v.shape for k, v in state.items())
    assert torch.equal(back["bn.num_batches_tracked"], state["bn.num_batches_tracked"])
    for key in ("conv.weight", "fc.weight"):
        # Symmetric int8 per output channel: error at most half a step of that channel.
        step = state[key].reshape(len(state[key]), -1).abs().amax(1) / 127
        error = (back[key] - state[key]).reshape(len(step), -1).abs().amax(1)
        assert (error <= step / 2 + 1e-7).all()
    assert torch.allclose(back["conv.bias"], state["conv.bias"], atol=1e-3)
    # A quarter of float32, plus the scales.
    sizes = {k: v.numel() * v.element_size() for k, v in state.items()}
    stored_size = sum(
        t.numel() * t.element_size() for e in stored["tensors"].values() for t in e.values()
    )
    assert stored_size < 0.4 * sum(sizes.values())


def test_mismatch_summary_names_the_first_keys_in_one_line() -> None:
    model = {f"layer{i}.weight": torch.zeros(2, 2) for i in range(5)}
    assert mismatch_summary(model, dict(model)) == ""
    checkpoint = {k: v for k, v in model.items() if k not in ("layer0.weight", "layer1.weight")}
    checkpoint["extra"] = torch.zeros(1)
    checkpoint["layer4.weight"] = torch.zeros(3, 2)
    assert mismatch_summary(model, checkpoint, shown=1) == (
        "missing (2): layer0.weight, ...; unexpected (1): extra; "
        "shape (1): layer4.weight (3, 2) vs (2, 2)"
    )


def test_read_checkpoint_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="weights file not found"):
        read_checkpoint(tmp_path / "missing.pth")
    (tmp_path / "text.pth").write_text("not a checkpoint\nsecond line")
    with pytest.raises(ValueError, match="is not a PyTorch checkpoint") as error:
        read_checkpoint(tmp_path / "text.pth")
    assert "\n" not in str(error.value)
    torch.save({"w": torch.ones(2)}, tmp_path / "ok.pth")
    assert torch.equal(read_checkpoint(tmp_path / "ok.pth")["w"], torch.ones(2))

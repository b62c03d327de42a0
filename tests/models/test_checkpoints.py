"""models/checkpoints: the compact form of committed demo weights."""

from __future__ import annotations

import io

import torch

from models.checkpoints import compact, expand, is_compact


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

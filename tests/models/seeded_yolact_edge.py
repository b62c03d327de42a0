"""YolactEdge's seeded weights and head-logit probe, shared by the golden recorder
(tools/golden_yolact_edge.py, on the official network) and the tests (on our port).

The same seed gives the official network and ours the same weights (their keys are the same),
so the recorded outputs and ours can be compared number for number.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import torch


def seeded_state_dict(model: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """Deterministic, well-scaled weights for every key of ``model`` (in state_dict order).

    Conv / linear weights ~ N(0, 2 / fan_in); biases ~ N(0, 0.01²); BatchNorm weight 1 + 0.1 N,
    bias and running mean 0.1 N, running var 1 + 0.1 |N|; counters 0. The flow network's
    feature scale and bias are near 1 and 0 (weights x 0.01, scale bias 1 + 0.01 N), as after
    training, so warped features keep their size. Keys are identical in the official network
    and ours, so the same seed gives the same weights to both.
    """
    generator = torch.Generator().manual_seed(seed)
    out = {}
    for key, tensor in model.state_dict().items():
        shape = tuple(tensor.shape)
        noise = torch.randn(shape, generator=generator) if shape else torch.zeros(())
        if key.endswith("num_batches_tracked"):
            value = torch.zeros((), dtype=torch.long)
        elif key.endswith("running_var"):
            value = 1 + 0.1 * noise.abs()
        elif key.endswith(("running_mean",)) or (tensor.dim() == 1 and key.endswith("bias")):
            value = (
                0.1 if ".bn" in key or "downsample.1" in key or ".conv." in key else 0.01
            ) * noise
        elif tensor.dim() == 1:  # BatchNorm weight
            value = 1 + 0.1 * noise
        else:
            fan_in = max(1, int(torch.tensor(shape[1:]).prod()))
            value = noise * (2.0 / fan_in) ** 0.5
        if re.match(r"flow_net\.pred\d\.(scale|bias)\.weight", key):
            value = value * 0.01
        elif re.match(r"flow_net\.pred\d\.scale\.bias", key):
            value = 1 + value
        out[key] = value.to(tensor.dtype)
    return out


def head_logits(
    model: torch.nn.Module, run: Callable[[], object], num_classes: int
) -> dict[str, torch.Tensor]:
    """Class and mask-coefficient logits of ``run()``, before softmax / tanh.

    Hooks every module named ``*.conf_layer`` / ``*.mask_layer`` (the official names, kept in
    our port; the official heads share one module across levels), runs ``run``, and returns the
    convolutions' outputs in call order, flattened as the head flattens them.

    Returns:
        ``conf_logits`` float [N, P, num_classes], ``mask_logits`` float [N, P, 32].
    """
    seen: dict[str, list[torch.Tensor]] = {"conf_layer": [], "mask_layer": []}

    def keep(kind: str) -> Callable:
        return lambda _module, _args, out: seen[kind].append(out)

    hooks = [
        module.register_forward_hook(keep(name.rsplit(".", 1)[-1]))
        for name, module in model.named_modules()
        if name.rsplit(".", 1)[-1] in seen
    ]
    try:
        run()
    finally:
        for hook in hooks:
            hook.remove()

    def flat(outputs: list[torch.Tensor], width: int) -> torch.Tensor:
        n = outputs[0].shape[0]
        return torch.cat([o.permute(0, 2, 3, 1).reshape(n, -1, width) for o in outputs], dim=1)

    return {
        "conf_logits": flat(seen["conf_layer"], num_classes),
        "mask_logits": flat(seen["mask_layer"], 32),
    }

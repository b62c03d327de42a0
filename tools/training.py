"""What our detector trainers share: the optimisation loop and the sidecar's lineage."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import torch
from torch import Tensor
from tqdm import tqdm


def train_steps(
    model: torch.nn.Module,
    step_losses: Callable[[int], dict[str, Tensor]],
    steps: int,
    lr: float,
    minutes: float | None = None,
    log: TextIO | None = None,
    warmup: int = 50,
) -> list[float]:
    """AdamW (weight decay 1e-4) with ``warmup`` linear warm-up steps and a cosine decay,
    gradients clipped to norm 10, BatchNorm statistics frozen (``model.eval()``: our batches
    are too small for them); returns the loss of every step.

    With ``minutes``, training also ends when that much time has passed, the cosine following
    whichever of steps and time is further along (the CPU may be shared, so steps/s varies).

    Args:
        step_losses: the weighted losses of one step's batch, by name (summed to train).
        log: also write the losses every 25 steps here.
    """
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(parameters, lr=lr, weight_decay=1e-4)
    start = time.perf_counter()
    model.eval()
    losses: list[float] = []
    progress = tqdm(range(steps), desc="train", mininterval=10)
    for step in progress:
        done = step / steps
        if minutes:
            done = max(done, (time.perf_counter() - start) / (60 * minutes))
        if done >= 1.0:
            break
        for group in optimiser.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * done))
        parts = step_losses(step)
        loss = sum(parts.values())
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 10.0)
        optimiser.step()
        losses.append(float(loss.detach()))
        values = {k: float(v.detach()) for k, v in parts.items()}
        progress.set_postfix({k: f"{v:.3f}" for k, v in values.items()})
        if log is not None and (step % 25 == 0 or step == steps - 1):
            elapsed = time.perf_counter() - start
            print(
                f"step {step} {elapsed:.0f}s lr {optimiser.param_groups[0]['lr']:.2e} "
                f"loss {losses[-1]:.3f} " + " ".join(f"{k} {v:.3f}" for k, v in values.items()),
                file=log,
                flush=True,
            )
    return losses


def lineage(init: Path | None) -> dict:
    """``{"continued_from": ...}`` for a sidecar when training started from ``init``: that
    run's command and steps (and its own lineage), so the sidecar holds the whole recipe."""
    if init is None:
        return {}
    sidecar = init.with_suffix(".json")
    earlier = json.loads(sidecar.read_text()) if sidecar.is_file() else {}
    keep = ("command", "steps", "continued_from")
    return {"continued_from": {k: earlier[k] for k in keep if k in earlier}}

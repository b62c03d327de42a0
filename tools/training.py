"""What our trainers share: the optimisation loop, compact saving, and the sidecar's command
and lineage."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from models.checkpoints import compact, expand, read_checkpoint


def trainer_arguments(
    description: str, steps: int, lr: float, frames: int, eval_frames: int
) -> argparse.ArgumentParser:
    """The command line every detector trainer shares (its own options are added after):
    ``--out`` / ``--evaluate`` / ``--init``, the synthetic sequences, the optimisation."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", type=Path, help="weights file (.pth) to train")
    parser.add_argument("--evaluate", type=Path, help="only measure these weights")
    parser.add_argument(
        "--init", type=Path, help="start from these weights (continue a run), not ImageNet"
    )
    parser.add_argument("--train-sequences", type=int, default=16)
    parser.add_argument("--eval-sequences", type=int, default=3)
    parser.add_argument("--frames", type=int, default=frames, help="frames per training sequence")
    parser.add_argument(
        "--eval-frames", type=int, default=eval_frames, help="frames per held-out sequence"
    )
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--lr", type=float, default=lr)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--minutes", type=float, help="also stop training after this long (shared CPUs)"
    )
    parser.add_argument("--log", type=Path, help="also append the losses every 25 steps here")
    return parser


def parse_trainer_arguments(
    parser: argparse.ArgumentParser, argv: list[str] | None
) -> tuple[argparse.Namespace, np.random.Generator]:
    """Parses, checks that exactly one of ``--out`` / ``--evaluate`` is given, seeds torch and
    sets its threads; returns the arguments and the run's numpy generator."""
    args = parser.parse_args(argv)
    if (args.out is None) == (args.evaluate is None):
        parser.error("give --out (train) or --evaluate (measure existing weights)")
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    return args, np.random.default_rng(args.seed)


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


def command_line(script: str, argv: list[str] | None) -> str:
    """The sidecar's ``command``: how ``tools/<script>`` was run (``argv`` default: this
    process's arguments)."""
    return f"python tools/{script} " + " ".join(argv if argv is not None else sys.argv[1:])


def save_compact(model: nn.Module, path: Path) -> None:
    """Stores ``model``'s weights compactly (``models.checkpoints.compact``) at ``path``, then
    loads the stored weights back into ``model``, so what is scored next is what was saved."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(compact(model.state_dict()), path)
    model.load_state_dict(expand(read_checkpoint(path)), strict=True)


def lineage(init: Path | None) -> dict:
    """``{"continued_from": ...}`` for a sidecar when training started from ``init``: that
    run's command and steps (and its own lineage), so the sidecar holds the whole recipe."""
    if init is None:
        return {}
    sidecar = init.with_suffix(".json")
    earlier = json.loads(sidecar.read_text()) if sidecar.is_file() else {}
    keep = ("command", "steps", "continued_from")
    return {"continued_from": {k: earlier[k] for k in keep if k in earlier}}

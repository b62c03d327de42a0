#!/usr/bin/env python3
"""Train a CycleGAN (junyanz recipe) between our frames and a "vintage" look of them.

Domains, both built from what ships with the repo (no download):

- A: the content images of tools/train_style.py (frames of media/pedestrians.mp4 and
  media/faces.mp4, four scikit-image photos), random crops.
- B: ``vintage(a)`` of *other* random crops: a sepia tone blended with 20 % of the original
  colour, then faded (lifted blacks, dimmed whites).

Why this pair: it is the kind of look a video pipeline applies (the vintagify network is a
CycleGAN of the same idea), and because B is a known per-pixel function of A the learnt G_A can
be checked against the exact answer, although training never sees a pair. A and B crops are drawn
independently, so the training is genuinely unpaired; the check is paired. It runs on
scikit-image's ``rocket``, which neither domain ever contains, and the sidecar reports
L1(G_A(x), vintage(x)) beside L1(x, vintage(x)), what doing nothing would score.

Losses and optimisation as junyanz's ``cycle_gan_model.py`` defaults: LSGAN adversarial, L1 cycle
(λ 10 both ways), L1 identity (0.5 · λ), a 50-image history pool per discriminator, Adam 2e-4
β1 0.5, constant learning rate for the first half of --steps and linear decay to 0 in the second
(their 100 + 100 epochs), generators and PatchGAN discriminators with instance norm, N(0, 0.02)
init. Written into --out as junyanz's checkpoints directory names them:
``latest_net_G_A.pth`` (A -> B), ``latest_net_G_B.pth`` (B -> A), ``latest_net_D_A.pth``,
``latest_net_D_B.pth``, plus ``train_cyclegan.json`` (command, options, losses, the check).
With --ngf 64 the generators load strictly into ``build_model("resnet_9blocks")`` (or
``resnet_6blocks``); other widths into ``ResnetGenerator(ngf=..., n_blocks=...)``.

    python tools/train_cyclegan.py --out checkpoints/vintage --steps 20000 --size 128
    python tools/train_cyclegan.py --out /tmp/cg --steps 300 --size 64 --ngf 16 --n-blocks 6
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import torch
from torch import Tensor, nn
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.translation import NLayerDiscriminator, ResnetGenerator, init_weights  # noqa: E402
from models.translation.losses import cycle_loss, identity_loss, lsgan_loss  # noqa: E402
from tools.train_style import (  # noqa: E402
    HELD_OUT_PHOTO,
    content_images,
    curve,
    random_crops,
    skimage_photo,
    to_tensor,
    window_mean,
)
from tools.training import command_line  # noqa: E402

SEPIA = torch.tensor(
    [[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]]
)  # the classic sepia-tone matrix, rows = output R, G, B
"""float [3, 3]: sepia RGB = SEPIA @ RGB, values in 0..1 (clipped after)."""


def vintage(rgb: Tensor) -> Tensor:
    """Domain B's look: sepia blended with 20 % of the original colour, then faded.

    Args:
        rgb: float [N, 3, H, W] in 0..1.

    Returns:
        float [N, 3, H, W] in 0.06..0.92 (the fade keeps blacks and whites off the ends).
    """
    sepia = torch.einsum("oc,nchw->nohw", SEPIA.to(rgb), rgb).clamp(0, 1)
    toned = 0.8 * sepia + 0.2 * rgb
    return 0.06 + 0.86 * toned


class ImagePool:
    """junyanz's history of generated images: each discriminator sees, half the time, an older
    fake instead of the newest, which damps the generator / discriminator oscillation
    (Shrivastava et al. 2017).

    Args:
        size: images kept; 0 turns the pool off.
        generator: the random source (so a seed fixes which images are swapped).
    """

    def __init__(self, size: int, generator: torch.Generator) -> None:
        self.size, self.generator = size, generator
        self.images: list[Tensor] = []

    def query(self, fakes: Tensor) -> Tensor:
        """fakes: float [N, C, H, W] (detached) -> float [N, C, H, W], some from the history."""
        if self.size == 0:
            return fakes
        out = []
        for fake in fakes:
            fake = fake[None]
            if len(self.images) < self.size:
                self.images.append(fake)
                out.append(fake)
            elif torch.rand((), generator=self.generator) < 0.5:
                index = int(torch.randint(self.size, (), generator=self.generator))
                out.append(self.images[index])
                self.images[index] = fake
            else:
                out.append(fake)
        return torch.cat(out)


def to_tanh(x: Tensor) -> Tensor:
    """RGB 0..255 -> -1..1 (junyanz: ToTensor then Normalize(0.5, 0.5))."""
    return x / 127.5 - 1


@torch.inference_mode()
def check_mapping(g_a: nn.Module, g_b: nn.Module, size: int) -> dict[str, float]:
    """L1 (0..1 units) of the learnt maps against the exact ``vintage`` on the held-out photo,
    center crop resized to ``size``, beside the do-nothing baseline."""
    photo = to_tensor(skimage_photo(HELD_OUT_PHOTO), size)[None]
    left = (photo.shape[3] - size) // 2
    x = photo[..., :size, left : left + size] / 255
    target = vintage(x)
    g_a.eval()
    g_b.eval()
    fake_b = (g_a(x * 2 - 1) + 1) / 2
    fake_a = (g_b(target * 2 - 1) + 1) / 2
    g_a.train()
    g_b.train()
    return {
        "heldout_l1_G_A_vs_vintage": round(float((fake_b - target).abs().mean()), 4),
        "heldout_l1_G_B_vs_original": round(float((fake_a - x).abs().mean()), 4),
        "heldout_l1_do_nothing": round(float((x - target).abs().mean()), 4),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="checkpoints directory")
    parser.add_argument("--steps", type=int, default=10000)
    parser.add_argument("--size", type=int, default=128, help="side of the square crops")
    parser.add_argument("--batch", type=int, default=1, help="junyanz default 1")
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--lambda-cycle", type=float, default=10.0)
    parser.add_argument("--lambda-identity", type=float, default=0.5)
    parser.add_argument("--pool", type=int, default=50, help="image pool size (0: off)")
    parser.add_argument("--n-blocks", type=int, default=9, choices=(6, 9))
    parser.add_argument("--ngf", type=int, default=64, help="generator width")
    parser.add_argument("--ndf", type=int, default=64, help="discriminator width")
    parser.add_argument("--window", type=int, default=20, help="steps averaged for first / last")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.size < 32 or args.size % 4:
        # 4: the generator's two stride-2 convs; 32: the PatchGAN's last instance norm needs a
        # map larger than 1x1.
        parser.error("--size must be a multiple of 4, at least 32")
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(args.seed)
    start = time.perf_counter()

    images = content_images(2 * args.size)
    g_a, g_b = (
        init_weights(ResnetGenerator(ngf=args.ngf, n_blocks=args.n_blocks)) for _ in range(2)
    )
    d_a, d_b = (
        init_weights(NLayerDiscriminator(3, args.ndf, n_layers=3, norm="instance"))
        for _ in range(2)
    )
    adam = {"lr": args.lr, "betas": (0.5, 0.999)}
    optimiser_g = torch.optim.Adam(itertools.chain(g_a.parameters(), g_b.parameters()), **adam)
    optimiser_d = torch.optim.Adam(itertools.chain(d_a.parameters(), d_b.parameters()), **adam)
    half = args.steps // 2

    def rate(step: int) -> float:
        return 1.0 if step < half else 1.0 - (step - half) / (args.steps - half + 1)

    schedules = [torch.optim.lr_scheduler.LambdaLR(o, rate) for o in (optimiser_g, optimiser_d)]
    pool_a, pool_b = ImagePool(args.pool, generator), ImagePool(args.pool, generator)
    lambda_idt = args.lambda_cycle * args.lambda_identity
    history: dict[str, list[float]] = {
        k: [] for k in ("G", "D", "cycle", "identity", "G_adversarial")
    }

    progress = tqdm(range(args.steps), desc="cyclegan", disable=args.no_progress)
    for _ in progress:
        real_a = to_tanh(random_crops(images, args.batch, args.size, generator))
        # B comes from other crops than A: the two batches are unpaired.
        other = random_crops(images, args.batch, args.size, generator)
        real_b = vintage(other / 255) * 2 - 1

        fake_b, fake_a = g_a(real_a), g_b(real_b)
        rec_a, rec_b = g_b(fake_b), g_a(fake_a)

        # Generators: the discriminators judge but must not be updated by this loss.
        d_a.requires_grad_(False)
        d_b.requires_grad_(False)
        adversarial = lsgan_loss(d_a(fake_b), True) + lsgan_loss(d_b(fake_a), True)
        cycle = args.lambda_cycle * (cycle_loss(rec_a, real_a) + cycle_loss(rec_b, real_b))
        identity = (
            lambda_idt * (identity_loss(g_a(real_b), real_b) + identity_loss(g_b(real_a), real_a))
            if lambda_idt > 0
            else real_a.new_zeros(())
        )
        loss_g = adversarial + cycle + identity
        optimiser_g.zero_grad()
        loss_g.backward()
        optimiser_g.step()

        d_a.requires_grad_(True)
        d_b.requires_grad_(True)
        fake_b_seen = pool_b.query(fake_b.detach())
        fake_a_seen = pool_a.query(fake_a.detach())
        loss_d = 0.5 * (lsgan_loss(d_a(real_b), True) + lsgan_loss(d_a(fake_b_seen), False))
        loss_d = loss_d + 0.5 * (
            lsgan_loss(d_b(real_a), True) + lsgan_loss(d_b(fake_a_seen), False)
        )
        optimiser_d.zero_grad()
        loss_d.backward()
        optimiser_d.step()
        for schedule in schedules:
            schedule.step()

        for key, value in (
            ("G", loss_g),
            ("D", loss_d),
            ("cycle", cycle),
            ("identity", identity),
            ("G_adversarial", adversarial),
        ):
            history[key].append(value.item())
        progress.set_postfix({key: f"{history[key][-1]:.3f}" for key in ("G", "D", "cycle")})
    seconds = time.perf_counter() - start

    args.out.mkdir(parents=True, exist_ok=True)
    for name, net in (("G_A", g_a), ("G_B", g_b), ("D_A", d_a), ("D_B", d_b)):
        torch.save(net.state_dict(), args.out / f"latest_net_{name}.pth")
    window = min(args.window, args.steps)
    meta = {
        "variant": f"resnet_{args.n_blocks}blocks" if args.ngf == 64 else None,
        "generator": {"ngf": args.ngf, "n_blocks": args.n_blocks, "norm": "instance"},
        "discriminator": {"ndf": args.ndf, "n_layers": 3, "norm": "instance"},
        "domains": {"A": "bundled frames and photos", "B": "vintage(A): sepia 80 %, faded"},
        "input": "RGB in [-1, 1] [N, 3, H, W], H and W multiples of 4; output tanh [-1, 1]",
        "command": command_line("train_cyclegan.py", argv),
        "steps": args.steps,
        "size": args.size,
        "batch": args.batch,
        "lr": args.lr,
        "lambda_cycle": args.lambda_cycle,
        "lambda_identity": args.lambda_identity,
        "pool": args.pool,
        "seed": args.seed,
        "loss_window": window,
        **{
            f"loss_{key}_{end}": round(window_mean(values, window, last=end == "last"), 5)
            for key, values in history.items()
            for end in ("first", "last")
        },
        "loss_curve_every": curve(history["G"])[0],
        "loss_curves": {key: curve(values)[1] for key, values in history.items()},
        **check_mapping(g_a, g_b, args.size),
        "seconds": round(seconds, 1),
    }
    (args.out / "train_cyclegan.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(
        f"{args.steps} steps in {seconds:.1f} s (first / last {window} steps): "
        f"cycle {meta['loss_cycle_first']:.4g} -> {meta['loss_cycle_last']:.4g}, "
        f"G {meta['loss_G_first']:.4g} -> {meta['loss_G_last']:.4g}, "
        f"D {meta['loss_D_first']:.4g} -> {meta['loss_D_last']:.4g}"
    )
    print(
        f"held-out {HELD_OUT_PHOTO}: L1(G_A(x), vintage(x)) "
        f"{meta['heldout_l1_G_A_vs_vintage']:.4f}, L1(G_B(vintage(x)), x) "
        f"{meta['heldout_l1_G_B_vs_original']:.4f}, do nothing {meta['heldout_l1_do_nothing']:.4f}"
    )
    print(f"wrote {args.out}/latest_net_{{G_A,G_B,D_A,D_B}}.pth and train_cyclegan.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())

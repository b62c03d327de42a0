#!/usr/bin/env python3
"""Record blind-consistency golden outputs from the OFFICIAL code, for
tests/models/test_blind_consistency.py.

Needs phoenix104104/fast_blind_video_consistency: a checkout, or a bare git directory (then
``--commit`` is read from it; bce0c7eff41747ad4870f906c4b31cf96061ed80 was used, the newest
commit, 20 Jan 2021; the network files last changed in 3324fb1 of 30 Jul 2018 and the input
order in 563b152 of 22 Sep 2018). Only ``networks/TransformNet.py`` and
``networks/ConvLSTM.py`` are copied, into a temporary directory outside this repository, and
imported from there (``networks/__init__`` would pull in FlowNet2's CUDA extensions); nothing of
them is kept, only the numbers they produce. Runs on CPU, float32.

Writes to tests/data/translation/:

- blind_consistency_manifest.json: the official state_dict layout of the released
  configuration (nf 32, 5 blocks, norm IN): ``[key, shape, dtype]`` in order;
- blind_consistency_golden.pt: four 18x26 frames I and their "processed" versions P; for
  norm IN and BN, each with weights from :func:`seeded_state_dict`, the three network steps of
  the official test loop (12-channel inputs at the 20x28 working size, residuals, ConvLSTM
  states) and the video outputs O_0..O_3; the BN and none layouts.

The test loop is ``test_pretrained.py``'s with its file I/O left out: cv2.resize to the next
multiple of 4, ``cat(P_t, O_{t-1}, I_t, I_{t-1})``, O_t = P_t + residual resized back, clipped
to 0..1 (``save_img``) and fed back; the uint8 / JPEG round trip of saving is skipped.

    python tools/golden_blind_consistency.py --official /path/to/fast_blind_video_consistency
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import torch
from torch import Tensor, nn

if __package__ in (None, ""):  # run as a script: the repository root, for tests.models
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.models.seeded_blind_consistency import seeded_state_dict

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "data" / "translation"
FILES = ("networks/TransformNet.py", "networks/ConvLSTM.py")
SIZE = (18, 26)  # not multiples of 4: the resize path runs too
FRAMES = 4
SEEDS = {"IN": 0, "BN": 1}


def frames() -> tuple[Tensor, Tensor]:
    """I and P, float32 [4, 3, 18, 26] in 0..1: a smooth scene drifting right with sensor
    noise, and a per-frame "processed" version that flickers (gain, gamma, colour cast)."""
    generator = torch.Generator().manual_seed(5)
    ys = torch.linspace(0, 1, SIZE[0])[:, None]
    xs = torch.linspace(0, 1, SIZE[1])[None, :]
    inputs, processed = [], []
    for t in range(FRAMES):
        phase = 0.15 * t
        scene = torch.stack(
            [
                0.5 + 0.4 * torch.sin(6 * (xs - phase) + 2 * ys),
                0.5 + 0.4 * torch.cos(4 * ys + 3 * (xs - phase)),
                0.3 + 0.5 * (xs - phase).remainder(1) * ys,
            ]
        )
        frame = (scene + 0.03 * torch.randn(scene.shape, generator=generator)).clamp(0, 1)
        gain = 1 + 0.2 * torch.randn(3, 1, 1, generator=generator)
        gamma = 1 + 0.3 * torch.rand((), generator=generator)
        inputs.append(frame)
        processed.append((gain * frame.pow(gamma)).clamp(0, 1))
    return torch.stack(inputs), torch.stack(processed)


def official_sources(path: Path, commit: str) -> tuple[dict[str, str], str]:
    """The two official files' text and the commit they are from."""
    if (path / FILES[0]).is_file():
        git = ["git", "-C", str(path)]
        text = {name: (path / name).read_text() for name in FILES}
        commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True)
        return text, commit.stdout.strip() or "unknown (not a git checkout)"
    git = ["git", f"--git-dir={path}"]
    sha = subprocess.run([*git, "rev-parse", commit], capture_output=True, text=True, check=True)
    show = [
        subprocess.run([*git, "show", f"{commit}:{n}"], capture_output=True, text=True, check=True)
        for n in FILES
    ]
    return {n: s.stdout for n, s in zip(FILES, show, strict=True)}, sha.stdout.strip()


def layout(model: nn.Module) -> list[list]:
    return [[k, list(v.shape), str(v.dtype)] for k, v in model.state_dict().items()]


def official_video(net: nn.Module, inputs: Tensor, processed: Tensor) -> dict[str, Tensor]:
    """test_pretrained.py's per-video loop on in-memory frames (see the module docstring)."""

    def img(t: Tensor) -> np.ndarray:  # [3, H, W] tensor -> HWC float32, as read_img gives
        return np.ascontiguousarray(t.permute(1, 2, 0).numpy(), dtype=np.float32)

    def img2tensor(a: np.ndarray) -> Tensor:  # utils.img2tensor
        return torch.from_numpy(np.expand_dims(a.transpose(2, 0, 1), 0).astype(np.float32))

    h_orig, w_orig = SIZE
    h_sc, w_sc = (math.ceil(s / 4) * 4 for s in SIZE)  # opts.size_multiplier = 2 ** 2
    outputs = [np.clip(img(processed[0]), 0, 1)]  # frame 0: P_0, saved (clipped) as is
    steps: dict[str, list[Tensor]] = {"inputs": [], "residual": [], "hidden": [], "cell": []}
    lstm_state = None
    for t in range(1, FRAMES):
        frame_i1 = cv2.resize(img(inputs[t - 1]), (w_sc, h_sc))
        frame_i2 = cv2.resize(img(inputs[t]), (w_sc, h_sc))
        frame_o1 = cv2.resize(outputs[t - 1], (w_sc, h_sc))
        frame_p2 = cv2.resize(img(processed[t]), (w_sc, h_sc))
        frame_i1, frame_i2, frame_o1, frame_p2 = map(
            img2tensor, (frame_i1, frame_i2, frame_o1, frame_p2)
        )
        x = torch.cat((frame_p2, frame_o1, frame_i2, frame_i1), dim=1)
        output, lstm_state = net(x, lstm_state)
        frame_o2 = (frame_p2 + output)[0].numpy().transpose(1, 2, 0)  # utils.tensor2img
        outputs.append(np.clip(cv2.resize(frame_o2, (w_orig, h_orig)), 0, 1))
        for name, value in zip(steps, (x, output, *lstm_state), strict=True):
            steps[name].append(value[0])
    return {
        **{name: torch.stack(values) for name, values in steps.items()},
        "outputs": torch.stack([img2tensor(o)[0] for o in outputs]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--official", type=Path, required=True, help="checkout or git dir")
    parser.add_argument("--commit", default="HEAD", help="for a git dir (default HEAD)")
    args = parser.parse_args()
    sources, commit = official_sources(args.official, args.commit)
    with tempfile.TemporaryDirectory(prefix="blind_consistency_official_") as tmp:
        for name, text in sources.items():
            (Path(tmp) / Path(name).name).write_text(text)
        sys.path.insert(0, tmp)  # TransformNet.py does `from ConvLSTM import ConvLSTM`
        official = importlib.import_module("TransformNet")

    def build(norm: str) -> nn.Module:
        opts = SimpleNamespace(nf=32, blocks=5, norm=norm)  # train.py defaults
        return official.TransformNet(opts, nc_in=12, nc_out=3)

    torch.set_grad_enabled(False)
    inputs, processed = frames()
    golden: dict[str, object] = {"commit": commit, "seeds": SEEDS}
    golden.update(frames=inputs, processed=processed)
    for norm, seed in SEEDS.items():
        net = build(norm)
        net.load_state_dict(seeded_state_dict(net, seed), strict=True)
        net.eval()
        golden[norm] = official_video(net, inputs, processed)
    golden["layouts"] = {norm: layout(build(norm)) for norm in ("BN", "none")}
    OUT.mkdir(parents=True, exist_ok=True)
    manifest = OUT / "blind_consistency_manifest.json"
    manifest.write_text(json.dumps(layout(build("IN"))) + "\n")
    torch.save(golden, OUT / "blind_consistency_golden.pt")
    size = (OUT / "blind_consistency_golden.pt").stat().st_size
    residual = golden["IN"]["residual"]  # type: ignore[index]
    print(f"official {commit}: wrote {manifest.name} and golden ({size / 1e3:.0f} kB)")
    print(f"IN residual std {float(residual.std()):.3f}, max |r| {float(residual.abs().max()):.3f}")


if __name__ == "__main__":
    main()

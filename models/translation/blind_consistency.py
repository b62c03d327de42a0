"""Blind video temporal consistency (Lai et al., ECCV 2018), as a post-processor for any
per-frame image model.

Official code: phoenix104104/fast_blind_video_consistency (``networks/TransformNet.py``,
``networks/ConvLSTM.py``, ``test_pretrained.py``; commit bce0c7e). Parameter names here are the
official ones, so the released ``ECCV18_blind_consistency.pth`` (state_dict under ``'model'``)
loads with ``strict=True`` through :func:`load_blind_consistency`.

At step t the network sees, as one 12-channel RGB tensor in 0..1 (``utils.read_img``: BGR ->
RGB, /255), in the order the official train and test scripts concatenate them since the fix of
22 Sep 2018 (issues #2, #3; before it, I_{t-1} was wrongly a second copy of O_{t-1}):

    P_t (this frame processed by the per-frame model), O_{t-1} (the previous OUTPUT),
    I_t (this input frame), I_{t-1} (the previous input frame)

and predicts a residual in (-1, 1) (tanh); the output is O_t = P_t + residual. Frame 0 is not
run through the network: O_0 = P_0. A ConvLSTM at 1/4 resolution carries state from step to
step.

Official quirks kept on purpose:

- ``ConvLayer`` / ``UpsampleConvLayer`` test ``if self.norm in ["BN" or "IN"]``, which is
  ``["BN"]``: BatchNorm is applied, but the InstanceNorm layers of the released model (trained
  with ``-norm IN``, the train.py default) are built and never applied. They hold no weights
  (affine=False) but their running-stat buffers are checkpoint keys, so they exist here too.
- Convolutions have a bias only with ``norm="IN"`` (``use_bias = opts.norm == "IN"``); the last
  conv always has one.
- The skip connections come from the P/O stream only (conv1a, conv2a); the I stream (conv1b,
  conv2b) joins at conv3.
- H and W must be multiples of 4. The official test script does not pad: it RESIZES all four
  frames (cv2 bilinear) up to the next multiple of 4 and resizes O_t back
  (:func:`working_size`, :func:`resize_bilinear`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.checkpoints import load_strict, read_checkpoint

MULTIPLE = 4
"""H and W of the network input must be multiples of this (two stride-2 convs, two x2 ups)."""

NORMS = ("IN", "BN", "none")
LEAKY_SLOPE = 0.2

State = tuple[Tensor, Tensor]
"""ConvLSTM ``(hidden, cell)``, each float32 [N, 4 * nf, H / 4, W / 4]."""


# --------------------------------------------------------------------------- network


class ConvLayer(nn.Module):
    """[nearest x2] -> reflect pad k // 2 -> conv -> [BatchNorm].

    One class for the official ``ConvLayer`` and ``UpsampleConvLayer``: both name their
    submodules ``conv2d`` and ``norm_layer``, which is all a checkpoint sees.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: square kernel size.
        stride: conv stride.
        norm: ``"BN"``, ``"IN"`` or ``None`` / ``"none"``.
        bias: conv bias.
        upsample: nearest-neighbour x2 before the conv.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int,
        norm: str | None = None,
        bias: bool = True,
        upsample: bool = False,
    ) -> None:
        super().__init__()
        self.conv2d = nn.Conv2d(in_channels, out_channels, kernel_size, stride, bias=bias)
        if norm == "BN":
            self.norm_layer: nn.Module = nn.BatchNorm2d(out_channels)
        elif norm == "IN":
            # Never applied (see the module docstring); kept for its checkpoint keys.
            self.norm_layer = nn.InstanceNorm2d(out_channels, track_running_stats=True)
        self.apply_norm = norm == "BN"
        self.upsample = upsample
        self.padding = kernel_size // 2

    def forward(self, x: Tensor) -> Tensor:
        """x: [N, C_in, H, W] -> [N, C_out, H * up / stride, W * up / stride]."""
        if self.upsample:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        p = self.padding
        x = self.conv2d(F.pad(x, (p, p, p, p), mode="reflect"))
        return self.norm_layer(x) if self.apply_norm else x


class ResidualBlock(nn.Module):
    """x + conv2(leaky_relu(conv1(x))), no activation after the sum (as official)."""

    def __init__(self, channels: int, norm: str | None = None, bias: bool = True) -> None:
        super().__init__()
        self.conv1 = ConvLayer(channels, channels, 3, 1, norm=norm, bias=bias)
        self.conv2 = ConvLayer(channels, channels, 3, 1, norm=norm, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        """x: [N, C, H, W] -> [N, C, H, W]."""
        return x + self.conv2(F.leaky_relu(self.conv1(x), LEAKY_SLOPE))


class ConvLSTM(nn.Module):
    """Convolutional LSTM cell; one conv ``Gates`` computes the four gates from [x, h].

    Gate order along channels (official): input, forget ("remember"), output, cell.

    Args:
        input_size: channels of x.
        hidden_size: channels of h and c.
        kernel_size: gate conv kernel (zero padding k // 2).
    """

    def __init__(self, input_size: int, hidden_size: int, kernel_size: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.Gates = nn.Conv2d(
            input_size + hidden_size, 4 * hidden_size, kernel_size, padding=kernel_size // 2
        )

    def forward(self, x: Tensor, state: State | None = None) -> State:
        """x: [N, C_in, h, w]; state: ``(hidden, cell)`` [N, C_h, h, w] each, or None for zeros.

        Returns:
            The new ``(hidden, cell)``.
        """
        if state is None:
            zeros = x.new_zeros(x.shape[0], self.hidden_size, *x.shape[2:])
            state = (zeros, zeros)
        hidden, cell = state
        gates = self.Gates(torch.cat((x, hidden), 1))
        in_gate, remember_gate, out_gate, cell_gate = gates.chunk(4, 1)
        cell = torch.sigmoid(remember_gate) * cell + torch.sigmoid(in_gate) * torch.tanh(cell_gate)
        hidden = torch.sigmoid(out_gate) * torch.tanh(cell)
        return hidden, cell


class BlindConsistencyNet(nn.Module):
    """The official ``TransformNet`` (nc_in=12, nc_out=3) with its parameter names.

    Two-stream encoder (P_t, O_{t-1} | I_t, I_{t-1}) -> concatenated at 1/4 resolution ->
    residual blocks -> ConvLSTM -> decoder with skips from the P/O stream -> tanh.

    Args:
        nf: base channels (train.py ``-nf``, 32 for the released model).
        blocks: residual blocks (``-blocks``, 5).
        norm: ``"IN"`` (released model; built, never applied), ``"BN"`` (applied) or
            ``"none"`` (``-norm``).
    """

    def __init__(self, nf: int = 32, blocks: int = 5, norm: str = "IN") -> None:
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        self.nf, self.blocks, self.norm = nf, blocks, norm
        kw = {"norm": norm, "bias": norm == "IN"}
        self.conv1a = ConvLayer(6, nf, 7, 1, **kw)  # P_t, O_{t-1}
        self.conv1b = ConvLayer(6, nf, 7, 1, **kw)  # I_t, I_{t-1}
        self.conv2a = ConvLayer(nf, nf * 2, 3, 2, **kw)
        self.conv2b = ConvLayer(nf, nf * 2, 3, 2, **kw)
        self.conv3 = ConvLayer(nf * 4, nf * 4, 3, 2, **kw)
        self.ResBlocks = nn.ModuleList(ResidualBlock(nf * 4, **kw) for _ in range(blocks))
        self.convlstm = ConvLSTM(nf * 4, nf * 4, 3)
        self.deconv1 = ConvLayer(nf * 4, nf * 2, 3, 1, upsample=True, **kw)
        self.deconv2 = ConvLayer(nf * 4, nf, 3, 1, upsample=True, **kw)
        self.deconv3 = ConvLayer(nf * 2, 3, 7, 1)  # no norm, always a bias (official)

    @property
    def name(self) -> str:
        return f"TransformNet(nf={self.nf}, blocks={self.blocks}, norm={self.norm})"

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """One step, as the official forward (the residual is added by the caller).

        Args:
            x: float32 [N, 12, H, W], RGB in 0..1: P_t, O_{t-1}, I_t, I_{t-1} (3 channels
                each); H and W multiples of 4.
            state: the previous step's ConvLSTM state, or None on the first step (zeros).

        Returns:
            ``(residual, state)``: residual float32 [N, 3, H, W] in (-1, 1), so that
            O_t = P_t + residual; state ``(hidden, cell)`` [N, 4 * nf, H / 4, W / 4] each.
        """
        height, width = x.shape[-2:]
        if height % MULTIPLE or width % MULTIPLE:
            raise ValueError(
                f"input {height}x{width}: H and W must be multiples of {MULTIPLE} "
                "(resize with working_size / resize_bilinear, as the official test does)"
            )
        e1a = F.leaky_relu(self.conv1a(x[:, :6]), LEAKY_SLOPE)
        e1b = F.leaky_relu(self.conv1b(x[:, 6:]), LEAKY_SLOPE)
        e2a = F.leaky_relu(self.conv2a(e1a), LEAKY_SLOPE)
        e2b = F.leaky_relu(self.conv2b(e1b), LEAKY_SLOPE)
        features = F.leaky_relu(self.conv3(torch.cat((e2a, e2b), 1)), LEAKY_SLOPE)
        for block in self.ResBlocks:
            features = block(features)
        state = self.convlstm(features, state)
        d2 = F.leaky_relu(self.deconv1(state[0]), LEAKY_SLOPE)
        d1 = F.leaky_relu(self.deconv2(torch.cat((d2, e2a), 1)), LEAKY_SLOPE)
        return torch.tanh(self.deconv3(torch.cat((d1, e1a), 1))), state


# --------------------------------------------------------------------------- sizes


def working_size(height: int, width: int, multiple: int = MULTIPLE) -> tuple[int, int]:
    """The size the official test script resizes a frame to: each side rounded UP to a multiple
    of ``multiple`` (``ceil(H / 4) * 4``)."""
    return math.ceil(height / multiple) * multiple, math.ceil(width / multiple) * multiple


def resize_bilinear(frames: Tensor, size: tuple[int, int]) -> Tensor:
    """Resizes as the official test script's ``cv2.resize(img, (W, H))`` (INTER_LINEAR:
    half-pixel centres, no antialiasing; equal within ~3e-6 on float32 frames).

    Args:
        frames: float [N, C, H, W].
        size: ``(height, width)``.

    Returns:
        float [N, C, height, width]; ``frames`` itself when the size already matches.
    """
    if tuple(frames.shape[-2:]) == tuple(size):
        return frames
    return F.interpolate(frames, size=tuple(size), mode="bilinear", align_corners=False)


# --------------------------------------------------------------------------- video


class BlindConsistency:
    """Runs :class:`BlindConsistencyNet` over one video, frame by frame, as ``test_pretrained.py``.

    Keeps O_{t-1}, I_{t-1} and the ConvLSTM state between calls. Per step t >= 1: the four frames
    are resized to :func:`working_size`, O_t = P_t + residual is resized back to the frame size
    and clipped to 0..1, and that clipped O_t is fed back at t + 1. (The official script clips
    when it saves O_t as a JPEG and reads the file back as O_{t-1}; the uint8 and JPEG round trip
    is a storage artefact and is not reproduced: the float O_t is fed back.) Stateful: one
    instance per stream; call :meth:`reset` at a cut, a gap or a new video.

    Two entry points with the same state: :meth:`step` on RGB tensors in 0..1, and calling the
    object on BGR uint8 frames (the interface of :class:`models.translation.consistency.FlowBlend`).

    Args:
        net: the network, on the device and in the dtype the frames should run in.
    """

    def __init__(self, net: BlindConsistencyNet) -> None:
        self.net = net.eval()
        self.reset()

    def reset(self) -> None:
        """Forgets the past: the next frame is passed through as frame 0."""
        # O_{t-1} as fed back and I_{t-1}, float [N, 3, H, W] RGB 0..1; None before frame 0.
        self.previous_output: Tensor | None = None
        self.previous_frame: Tensor | None = None
        self._state: State | None = None

    @torch.no_grad()
    def step(self, frame: Tensor, processed: Tensor) -> Tensor:
        """One frame, on tensors.

        Args:
            frame: I_t, the input frame, float [N, 3, H, W], RGB 0..1.
            processed: P_t, the per-frame model's output for it, same shape.

        Returns:
            O_t, float [N, 3, H, W], RGB in 0..1 (O_0 = P_0, clipped).

        Raises:
            ValueError: the shapes differ from each other or from the previous frame's.
        """
        if processed.shape != frame.shape or frame.dim() != 4 or frame.shape[1] != 3:
            raise ValueError(f"I_t {tuple(frame.shape)} and P_t {tuple(processed.shape)}")
        previous_output, previous_frame = self.previous_output, self.previous_frame
        if previous_output is None or previous_frame is None:
            output = processed.clamp(0, 1)
        else:
            if previous_frame.shape != frame.shape:
                raise ValueError(
                    f"frame {tuple(frame.shape)} after {tuple(previous_frame.shape)}: "
                    "reset() between videos"
                )
            size = working_size(*frame.shape[-2:])
            p_t = resize_bilinear(processed, size)
            others = (previous_output, frame, previous_frame)
            x = torch.cat([p_t, *(resize_bilinear(f, size) for f in others)], 1)
            residual, self._state = self.net(x, self._state)
            output = resize_bilinear(p_t + residual, tuple(frame.shape[-2:])).clamp(0, 1)
        self.previous_output, self.previous_frame = output, frame
        return output

    def __call__(self, frame: np.ndarray, translated: np.ndarray) -> np.ndarray:
        """One frame, on images.

        Args:
            frame: I_t, BGR uint8 [H, W, 3].
            translated: P_t, its per-frame translation, BGR uint8 [H, W, 3].

        Returns:
            O_t, BGR uint8 [H, W, 3] (rounded; the official ``save_img`` truncates).
        """
        if translated.shape != frame.shape:
            raise ValueError(f"translation {translated.shape} vs frame {frame.shape}")
        device = next(self.net.parameters()).device

        def rgb(image: np.ndarray) -> Tensor:  # utils.read_img: BGR -> RGB, / 255
            pixels = torch.from_numpy(np.ascontiguousarray(image[..., ::-1])).to(device)
            return pixels.permute(2, 0, 1)[None].float() / 255

        out = self.step(rgb(frame), rgb(translated))[0].permute(1, 2, 0)
        out = out.mul(255).round().to(torch.uint8).cpu().numpy()
        return np.ascontiguousarray(out[..., ::-1])


# --------------------------------------------------------------------------- weights


def remap(state_dict: Mapping[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """Official checkpoint keys -> ours (the same names), with two tolerated differences.

    - A ``module.`` prefix (a DataParallel-wrapped model saved as is) is stripped.
    - Norm ``num_batches_tracked`` counters missing from the file are filled with 0: the
      released model was trained with PyTorch 0.4.0 (README), which had no such buffer; it
      was added in 0.4.1. PyTorch's own loader fills them the same way for old files, and the
      counter is unused here (IN is never applied; BN runs in eval mode).
    """
    out = {key.removeprefix("module."): value for key, value in state_dict.items()}
    for key, value in model.state_dict().items():
        if key.endswith(".num_batches_tracked") and key not in out:
            stem = key.removesuffix("num_batches_tracked")
            if f"{stem}running_mean" in out:
                out[key] = torch.zeros_like(value)
    return out


def _model_state(obj: object, name: str) -> Mapping[str, Tensor]:
    """The state_dict inside a loaded file: ``obj['model']`` (official train.py ``save_model``
    and the released file), or ``obj`` itself if it is a bare state_dict."""
    if isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping):
        return obj["model"]
    if isinstance(obj, Mapping) and obj and all(isinstance(v, Tensor) for v in obj.values()):
        return obj
    keys = ", ".join(map(str, list(obj)[:5])) if isinstance(obj, Mapping) else type(obj).__name__
    raise ValueError(f"{name} holds no 'model' state_dict (found: {keys})")


def load_blind_consistency(
    weights: str | os.PathLike | Mapping, *, nf: int = 32, blocks: int = 5, norm: str = "IN"
) -> BlindConsistencyNet:
    """Builds the network and loads a checkpoint into it strictly, in eval mode.

    Args:
        weights: a path to, or the loaded contents of, an official checkpoint
            (``ECCV18_blind_consistency.pth`` or a train.py ``model_epoch_N.pth``:
            ``{'model': state_dict, ...}``), or a bare state_dict; a ``module.`` prefix and
            missing ``num_batches_tracked`` counters are tolerated (see :func:`remap`).
        nf, blocks, norm: the architecture (the official ``*_opts.pth`` holds them; the
            defaults are train.py's, which the released model used).

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: not a PyTorch file, no state_dict in it, or keys missing, unexpected or
            of another shape (the message names the first of each).
    """
    model = BlindConsistencyNet(nf=nf, blocks=blocks, norm=norm)
    if isinstance(weights, Mapping):
        name, obj = "state_dict", weights
    else:
        name = os.fspath(weights)
        obj = read_checkpoint(name)
    state_dict = remap(_model_state(obj, name), model)
    return load_strict(model, state_dict, f"{name} does not fit {model.name}").eval()

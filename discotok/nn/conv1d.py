"""1-D convolution blocks of SEANet-style (EnCodec / DAC) waveform encoders and decoders.

Every convolution pads with zeros itself (``causal``: all on the left; otherwise split) so a
stride-s layer maps T samples to T/s frames when s divides T. Each takes an optional
``mask`` (B, 1, T) and zeroes its input past each item's valid length first: a padded batch
then computes, over each item's valid region, exactly what the item alone computes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

ACTIVATIONS = ("elu", "snake", "gelu", "silu")


def length_mask(lengths: Tensor | None, size: int) -> Tensor | None:
    """(B,) valid lengths -> float mask (B, 1, size), 1 inside; None passes through."""
    if lengths is None:
        return None
    return (torch.arange(size, device=lengths.device) < lengths[:, None]).unsqueeze(1).float()


def apply_mask(x: Tensor, mask: Tensor | None) -> Tensor:
    """Zero ``x`` (B, C, T) where ``mask`` (B, 1, T) is 0."""
    return x if mask is None else x * mask.to(x.dtype)


class Snake(nn.Module):
    """Snake activation (DAC / BigVGAN): ``x + sin²(αx) / α`` with a learned α per channel."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        return x + (self.alpha * x).sin().pow(2) / (self.alpha + 1e-9)


def activation(name: str, channels: int) -> nn.Module:
    """A pointwise activation by name: ``elu`` (EnCodec), ``snake`` (DAC), ``gelu``, ``silu``."""
    if name == "snake":
        return Snake(channels)
    layers = {"elu": nn.ELU, "gelu": nn.GELU, "silu": nn.SiLU}
    if name not in layers:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {name!r}")
    return layers[name]()


class Conv1d(nn.Module):
    """Weight-normalised Conv1d with its own zero padding: causal (left) or centred."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        dilation: int = 1,
        causal: bool = False,
    ) -> None:
        super().__init__()
        self.conv = weight_norm(nn.Conv1d(in_channels, out_channels, kernel_size, stride, dilation=dilation))
        total = (kernel_size - 1) * dilation + 1 - stride
        self.pad = (total, 0) if causal else (total - total // 2, total // 2)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """(B, C, T) -> (B, C', T / stride); ``mask`` (B, 1, T) zeroes the input's padding."""
        return self.conv(F.pad(apply_mask(x, mask), self.pad))


class ConvTranspose1d(nn.Module):
    """Weight-normalised ConvTranspose1d trimmed to ``stride * T`` outputs.

    Causal: the surplus is cut on the right, so output sample t depends on frames <= t / stride.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, causal: bool = False) -> None:
        super().__init__()
        self.conv = weight_norm(nn.ConvTranspose1d(in_channels, out_channels, kernel_size, stride))
        total = kernel_size - stride
        self.trim = (0, total) if causal else (total - total // 2, total // 2)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """(B, C, N) -> (B, C', N * stride); ``mask`` (B, 1, N) zeroes padded frames first."""
        y = self.conv(apply_mask(x, mask))
        return y[..., self.trim[0] : y.shape[-1] - self.trim[1]]


class ResidualUnit(nn.Module):
    """SEANet residual unit: act -> dilated conv (to dim / compress) -> act -> 1x1 conv, plus identity."""

    def __init__(
        self, dim: int, kernel_size: int = 3, dilation: int = 1, compress: int = 2, act: str = "elu", causal: bool = False
    ) -> None:
        super().__init__()
        hidden = max(1, dim // compress)
        self.act1 = activation(act, dim)
        self.conv1 = Conv1d(dim, hidden, kernel_size, dilation=dilation, causal=causal)
        self.act2 = activation(act, hidden)
        self.conv2 = Conv1d(hidden, dim, 1)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        return x + self.conv2(self.act2(self.conv1(self.act1(x), mask)))

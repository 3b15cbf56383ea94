"""Convolutional blocks of VQGAN-style encoders and decoders."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with up to 32 groups that divide ``channels``."""
    return nn.GroupNorm(math.gcd(32, channels), channels, eps=1e-6)


def channel_values(values: Sequence[float] | None, default: float, channels: int) -> Tensor:
    """Per-channel constants (1, channels, 1, 1) to broadcast over a (B, C, H, W) map; ``default`` when None."""
    t = torch.full((channels,), float(default)) if values is None else torch.tensor([float(v) for v in values])
    if t.numel() != channels:
        raise ValueError(f"expected {channels} per-channel values, got {len(values)}")
    return t.reshape(1, channels, 1, 1)


class ChannelRMSNorm(nn.Module):
    """RMS normalisation over the channels of each position of a (B, C, H, W) map, with a learned gain.

    Unlike GroupNorm it keeps each feature map's spatial mean, so a small network trained for
    minutes need not learn to carry an image's colour in relative patterns (DC-AE's choice)."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(x.pow(2).mean(1, keepdim=True) + self.eps) * self.weight


class ResBlock(nn.Module):
    """Pre-activation residual block: (norm, SiLU, 3x3 conv) twice, 1x1 skip if widths differ.
    ``norm`` builds the normalisation of a width (GroupNorm by default); ``bias`` False: convolutions
    without biases. ``skip_from_output``: where the widths differ, the 1x1 skip maps the block's
    output rather than its input, and the block returns ``out + skip(out)`` (MaskGIT's VQGAN)."""

    def __init__(
        self, in_channels: int, out_channels: int, norm: Callable[[int], nn.Module] = group_norm,
        bias: bool = True, skip_from_output: bool = False,
    ) -> None:
        super().__init__()
        self.body = nn.Sequential(
            norm(in_channels),
            nn.SiLU(),
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=bias),
            norm(out_channels),
            nn.SiLU(),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=bias),
        )
        self.skip_from_output = skip_from_output and in_channels != out_channels
        skip_in = out_channels if self.skip_from_output else in_channels
        self.skip = nn.Conv2d(skip_in, out_channels, 1, bias=bias) if in_channels != out_channels else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        out = self.body(x)
        return out + self.skip(out) if self.skip_from_output else self.skip(x) + out


class Downsample(nn.Module):
    """Halve the resolution with a stride-2 3x3 convolution; ``asymmetric`` pads only the right and bottom by
    one (taming-transformers' VQGAN, LlamaGen) instead of one on every side."""

    def __init__(self, channels: int, asymmetric: bool = False) -> None:
        super().__init__()
        self.asymmetric = asymmetric
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0 if asymmetric else 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)) if self.asymmetric else x)


class AttnBlock(nn.Module):
    """VQGAN's self-attention over the positions of a feature map, with a residual connection: GroupNorm,
    1x1 convolutions to queries, keys and values, attention (single-head unless ``heads``; Emu3's MoVQ
    splits the channels into ``heads`` heads), a 1x1 output convolution."""

    def __init__(self, channels: int, heads: int = 1) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"attention heads ({heads}) must divide the channels ({channels})")
        self.heads = heads
        self.norm = group_norm(channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def attend(self, h: Tensor) -> Tensor:
        """Attention of a normalised map ``h`` (B, C, H, W) over its positions, projected out (no residual)."""
        height, width = h.shape[-2:]
        q, k, v = (rearrange(conv(h), "b (n c) h w -> b n (h w) c", n=self.heads) for conv in (self.q, self.k, self.v))
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj_out(rearrange(out, "b n (h w) c -> b (n c) h w", h=height, w=width))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.attend(self.norm(x))


class Upsample(nn.Module):
    """Double the resolution: nearest-neighbour upsampling then a 3x3 convolution."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def stage(in_channels: int, out_channels: int, num_blocks: int) -> nn.Sequential:
    """``num_blocks`` residual blocks going from ``in_channels`` to ``out_channels``."""
    blocks = [ResBlock(in_channels if i == 0 else out_channels, out_channels) for i in range(num_blocks)]
    return nn.Sequential(*blocks)

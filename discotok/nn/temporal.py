"""Emu3's (MoVQ's) temporal layers over a stack of frame latents (B, C, T, h, w): causal 3-D convolutions,
temporal residual blocks, downsampling and upsampling in time.

Every convolution pads time by two zero frames in front (none behind), whatever its kernel, and pads
space to keep the size at stride 1 (Emu3's ``Emu3VQVAEConv3d``), so frame t depends on frames up to t.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

TIME_PAD = 2


class CausalConv3d(nn.Module):
    """A 3-D convolution with two zero frames padded in front and ``kernel - stride`` spatial padding."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel: Sequence[int], stride: Sequence[int] = (1, 1, 1),
    ) -> None:
        super().__init__()
        pad: tuple[int, ...] = ()
        for k, s in reversed(list(zip(kernel[1:], stride[1:]))):
            pad += ((k - s) // 2 + (k - s) % 2, (k - s) // 2)
        self.padding = pad + (TIME_PAD, 0)
        self.conv = nn.Conv3d(in_channels, out_channels, tuple(kernel), stride=tuple(stride))

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, self.padding))


class TemporalResBlock(nn.Module):
    """(BatchNorm3d, SiLU, causal 3x3x3 convolution) twice with a residual connection (1x1x1 if widths differ)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm3d(in_channels)
        self.conv1 = CausalConv3d(in_channels, out_channels, (3, 3, 3))
        self.norm2 = nn.BatchNorm3d(out_channels)
        self.conv2 = CausalConv3d(out_channels, out_channels, (3, 3, 3))
        self.nin_shortcut = nn.Conv3d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        return self.nin_shortcut(x) + self.conv2(F.silu(self.norm2(h)))


class TemporalDownsample(nn.Module):
    """Halve the frames: a causal (4, 3, 3) convolution of stride (2, 1, 1)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = CausalConv3d(channels, channels, (4, 3, 3), (2, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class TemporalUpsample(nn.Module):
    """Double the frames: nearest-neighbour repetition in time, then a causal 3x3x3 convolution."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = CausalConv3d(channels, channels, (3, 3, 3))

    def forward(self, x: Tensor) -> Tensor:
        height, width = x.shape[-2:]
        x = F.interpolate(rearrange(x, "b c t h w -> b (c h w) t"), scale_factor=2.0, mode="nearest")
        return self.conv(rearrange(x, "b (c h w) t -> b c t h w", h=height, w=width))

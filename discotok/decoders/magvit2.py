"""``magvit2``: MAGVIT-v2's image decoder as Open-MAGVIT2 publishes it, mirroring the ``magvit2`` encoder.

A 3x3 convolution from ``latent_dim``, ``num_res_blocks`` bias-free residual blocks in the middle, then per
level from the lowest resolution: an adaptive GroupNorm conditioned on the decoder's input (the quantized
latent map), ``num_res_blocks`` bias-free residual blocks, and between levels a 3x3 convolution to 4x the
width followed by depth-to-space (each group of 4 channels becomes a 2x2 block); then GroupNorm, SiLU and a
3x3 convolution to ``out_channels``.

The adaptive norm takes the variance of the latents over the grid's positions with Bessel's correction
(Open-MAGVIT2's ``var``), so a grid of one token has none: such a grid is refused.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from einops import rearrange
from torch import Tensor, nn

from discotok.decoders.base import Decoder, token_map
from discotok.layout import Layout
from discotok.nn.conv import ResBlock, group_norm
from discotok.registry import DECODERS

EPS = 1e-6


class AdaptiveGroupNorm(nn.Module):
    """GroupNorm without affine parameters whose per-channel scale and shift are linear in the per-channel
    standard deviation and mean (over positions) of a conditioning map ``style`` (B, style_dim, h, w)."""

    def __init__(self, style_dim: int, channels: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(math.gcd(32, channels), channels, eps=EPS, affine=False)
        self.gamma = nn.Linear(style_dim, channels)
        self.beta = nn.Linear(style_dim, channels)

    def forward(self, x: Tensor, style: Tensor) -> Tensor:
        flat = rearrange(style, "b c h w -> b c (h w)")
        scale = self.gamma((flat.var(dim=-1, correction=1) + EPS).sqrt())
        shift = self.beta(flat.mean(dim=-1))
        return self.norm(x) * rearrange(scale, "b c -> b c 1 1") + rearrange(shift, "b c -> b c 1 1")


class DepthToSpaceUpsample(nn.Module):
    """Double the resolution: a 3x3 convolution to 4x the channels, each channel group of the 2x2 block
    positions (row-major, outermost in the channel order) then moved to space."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels * 4, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return rearrange(self.conv(x), "b (p q c) h w -> b c (h p) (w q)", p=2, q=2)


@DECODERS.register("magvit2")
class Magvit2Decoder(Decoder):
    """Tokens (B, h*w, latent_dim) on a grid of at least 2 tokens -> images (B, out_channels, h*f, w*f)."""

    def __init__(
        self,
        latent_dim: int,
        out_channels: int = 3,
        channels: int = 128,
        channel_mult: Sequence[int] = (1, 1, 2, 2, 4),
        num_res_blocks: int = 4,
    ) -> None:
        super().__init__()
        self.out_channels = out_channels
        width = channels * channel_mult[-1]
        self.conv_in = nn.Conv2d(latent_dim, width, 3, padding=1)
        self.mid = nn.ModuleList(ResBlock(width, width, bias=False) for _ in range(num_res_blocks))
        self.up = nn.ModuleList()
        for i in reversed(range(len(channel_mult))):
            level = nn.Module()
            out = channels * channel_mult[i]
            level.norm = AdaptiveGroupNorm(latent_dim, width)
            level.blocks = nn.ModuleList(ResBlock(width if j == 0 else out, out, bias=False)
                                         for j in range(num_res_blocks))
            width = out
            level.upsample = DepthToSpaceUpsample(width) if i > 0 else nn.Identity()
            self.up.append(level)
        self.norm_out = group_norm(width)
        self.conv_out = nn.Conv2d(width, out_channels, 3, padding=1)

    @property
    def last_layer(self) -> nn.Parameter:
        return self.conv_out.weight

    def alignment_layer(self) -> str:
        return "mid.0"

    def forward(
        self, z_q: Tensor, layout: Layout, keep: Tensor | None = None, size: Sequence[int] | None = None,
        lengths: Tensor | None = None,
    ) -> Tensor:
        """Decode (B, N, D) tokens laid out on ``layout``'s (h, w) grid (the grid fixes the size)."""
        style = token_map(z_q, layout, "magvit2")
        if layout.num_tokens < 2:
            raise ValueError(f"magvit2 decoder needs a grid of at least 2 tokens (its adaptive norm takes their "
                             f"variance), got {layout}")
        h = self.conv_in(style)
        for block in self.mid:
            h = block(h)
        for level in self.up:
            h = level.norm(h, style)
            for block in level.blocks:
                h = block(h)
            h = level.upsample(h)
        return self.conv_out(nn.functional.silu(self.norm_out(h)))
